package bootscripts_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/bootpilot/bootpilot/ipxe"
)

// The firmware tier: the real iPXE (ipxedust, patched with a stage-0 script
// and our CA) boots in QEMU + OVMF, chains over HTTPS to a test server that
// serves the scripts rendered here, and boots a real Linux kernel whose
// /init prints /proc/cmdline to the serial console.

const (
	bootMAC   = "52:54:00:12:34:56"
	bootToken = "0123456789abcdef0123456789abcdef"
	ovmfCode  = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars  = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// bootEnv is what every VM of the firmware tier shares: the kernel, the
// initramfs and the server certificate chain.
type bootEnv struct {
	kernel, initrd []byte
	chain          tls.Certificate
	fingerprint    [32]byte
}

func newBootEnv(t *testing.T) *bootEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("firmware tier skipped in -short mode")
	}
	testenv.Tool(t, "qemu-system-x86_64")
	testenv.Tool(t, "socat")
	testenv.File(t, ovmfCode)
	testenv.File(t, ovmfVars)
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		testenv.Missing(t, "no /boot/vmlinuz-* (Debian package linux-image-amd64)")
	}
	gotool := testenv.Tool(t, "go")
	e := &bootEnv{}
	var err error
	if e.kernel, err = os.ReadFile(kernels[len(kernels)-1]); err != nil {
		t.Fatal(err)
	}

	// /init: a static Go program (testdata/cmdlineinit).
	dir := t.TempDir()
	bin := filepath.Join(dir, "init")
	build := exec.Command(gotool, "build", "-o", bin, "./testdata/cmdlineinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build init: %v\n%s", err, out)
	}
	initBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var cp bytes.Buffer
	w := cpio.NewWriter(&cp)
	for _, d := range []string{"dev", "proc"} {
		if err := w.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteHeader(&cpio.Header{Name: "init", Mode: cpio.TypeReg | 0o755, Size: int64(len(initBin))}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(initBin); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	e.initrd = cp.Bytes()

	// iPXE accepts RSA server certificates only and needs the CA in the chain.
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	notBefore := time.Now().Add(-48 * time.Hour)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bootscripts boot-test CA"},
		NotBefore: notBefore, NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "10.0.2.100"},
		NotBefore: notBefore, NotAfter: time.Now().Add(48 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("10.0.2.100")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	e.chain = tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}
	e.fingerprint = sha256.Sum256(caDER)
	return e
}

// bootServer serves scripts[i] for the i-th authenticated script request
// (Localboot after the last), and the kernel and initramfs under /files/.
type bootServer struct {
	mu      sync.Mutex
	scripts []string
	served  int
	paths   []string // every request: "GET /files/vmlinuz 200"
}

func (s *bootServer) ServeHTTP(w http.ResponseWriter, r *http.Request, e *bootEnv) {
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		s.paths = append(s.paths, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, status))
		s.mu.Unlock()
	}()
	switch r.URL.Path {
	case "/boot/v1/script":
		if u, p, ok := r.BasicAuth(); !ok || u != "node01" || p != bootToken {
			status = http.StatusUnauthorized
			w.Header().Set("WWW-Authenticate", `Basic realm="bootpilot"`)
			w.WriteHeader(status)
			return
		}
		s.mu.Lock()
		script := bootscripts.Localboot
		if s.served < len(s.scripts) {
			script = s.scripts[s.served]
		}
		s.served++
		s.mu.Unlock()
		w.Write([]byte(script))
	case "/files/vmlinuz":
		w.Write(e.kernel)
	case "/files/init.cpio":
		w.Write(e.initrd)
	case "/boot/v1/config/node01/cf0123456789abcdef0123456789abcd/ks.cfg",
		"/boot/v1/config/node01/cf0123456789abcdef0123456789abcd/preseed.cfg",
		"/boot/v1/config/node01/cf0123456789abcdef0123456789abcd/ca.pem":
		fmt.Fprintf(w, "# config %s for node01\n", r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
	default:
		status = http.StatusNotFound
		http.NotFound(w, r)
	}
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r`)

// bootVM boots the patched iPXE against a server serving scripts and waits
// until the serial log matches until (or the VM ends). It returns the log.
func bootVM(t *testing.T, e *bootEnv, s *bootServer, until *regexp.Regexp) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.ServeHTTP(w, r, e) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{e.chain}, MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	h := host.Host{Name: "node01", MACs: []string{bootMAC}, IPv4: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
	stage0, err := ipxe.Stage0(ipxe.Stage0Config{Host: h, Token: bootToken, ServerURL: "https://10.0.2.100:8443", Tries: 2, TimeoutMS: 60000})
	if err != nil {
		t.Fatalf("ipxe.Stage0: %v", err)
	}
	stock, err := ipxe.Stock("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	efi, err := stock.Patch(stage0, e.fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	esp := filepath.Join(dir, "esp")
	if err := os.MkdirAll(filepath.Join(esp, "EFI", "BOOT"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(esp, "EFI", "BOOT", "BOOTX64.EFI"), efi, 0o644); err != nil {
		t.Fatal(err)
	}
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	varsPath := filepath.Join(dir, "vars.fd")
	logPath := filepath.Join(dir, "serial.log")
	if err := os.WriteFile(varsPath, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35,accel=tcg", "-m", "512", "-smp", "1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+varsPath,
		"-drive", "if=none,id=esp,format=raw,file=fat:rw:"+esp,
		"-device", "virtio-blk-pci,drive=esp,bootindex=1",
		"-netdev", fmt.Sprintf("user,id=n0,net=10.0.2.0/24,restrict=on,guestfwd=tcp:10.0.2.100:8443-cmd:socat - TCP:127.0.0.1:%d", port),
		"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+bootMAC,
		"-serial", "file:"+logPath, "-display", "none", "-monitor", "none", "-no-reboot")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() { cancel(); <-done }()
	read := func() string {
		b, _ := os.ReadFile(logPath)
		return ansiRE.ReplaceAllString(string(b), "")
	}
	for {
		select {
		case <-done:
			if log := read(); !until.MatchString(log) {
				t.Fatalf("qemu ended (%s) before %q; serial log:\n%s", bytes.TrimSpace(stderr.Bytes()), until, log)
			}
			return read()
		case <-ctx.Done():
			t.Fatalf("no %q within 10 minutes; serial log:\n%s", until, read())
		case <-time.After(500 * time.Millisecond):
			if log := read(); until.MatchString(log) {
				return log
			}
		}
	}
}

// bootData is ScriptData whose kernel and initramfs come from the test
// server.
func bootData(t *testing.T, a host.Action, h host.Host, p host.Profile) bootscripts.ScriptData {
	t.Helper()
	if a == host.ActionHold {
		d := testData(t, a, h, p)
		d.HoldSeconds = 1
		return d
	}
	p.Kernel = "https://10.0.2.100:8443/files/vmlinuz"
	p.Initrds = []string{"https://10.0.2.100:8443/files/init.cpio"}
	p.Cmdline = "console=ttyS0 panic=-1 " + p.Cmdline
	if err := p.Normalize(); err != nil {
		t.Fatal(err)
	}
	d := testData(t, a, h, p)
	d.ServerURL = "https://10.0.2.100:8443"
	d.HoldSeconds = 1
	return d
}

// renderScript renders d and returns the script and its kernel arguments.
func renderScript(t *testing.T, d bootscripts.ScriptData) (script, args string) {
	t.Helper()
	var b bytes.Buffer
	if err := MustRenderer(t).Script(&b, d); err != nil {
		t.Fatalf("Script(%s) = %v", d.Action, err)
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "kernel --timeout 30000 "+d.Profile.Kernel+" "); ok {
			args = strings.TrimSuffix(rest, " || goto failed")
		}
	}
	return b.String(), args
}

var cmdlineRE = regexp.MustCompile(`BOOTPILOT-CMDLINE: ([^\n]*)\n`)

// TestBootHoldThenInstall boots iPXE, gets a hold script, which sleeps and
// chains ${bootpilot/url} again (with the stage-0 credentials), then an
// install script whose kernel must see exactly the rendered command line.
func TestBootHoldThenInstall(t *testing.T) {
	t.Parallel()
	e := newBootEnv(t)
	hv := testHost(t, func(h *host.Host) {
		h.VLAN = 100
		h.IPv6 = "2001:db8::15/64"
		h.Gateway6 = "2001:db8::1"
	})
	hold, _ := renderScript(t, bootData(t, host.ActionHold, hv, host.Profile{}))
	install, args := renderScript(t, bootData(t, host.ActionInstall, hv, testProfile(t, host.InstallerKickstart, nil)))
	s := &bootServer{scripts: []string{hold, install}}
	log := bootVM(t, e, s, cmdlineRE)
	if !strings.Contains(log, "bootpilot: node01 is on hold, asking again in 1 s") {
		t.Errorf("serial log has no hold message:\n%s", log)
	}
	m := cmdlineRE.FindStringSubmatch(log)
	if m == nil || !strings.Contains(m[1]+" ", args+" ") {
		t.Errorf("kernel command line = %q, want it to contain %q", m, args)
	}
	if s.served != 2 {
		t.Errorf("server served %d scripts, want 2 (hold, then install)", s.served)
	}
	// iPXE fetched ks.cfg and built its cpio header: the kernel found it
	// in the initramfs, and Anaconda is told to read it there.
	if want := "BOOTPILOT-FILE /ks.cfg: # config ks.cfg for node01"; !strings.Contains(log, want) {
		t.Errorf("serial log lacks %q:\n%s", want, log)
	}
	if !strings.Contains(args, " inst.ks=file:/ks.cfg ") {
		t.Errorf("kernel arguments %q do not point Anaconda at /ks.cfg", args)
	}
}

// TestBootPreseedFiles boots the preseed script: iPXE puts preseed.cfg and
// the CA into the initramfs at the paths d-i and its early_command read.
func TestBootPreseedFiles(t *testing.T) {
	t.Parallel()
	e := newBootEnv(t)
	script, args := renderScript(t, bootData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerPreseed, nil)))
	log := bootVM(t, e, &bootServer{scripts: []string{script}}, cmdlineRE)
	for _, want := range []string{
		"BOOTPILOT-FILE /preseed.cfg: # config preseed.cfg for node01",
		"BOOTPILOT-FILE /bootpilot-ca.pem: # config ca.pem for node01",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("serial log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(args, "url=") {
		t.Errorf("kernel arguments %q still send d-i to fetch its preseed itself", args)
	}
}

// TestBootAutoinstallAndDeployArgs boots the autoinstall script (its
// ds=nocloud-net;s=… argument has a ';') and checks the kernel's command
// line.
func TestBootAutoinstallArgs(t *testing.T) {
	t.Parallel()
	e := newBootEnv(t)
	script, args := renderScript(t, bootData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerAutoinstall, nil)))
	log := bootVM(t, e, &bootServer{scripts: []string{script}}, cmdlineRE)
	m := cmdlineRE.FindStringSubmatch(log)
	if m == nil || !strings.Contains(m[1]+" ", args+" ") || !strings.Contains(args, "ds=nocloud-net;s=https://") {
		t.Errorf("kernel command line = %q, want it to contain %q", m, args)
	}
}

// TestBootFailurePath serves a deploy script whose initrd is missing: iPXE
// must print the failure message and exit 1 to the firmware, without
// booting the kernel.
func TestBootFailurePath(t *testing.T) {
	t.Parallel()
	e := newBootEnv(t)
	d := bootData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerImage, nil))
	d.Profile.Initrds = []string{"https://10.0.2.100:8443/files/missing.cpio"}
	script, _ := renderScript(t, d)
	s := &bootServer{scripts: []string{script}}
	// After "exit 1" OVMF reports that the iPXE boot entry failed and loads
	// its next boot option (here the EFI shell; on a server, the disk).
	log := bootVM(t, e, s, regexp.MustCompile(`(?s)bootpilot: deploy failed, booting the local disk\nBdsDxe: failed to start Boot0001 [^\n]*\nBdsDxe: loading Boot0002`))
	if strings.Contains(log, "BOOTPILOT-CMDLINE") || strings.Contains(log, "Linux version") {
		t.Errorf("the kernel booted although its initrd was missing:\n%s", log)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := strings.Join(s.paths, "\n"); !strings.Contains(got, "GET /files/missing.cpio 404") {
		t.Errorf("server requests:\n%s\nwant a 404 for the missing initrd", got)
	}
}
