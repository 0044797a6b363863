package imagebuilder_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tinkerbell/ipxedust/binary"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/bootpilot/bootpilot/ipxe"
)

func mustBuild(tb testing.TB, c imagebuilder.Config, token string) ([]byte, imagebuilder.Artifact) {
	tb.Helper()
	b, err := imagebuilder.NewBuilder(c)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	a, err := b.Build(&buf, testHost(), token)
	if err != nil {
		tb.Fatal(err)
	}
	if a.Size != int64(buf.Len()) {
		tb.Fatalf("artifact size %d, wrote %d", a.Size, buf.Len())
	}
	return buf.Bytes(), a
}

func signedConfig(tb testing.TB) imagebuilder.Config {
	p := mustPKI(tb)
	return imagebuilder.Config{ServerURL: "https://10.0.2.100:8443", CACert: p.CA, Signer: p.DB}
}

// extractESP pulls the ESP image out of iso with xorriso and returns its path.
func extractESP(t *testing.T, dir, iso string) string {
	t.Helper()
	xorriso := testenv.Tool(t, "xorriso")
	esp := filepath.Join(dir, "esp.img")
	run(t, xorriso, "-osirrox", "on", "-indev", iso, "-extract", "/efiboot.img", esp)
	return esp
}

func TestISOStructure(t *testing.T) {
	xorriso := testenv.Tool(t, "xorriso")
	isoinfo := testenv.Tool(t, "isoinfo")
	dir := t.TempDir()
	img, _ := mustBuild(t, signedConfig(t), testToken)
	iso := writeFile(t, dir, "node01.iso", img)

	rep := run(t, xorriso, "-indev", iso, "-report_el_torito", "plain")
	if !regexp.MustCompile(`El Torito boot img :\s+1\s+UEFI\s+y\s+none`).MatchString(rep) {
		t.Errorf("xorriso finds no bootable UEFI no-emulation entry:\n%s", rep)
	}
	info := run(t, isoinfo, "-d", "-i", iso)
	for _, want := range []string{"Volume id: NODE01", "Rock Ridge signatures version 1 found", "El Torito VD version 1 found"} {
		if !strings.Contains(info, want) {
			t.Errorf("isoinfo -d lacks %q:\n%s", want, info)
		}
	}
	ls := run(t, isoinfo, "-R", "-l", "-i", iso)
	if !strings.Contains(ls, "efiboot.img") {
		t.Errorf("isoinfo -R -l shows no Rock Ridge name efiboot.img:\n%s", ls)
	}

	esp := extractESP(t, dir, iso)
	mdir := testenv.Tool(t, "mdir")
	listing := run(t, mdir, "-i", esp, "-/", "::/")
	if !strings.Contains(listing, "BOOTX64  EFI") {
		t.Errorf("mdir: no BOOTX64.EFI:\n%s", listing)
	}
	run(t, testenv.Tool(t, "fsck.fat"), "-n", esp) // exits non-zero on any inconsistency
	minfo := run(t, testenv.Tool(t, "minfo"), "-i", esp, "::")
	if !strings.Contains(minfo, "FAT12") {
		t.Errorf("minfo: not FAT12:\n%s", minfo)
	}
	efi := filepath.Join(dir, "BOOTX64.EFI")
	run(t, testenv.Tool(t, "mcopy"), "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", efi)
	checkEFI(t, dir, efi)
}

// checkEFI verifies an extracted BOOTX64.EFI with sbverify and osslsigncode
// and checks it holds our script and CA fingerprint, not the stock ones.
func checkEFI(t *testing.T, dir, efi string) {
	t.Helper()
	p := mustPKI(t)
	dbPEM := writeFile(t, dir, "db.pem", p.DBPEM)
	out := run(t, testenv.Tool(t, "sbverify"), "--cert", dbPEM, efi)
	if !strings.Contains(out, "Signature verification OK") {
		t.Errorf("sbverify: %s", out)
	}
	out = run(t, testenv.Tool(t, "osslsigncode"), "verify", "-CAfile", dbPEM, "-in", efi)
	if !strings.Contains(out, "Signature verification: ok") {
		t.Errorf("osslsigncode verify: %s", out)
	}
	data, err := os.ReadFile(efi)
	if err != nil {
		t.Fatal(err)
	}
	fp := ipxe.Fingerprint(p.CA.Raw)
	if !bytes.Contains(data, fp[:]) {
		t.Errorf("EFI lacks our CA fingerprint %s", hex.EncodeToString(fp[:]))
	}
	if bytes.Contains(data, ipxe.StockRootFingerprint) || bytes.Contains(data, ipxe.StockScript) {
		t.Error("EFI still holds the stock root fingerprint or script")
	}
	if !bytes.Contains(data, []byte("set bootpilot/url https://node01:"+testToken+"@10.0.2.100:8443/boot/v1/script?")) {
		t.Error("EFI lacks the host's stage-0 script")
	}
}

func TestReproducible(t *testing.T) {
	c := signedConfig(t)
	a1, art1 := mustBuild(t, c, testToken)
	a2, art2 := mustBuild(t, c, testToken)
	if !bytes.Equal(a1, a2) || art1 != art2 {
		t.Fatalf("two builds differ: %s vs %s", art1.SHA256, art2.SHA256)
	}
	a3, art3 := mustBuild(t, c, "ffeeddccbbaa99887766554433221100")
	if bytes.Equal(a1, a3) || art3.SHA256 == art1.SHA256 {
		t.Fatal("a different token gives the same ISO")
	}
}

func TestUnsignedNeedsOption(t *testing.T) {
	c := signedConfig(t)
	c.Signer = nil
	if _, err := imagebuilder.NewBuilder(c); err == nil {
		t.Fatal("NewBuilder without a signer and without Unsigned succeeded")
	}
	c.Unsigned = true
	img, a := mustBuild(t, c, testToken)
	if a.SignerFingerprint != "" || len(img) == 0 {
		t.Fatalf("unsigned artifact %+v", a)
	}
}

func TestArm64(t *testing.T) {
	dir := t.TempDir()
	c := signedConfig(t)
	c.Arches = []string{"arm64", "x86_64"}
	img, _ := mustBuild(t, c, testToken)
	esp := extractESP(t, dir, writeFile(t, dir, "a.iso", img))
	listing := run(t, testenv.Tool(t, "mdir"), "-i", esp, "-/", "::/")
	for _, want := range []string{"BOOTX64  EFI", "BOOTAA64 EFI"} {
		if !strings.Contains(listing, want) {
			t.Errorf("mdir lacks %s:\n%s", want, listing)
		}
	}
	efi := filepath.Join(dir, "BOOTAA64.EFI")
	run(t, testenv.Tool(t, "mcopy"), "-i", esp, "::/EFI/BOOT/BOOTAA64.EFI", efi)
	checkEFI(t, dir, efi)
}

func TestESPScriptMode(t *testing.T) {
	openssl := testenv.Tool(t, "openssl")
	dir := t.TempDir()
	p := mustPKI(t)
	c := signedConfig(t)
	c.Mode, c.ScriptSigner = imagebuilder.ModeESPScript, p.Code
	img1, a := mustBuild(t, c, testToken)
	if a.Mode != "esp-script" {
		t.Errorf("mode %q", a.Mode)
	}
	esp := extractESP(t, dir, writeFile(t, dir, "a.iso", img1))
	run(t, testenv.Tool(t, "fsck.fat"), "-n", esp) // long names, two directories
	mcopy := testenv.Tool(t, "mcopy")
	script, sig, efi := filepath.Join(dir, "host.ipxe"), filepath.Join(dir, "host.ipxe.sig"), filepath.Join(dir, "BOOTX64.EFI")
	run(t, mcopy, "-i", esp, "::/EFI/BOOT/host.ipxe", script)
	run(t, mcopy, "-i", esp, "::/EFI/BOOT/host.ipxe.sig", sig)
	run(t, mcopy, "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", efi)
	caPEM := writeFile(t, dir, "ca.pem", p.CAPEM)
	run(t, openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", script, "-CAfile", caPEM, "-purpose", "any", "-out", os.DevNull)
	// A tampered script must fail verification.
	s, _ := os.ReadFile(script)
	bad := writeFile(t, dir, "bad.ipxe", append(s, []byte("shell\n")...))
	if out, err := runFail(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", bad, "-CAfile", caPEM, "-purpose", "any", "-out", os.DevNull); err == nil {
		t.Errorf("openssl cms -verify accepted a tampered script: %s", out)
	}
	if !bytes.Contains(s, []byte("@10.0.2.100:8443/boot/v1/script?")) {
		t.Errorf("host.ipxe is not the host's script:\n%s", s)
	}
	d := filepath.Join(dir, "x")
	os.Mkdir(d, 0o755)
	checkEFISignOnly(t, d, efi)

	// Sign once: another host's ISO carries the identical binary.
	b, _ := imagebuilder.NewBuilder(c)
	var buf bytes.Buffer
	h := testHost()
	h.Name, h.MACs = "node02", []string{"52:54:00:00:00:02"}
	if _, err := b.Build(&buf, h, testToken); err != nil {
		t.Fatal(err)
	}
	e1, _ := os.ReadFile(efi)
	if !bytes.Contains(buf.Bytes(), e1) {
		t.Error("esp-script mode: the signed binary differs between hosts")
	}
}

func checkEFISignOnly(t *testing.T, dir, efi string) {
	t.Helper()
	p := mustPKI(t)
	dbPEM := writeFile(t, dir, "db.pem", p.DBPEM)
	if out := run(t, testenv.Tool(t, "sbverify"), "--cert", dbPEM, efi); !strings.Contains(out, "Signature verification OK") {
		t.Errorf("sbverify: %s", out)
	}
}

// TestUserIPXE builds with a user-supplied binary whose script slot is marked
// by ipxedust's marker lines instead of the stock script.
func TestUserIPXE(t *testing.T) {
	stock := binary.Files["ipxe.efi"]
	user := bytes.Clone(stock)
	slot := append([]byte("#!ipxe\necho my own build\n"), bytes.Repeat([]byte{' '}, ipxe.MaxScript)...)
	slot = append(slot[:ipxe.MaxScript-len(ipxe.SlotMarker)-1], append(ipxe.SlotMarker, '\n')...)
	i := bytes.Index(user, ipxe.StockScript)
	copy(user[i:], slot)
	c := signedConfig(t)
	c.IPXE = map[string][]byte{"x86_64": user}
	img, _ := mustBuild(t, c, testToken)
	if !bytes.Contains(img, []byte("@10.0.2.100:8443/boot/v1/script?")) || bytes.Contains(img, ipxe.SlotMarker) {
		t.Error("the user binary's slot was not patched")
	}
	c.IPXE["x86_64"] = stock[:len(stock)/2]
	if _, err := imagebuilder.NewBuilder(c); err == nil {
		t.Error("NewBuilder accepted a binary without slots")
	}
}
