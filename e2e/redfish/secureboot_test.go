package redfish_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// shimSigned is Debian's shim (shim-signed), signed by Microsoft's UEFI CA:
// what a factory-keyed host's installed OS boots first.
const shimSigned = "/usr/lib/shim/shimx64.efi.signed"

// Firmware log lines.
const (
	// reRefused: OVMF refused the CD's BOOTX64.EFI (Secure Boot).
	reRefused = `failed to (load|start) Boot\d+ "UEFI QEMU DVD-ROM[^\n]*Access Denied`
	// reShim: the disk's Microsoft-signed shim ran (it has no second stage).
	reShim = `Failed to open \\EFI\\BOOT\\grubx64\.efi - Not Found`
	// reNoBoot: the firmware tried every boot option and waits.
	reNoBoot = `No bootable option or device was found`
)

// dbCerts returns the X.509 certificates (DER) in the db variable of an
// OVMF VARS file.
func dbCerts(t *testing.T, vars []byte) [][]byte {
	t.Helper()
	list, _, err := qemutest.Variables(vars)
	if err != nil {
		t.Fatal(err)
	}
	var certs [][]byte
	for _, v := range list {
		if v.State != 0x3F /* VAR_ADDED */ || v.Name != "db" || v.GUID != qemutest.ImageSecurityDatabaseGUID {
			continue
		}
		types, sigs, err := qemutest.SignatureLists(v.Data)
		if err != nil {
			t.Fatal(err)
		}
		for i, typ := range types {
			if typ == qemutest.CertX509GUID {
				certs = append(certs, sigs[i])
			}
		}
	}
	if len(certs) == 0 {
		t.Fatal("no X.509 certificate in the VARS file's db")
	}
	return certs
}

// applySecureBoot writes a BMC's Secure Boot change into the variables the
// machine's next QEMU starts with (the last QEMU's, which has exited).
func (m *machine) applySecureBoot(_ context.Context, c bmcsim.SecureBootChange) error {
	if !c.Enable || len(c.Removed) > 0 {
		return errors.New("e2e machine: can only add db certificates with Secure Boot on")
	}
	path := varsFile(m.current())
	vars, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, der := range c.Added {
		if vars, err = qemutest.EnrollDB(vars, der); err != nil {
			return err
		}
	}
	return os.WriteFile(path, vars, 0o644)
}

// isoServer serves files from dir over HTTP with byte ranges, as a web
// server holding someone else's ISO would.
func isoServer(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv
}

func mustMatch(t *testing.T, what, log string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Fatalf("%s: serial log lacks %q:\n%s", what, re, log)
		}
	}
}

func mustNotMatch(t *testing.T, what, log string, res ...string) {
	t.Helper()
	for _, re := range res {
		if regexp.MustCompile(re).MatchString(log) {
			t.Fatalf("%s: serial log has %q:\n%s", what, re, log)
		}
	}
}

// TestSecureBootFactoryKeys: a host whose firmware has only Microsoft's
// Secure Boot keys, behind a BMC with SecureBootDatabases. (a) A reimage via
// Redfish inserts the server's ISO, signed by the organisation's db key: the
// firmware refuses it (Access Denied) and boots the disk's Microsoft-signed
// shim; the host stays flagged. (b) `bootpilot bmc secure-boot node01
// enroll` adds the db certificate through the BMC, once: pending until the
// next power cycle. (c) The next reimage via
// Redfish power-cycles the host, the firmware takes the new db, the same
// kind of ISO runs with Secure Boot on and deploys image B with a kernel
// signed by the db key; the host is ready and boots image B's signed marker.
// (d) An ISO signed by another key is still refused.
func TestSecureBootFactoryKeys(t *testing.T) {
	qemutest.Require(t, true)
	testenv.Tool(t, "go")
	testenv.File(t, shimSigned)
	if buildError != nil {
		t.Fatal(buildError)
	}
	start := time.Now()
	kernel, modules := agenttest.Kernel(t)
	dir := t.TempDir()
	db := qemutest.NewDBKey(t, "bootpilot e2e db")
	keyFile, certFile := filepath.Join(dir, "db.key"), filepath.Join(dir, "db.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(db.Key.(*rsa.PrivateKey))}), 0o600)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: db.Cert.Raw}), 0o644)
	signedKernel := qemutest.ResignKernel(t, dir, kernel, db)
	initrd := filepath.Join(dir, "agent.cpio.gz")
	if out, err := exec.Command(bootpilot, "agent", "initramfs", "--kernel", kernel, "--modules", modules,
		"--agent", agentBin, "--out", initrd).CombinedOutput(); err != nil {
		t.Fatalf("agent initramfs: %v\n%s", err, out)
	}
	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	secretKey := filepath.Join(dir, "secret.key")
	if _, err := (&server{t: t}).try("secret-key", "init", secretKey); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, filepath.Join(dir, "data"), port, "--db-key", keyFile, "--db-cert", certFile,
		"--agent-after", "poweroff", "--secret-key-file", secretKey,
		"--media-listen", fmt.Sprintf("127.0.0.1:%d", mport), "--media-url", fmt.Sprintf("http://127.0.0.1:%d", mport))

	// Image B boots a marker signed by the db key; the agent's kernel is
	// re-signed by it too. (Neither iPXE nor the agent prints the Secure
	// Boot state, and the kernel runs quiet so as not to print its command
	// line's callback token: (a) and (d) show this firmware enforces.)
	markerB, err := db.SignPE(markerEFI(t, "B"))
	if err != nil {
		t.Fatal(err)
	}
	imgB := markerDisk(t, filepath.Join(dir, "image-b.raw"), markerB)
	kURL, _ := s.imageAdd(signedKernel)
	iURL, _ := s.imageAdd(initrd)
	bURL, bSHA := s.imageAdd(imgB)
	s.cli("profile", "add", "deploy", "--installer", "image", "--image", bURL, "--image-sha256", bSHA,
		"--target-disk", "/dev/vda", "--kernel", kURL, "--initrd", iURL, "--cmdline", "console=ttyS0")
	s.cli("host", "add", "node01", "--mac", qemutest.DefaultMAC, "--ipv4", qemutest.GuestIP,
		"--gateway", qemutest.GuestGW, "--dns", qemutest.GuestDNS, "--profile", "deploy")

	// The factory-keyed machine: Microsoft's KEK and db only; its disk
	// boots Debian's Microsoft-signed shim.
	shim, err := os.ReadFile(shimSigned)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := os.ReadFile(qemutest.OVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	diskA := markerDisk(t, filepath.Join(dir, "disk.img"), shim)
	mediaDir := filepath.Join(dir, "media")
	os.MkdirAll(mediaDir, 0o755)
	var bmc *bmcsim.BMC
	m := &machine{t: t, dir: dir, disk: diskA, port: port, bmc: func() *bmcsim.BMC { return bmc },
		sim: &bmcsim.Machine{Device: "cd0", Dir: mediaDir, Log: slog.New(slog.DiscardHandler)}, secureBoot: true, vars: vars}
	m.sim.PowerOn, m.sim.PowerOff, m.sim.ApplySecureBoot = m.powerOn, m.powerOff, m.applySecureBoot
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := m.start(ctx); err != nil {
		t.Fatal(err)
	}
	msCerts := dbCerts(t, vars)
	var bsrv *httptest.Server
	bmc, bsrv = serveBMC(t, s, dir, m, bmcsim.Config{SecureBoot: true, SecureBootDB: msCerts})
	ep := redfish.Endpoint{URL: bsrv.URL, Username: bmcUser, Password: bmcPass,
		CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: bsrv.Certificate().Raw}), Logger: slog.New(slog.DiscardHandler)}
	rc, err := redfish.Dial(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	st, err := rc.SecureBootState(ctx)
	if err != nil || !st.Enabled || !st.Databases || len(st.DB) != len(msCerts) || !strings.Contains(st.DB[0].Subject, "Microsoft") {
		t.Fatalf("BMC Secure Boot state = %+v, %v; want enabled with the VARS file's Microsoft db", st, err)
	}
	t.Logf("setup: %.1fs", time.Since(start).Seconds())

	// (a) The server's ISO is refused; the disk's shim runs.
	t0 := time.Now()
	s.cli("host", "reimage", "node01", "--via", "redfish", "--reason", "e2e factory keys")
	vm := m.current()
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(reNoBoot)); err != nil {
		t.Fatalf("(a): %v\n%s", err, vm.Log())
	}
	log := vm.Log()
	mustMatch(t, "(a) db not enrolled", log, reRefused, reShim)
	mustNotMatch(t, "(a) db not enrolled", log, `bootpilot stage 0`)
	if h := s.show(); h.State != host.StateReimage || h.Attempt != 0 || h.LastCallback != "" {
		t.Fatalf("(a): host %s attempt %d callback %q; want reimage, 0, none", h.State, h.Attempt, h.LastCallback)
	}
	s.cli("host", "power", "node01", "off")
	t.Logf("(a) reimage refused by factory keys: %.1fs", time.Since(t0).Seconds())

	// (b) Enrol the db certificate through the BMC; it is pending.
	t0 = time.Now()
	before := s.secureBoot("status")
	if !before.Databases || before.DBCert == nil || before.DBCert.InDB || len(before.DB) != len(msCerts) || before.PendingRestart {
		t.Fatalf("(b) secure-boot status before = %+v; want databases, the Microsoft db without ours, nothing pending", before)
	}
	after := s.secureBoot("enroll", "--reason", "e2e factory keys")
	if !after.DBCert.InDB || len(after.Changes) != 1 || !after.PendingRestart || !strings.Contains(after.Message, "restart") {
		t.Fatalf("(b) secure-boot enroll = %+v; want ours in db, one change, pending restart", after)
	}
	if again := s.secureBoot("enroll"); len(again.Changes) != 0 || !again.DBCert.InDB {
		t.Fatalf("(b) second enroll = %+v; want no change", again)
	}
	if b := bmc.State(); len(b.SecureBootDB) != len(msCerts)+1 || len(b.SecureBootApplied) != len(msCerts) {
		t.Fatalf("(b) BMC lists %d db certificates, firmware has %d; want %d pending on %d", len(b.SecureBootDB), len(b.SecureBootApplied), len(msCerts)+1, len(msCerts))
	}
	t.Logf("(b) bootpilot bmc secure-boot node01 enroll: %.1fs", time.Since(t0).Seconds())

	// (c) The next reimage's power-on applies it: the ISO runs and deploys.
	t0 = time.Now()
	s.cli("host", "cancel", "node01", "--reason", "e2e: retry after enrolment")
	s.cli("host", "reimage", "node01", "--via", "redfish", "--reason", "e2e factory keys, db enrolled")
	if b := bmc.State(); len(b.SecureBootApplied) != len(msCerts)+1 || b.SecureBootError != "" {
		t.Fatalf("(c) firmware has %d db certificates (error %q), want %d", len(b.SecureBootApplied), b.SecureBootError, len(msCerts)+1)
	}
	vm = m.current()
	// Fail fast when the firmware refuses the ISO again (it would then sit
	// in its boot menu).
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`msg="agent done"|`+reNoBoot)); err != nil {
		t.Fatalf("(c): %v\n%s", err, vm.Log())
	}
	mustNotMatch(t, "(c) db enrolled", vm.Log(), `Access Denied`, reNoBoot)
	log = waitExit(t, vm, 2*time.Minute)
	mustMatch(t, "(c) db enrolled", log, `bootpilot stage 0: node01`, `bootpilot: node01: deploy deploy \(image\), attempt 1`,
		`msg=firmware secure_boot=enabled setup_mode=disabled`, `msg="agent done" after=poweroff`)
	mustNotMatch(t, "(c) db enrolled", log, `Access Denied`, `BOOTPILOT-DISK-MARKER`, `level=ERROR`)
	if h := s.show(); h.State != host.StateReady || h.LastCallback != host.EventInstalled {
		t.Fatalf("(c): host %s, last callback %q; want ready, installed", h.State, h.LastCallback)
	}
	waitFor(t, "the server to eject the media", time.Minute, func() bool { return !bmc.CD().Inserted })
	s.cli("host", "power", "node01", "off")
	s.cli("host", "power", "node01", "on")
	log = waitExit(t, m.current(), 4*time.Minute)
	mustMatch(t, "(c) next boot", log, markerLine("B"))
	mustNotMatch(t, "(c) next boot", log, `Access Denied`, `bootpilot stage 0`)
	s.cli("host", "power", "node01", "off")
	t.Logf("(c) reimage with db enrolled → ready → marker B: %.1fs", time.Since(t0).Seconds())

	// (d) An ISO signed by another key is refused; the disk (B) boots.
	t0 = time.Now()
	other := qemutest.NewDBKey(t, "someone else's db key")
	isoDir := filepath.Join(dir, "foreign")
	os.MkdirAll(isoDir, 0o755)
	foreignISO(t, filepath.Join(isoDir, "other.iso"), s, other)
	if err := rc.InsertMedia(ctx, isoServer(t, isoDir).URL+"/other.iso"); err != nil {
		t.Fatal(err)
	}
	if err := rc.SetBootOverride(ctx, "Cd", "Once"); err != nil {
		t.Fatal(err)
	}
	if err := rc.Reset(ctx, "On"); err != nil {
		t.Fatal(err)
	}
	log = waitExit(t, m.current(), 4*time.Minute)
	mustMatch(t, "(d) other key", log, reRefused, markerLine("B"))
	mustNotMatch(t, "(d) other key", log, `bootpilot stage 0`)
	t.Logf("(d) ISO signed by another key refused: %.1fs", time.Since(t0).Seconds())
	t.Logf("total: %.1fs", time.Since(start).Seconds())

	if evs := s.cli("host", "events", "node01"); !strings.Contains(evs, "bmc-secure-boot-enroll") {
		t.Errorf("events lack the enrolment (bmc-secure-boot-enroll):\n%s", evs)
	}
	for _, err := range m.sim.Errors() {
		if !strings.HasPrefix(err.Error(), "eject") {
			t.Errorf("BMC machine hook: %v", err)
		}
	}
}

// secureBoot runs `bootpilot bmc secure-boot node01 ACTION` and decodes its
// JSON answer.
func (s *server) secureBoot(action string, args ...string) client.SecureBootStatus {
	s.t.Helper()
	var st client.SecureBootStatus
	out := s.cli(append([]string{"bmc", "secure-boot", "node01", action, "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		s.t.Fatalf("bmc secure-boot %s: %v\n%s", action, err, out)
	}
	return st
}

// foreignISO builds node01's ISO for the server's CA, signed by signer.
func foreignISO(t *testing.T, path string, s *server, signer *imagebuilder.Signer) {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(s.dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(caPEM)
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	b, err := imagebuilder.NewBuilder(imagebuilder.Config{ServerURL: fmt.Sprintf("https://%s:%d", qemutest.ServerAddr, qemutest.ServerPort),
		CACert: ca, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := b.Build(&buf, s.show(), "0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
