package imagebuilder_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/foxboron/go-uefi/authenticode"
	uefipkcs7 "github.com/foxboron/go-uefi/pkcs7"
	"github.com/tinkerbell/ipxedust/binary"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// Debian's shim-signed package: shim signed by Microsoft's UEFI CA, and
// MokManager signed by Debian.
const (
	debianShim       = "/usr/lib/shim/shimx64.efi.signed"
	debianMokManager = "/usr/lib/shim/mmx64.efi.signed"
)

// readFile returns the bytes of a component file, or calls testenv.Missing.
func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(testenv.File(tb, path))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signedEFI Authenticode-signs an unsigned EFI binary with the test's code
// signing key: a stand-in for a signed shim.
func signedEFI(tb testing.TB, unsigned []byte) []byte {
	tb.Helper()
	bin, err := authenticode.Parse(bytes.NewReader(unsigned))
	if err != nil {
		tb.Fatal(err)
	}
	p := mustPKI(tb)
	if _, err := bin.Sign(p.Code.Key, p.Code.Cert, uefipkcs7.NoAttr()); err != nil {
		tb.Fatal(err)
	}
	return bin.Bytes()
}

// TestShimLayout builds with Debian's shim and MokManager: the ESP holds
// the shim as BOOTX64.EFI, our signed iPXE as grubx64.efi and MokManager as
// mmx64.efi, and the build stays reproducible.
func TestShimLayout(t *testing.T) {
	shim, mm := readFile(t, debianShim), readFile(t, debianMokManager)
	dir := t.TempDir()
	c := signedConfig(t)
	c.Shim, c.MokManager = shim, mm
	img, a := mustBuild(t, c, testToken)
	sum := sha256.Sum256(shim)
	if a.Layout != imagebuilder.LayoutShim || a.ShimSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("artifact layout %q shim %q, want shim %x", a.Layout, a.ShimSHA256, sum)
	}
	if img2, a2 := mustBuild(t, c, testToken); !bytes.Equal(img, img2) || a != a2 {
		t.Errorf("two builds differ: %s vs %s", a.SHA256, a2.SHA256)
	}

	esp := extractESP(t, dir, writeFile(t, dir, "node01.iso", img))
	run(t, testenv.Tool(t, "fsck.fat"), "-n", esp)
	listing := run(t, testenv.Tool(t, "mdir"), "-i", esp, "-/", "::/")
	for _, want := range []string{"BOOTX64  EFI", " grubx64.efi", " mmx64.efi"} {
		if !strings.Contains(listing, want) {
			t.Errorf("mdir lacks %q:\n%s", want, listing)
		}
	}
	mcopy := testenv.Tool(t, "mcopy")
	for name, want := range map[string][]byte{"BOOTX64.EFI": shim, "mmx64.efi": mm} {
		p := filepath.Join(dir, name)
		run(t, mcopy, "-i", esp, "::/EFI/BOOT/"+name, p)
		if got, _ := os.ReadFile(p); !bytes.Equal(got, want) {
			t.Errorf("%s on the ESP is not the file given", name)
		}
	}
	loader := filepath.Join(dir, "grubx64.efi")
	run(t, mcopy, "-i", esp, "::/EFI/BOOT/grubx64.efi", loader)
	checkEFI(t, dir, loader) // signed by the db key, our script and CA
}

// TestIPXELayout: without a shim the artifact says so.
func TestIPXELayout(t *testing.T) {
	_, a := mustBuild(t, signedConfig(t), testToken)
	if a.Layout != imagebuilder.LayoutIPXE || a.ShimSHA256 != "" {
		t.Errorf("artifact layout %q shim %q, want ipxe and none", a.Layout, a.ShimSHA256)
	}
}

// TestShimRefused: NewBuilder refuses what cannot boot through shim.
func TestShimRefused(t *testing.T) {
	stock := binary.Files["ipxe.efi"] // an unsigned x86_64 EFI application
	shim := signedEFI(t, stock)
	damaged := bytes.Clone(shim)
	damaged[0x400] ^= 0xFF // inside the first section
	arm64 := signedEFI(t, binary.Files["snp.efi"])
	cases := []struct {
		name   string
		change func(*imagebuilder.Config)
		want   string
	}{
		{"not PE", func(c *imagebuilder.Config) { c.Shim = []byte("#!/bin/sh\necho not a shim\n") }, "shim: not an EFI binary (PE/COFF)"},
		{"unsigned", func(c *imagebuilder.Config) { c.Shim = stock }, "shim: no Authenticode signature"},
		{"damaged", func(c *imagebuilder.Config) { c.Shim = damaged }, "shim: the Authenticode signature does not cover this file"},
		{"arm64 shim", func(c *imagebuilder.Config) { c.Shim = arm64 }, "shim: a PE/COFF image for machine 0xaa64, not x86_64"},
		{"arm64 ISO", func(c *imagebuilder.Config) { c.Shim, c.Arches = shim, []string{"x86_64", "arm64"} }, "the shim layout is x86_64 only"},
		{"unsigned iPXE", func(c *imagebuilder.Config) { c.Shim, c.Signer, c.Unsigned = shim, nil, true }, "the shim layout needs the db key"},
		{"MokManager alone", func(c *imagebuilder.Config) { c.MokManager = shim }, "a MokManager needs a shim"},
		{"MokManager unsigned", func(c *imagebuilder.Config) { c.Shim, c.MokManager = shim, stock }, "MokManager: no Authenticode signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := signedConfig(t)
			tc.change(&c)
			_, err := imagebuilder.NewBuilder(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewBuilder = %v, want an error with %q", err, tc.want)
			}
		})
	}
	c := signedConfig(t)
	c.Shim = shim
	if _, err := imagebuilder.NewBuilder(c); err != nil {
		t.Errorf("NewBuilder with a signed x86_64 stand-in shim: %v", err)
	}
}

// TestBootQEMUShim boots the shim layout on Secure Boot firmware whose db
// holds only Microsoft's keys: with our db certificate in MokList, shim runs
// our iPXE; without it, shim refuses iPXE ("Verification failed") and iPXE
// never starts.
func TestBootQEMUShim(t *testing.T) {
	qemutest.Require(t, true)
	shim, mm := readFile(t, debianShim), readFile(t, debianMokManager)
	stock, err := os.ReadFile(qemutest.OVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	mok, err := qemutest.EnrollMOK(stock, mustPKI(t).DB.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		mode  imagebuilder.Mode
		vars  []byte
		boots bool
	}{
		{"mok", imagebuilder.ModeBinary, mok, true},
		{"mok-esp-script", imagebuilder.ModeESPScript, mok, true}, // iPXE finds host.ipxe next to grubx64.efi
		{"no-mok", imagebuilder.ModeBinary, stock, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := signedConfig(t)
			c.Shim, c.MokManager, c.Mode = shim, mm, tc.mode
			if tc.mode == imagebuilder.ModeESPScript {
				c.ScriptSigner = mustPKI(t).Code
			}
			img, _ := mustBuild(t, c, testToken)
			dir := t.TempDir()
			iso := writeFile(t, dir, "node01.iso", img)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			m := &qemutest.Machine{Dir: dir, ISO: iso, SecureBoot: true, Vars: tc.vars}
			if err := m.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer m.Kill()
			start := time.Now()
			want := `bootpilot stage 0: node01`
			if !tc.boots {
				want = `Verification failed`
			}
			if _, err := m.WaitFor(ctx, regexp.MustCompile(want)); err != nil {
				t.Fatalf("%v\nserial log:\n%s", err, m.Log())
			}
			t.Logf("%q after %.1fs", want, time.Since(start).Seconds())
			if !tc.boots {
				// shim now shows its error box and waits for a key: iPXE,
				// had it been started, would print within seconds.
				wait, stop := context.WithTimeout(ctx, 20*time.Second)
				defer stop()
				if _, err := m.WaitFor(wait, regexp.MustCompile(`iPXE|bootpilot stage 0`)); err == nil {
					t.Errorf("iPXE ran without the MOK:\n%s", m.Log())
				}
			}
		})
	}
}
