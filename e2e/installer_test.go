package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// The real Debian installer (package debian-installer-12-netboot-amd64).
const (
	diDir    = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64"
	diKernel = diDir + "/linux"
	diInitrd = diDir + "/initrd.gz"

	// The test's mirror, as the guest sees it (a second guestfwd).
	mirrorAddr = "10.0.2.101"
	mirrorPort = 80

	// d-i under TCG needs about a minute to bring the network up, after
	// ≈1 min of firmware, iPXE and downloads; allow for a loaded machine.
	limitInstaller = 12 * time.Minute
)

// requireInstaller checks what the installer scenarios need (skip locally,
// fail in CI) and returns the shared artifacts.
func requireInstaller(t *testing.T) artifacts {
	t.Helper()
	a := require(t, false)
	testenv.File(t, diKernel)
	testenv.File(t, diInitrd)
	return a
}

// mirror is the test's HTTP server on loopback, reached by the guest as
// http://10.0.2.101/: it logs every request and serves the files it has
// (the mirror answers 404 for everything else, which is enough: reaching
// it at all proves d-i read the preseed that names it).
type mirror struct {
	mu     sync.Mutex
	log    []string             // "GET /debian/dists/bookworm/Release"
	files  map[string]string    // path → local file
	before map[string]func()    // path → runs before the file is served
	hit    map[string]chan bool // path → closed on the first request
	port   int
}

func startMirror(t *testing.T) *mirror {
	t.Helper()
	m := &mirror{files: map[string]string{}, before: map[string]func(){}, hit: map[string]chan bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.port = l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return m
}

// waitCh returns a channel closed when path is first requested.
func (m *mirror) waitCh(path string) <-chan bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hit[path] == nil {
		m.hit[path] = make(chan bool)
	}
	return m.hit[path]
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.log = append(m.log, r.Method+" "+r.URL.Path)
	if ch := m.hit[r.URL.Path]; ch != nil {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	file, before := m.files[r.URL.Path], m.before[r.URL.Path]
	m.mu.Unlock()
	if before != nil {
		before()
	}
	if file == "" {
		http.NotFound(w, r)
		return
	}
	http.ServeFile(w, r, file)
}

func (m *mirror) requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.log...)
}

// startInstallerVM boots iso with 1 GiB of memory (d-i's minimum for a
// network install), disk as the next boot entry, and two forwards: the
// boot server and the test's mirror.
func startInstallerVM(t *testing.T, dir, name, iso, disk string, port int, mir *mirror) *vm {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	netdev := fmt.Sprintf("user,id=n0,net=10.0.2.0/24,restrict=on,"+
		"guestfwd=tcp:%s:%d-cmd:socat - TCP:127.0.0.1:%d,guestfwd=tcp:%s:%d-cmd:socat - TCP:127.0.0.1:%d",
		qemutest.ServerAddr, qemutest.ServerPort, port, mirrorAddr, mirrorPort, mir.port)
	m := &qemutest.Machine{Dir: d, Disks: []string{disk}, MemoryMB: 1024, Extra: []string{
		"-drive", "file=" + iso + ",if=none,id=cd0,media=cdrom,readonly=on",
		"-device", "ide-cd,drive=cd0,bootindex=1",
		"-netdev", netdev,
		"-device", "virtio-net-pci,netdev=n0,romfile=,mac=" + qemutest.DefaultMAC,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	return &vm{Machine: m, name: name, start: time.Now()}
}

// records returns node01's records (lifecycle events and others), oldest
// first.
func records(t *testing.T, s *server) []host.Record {
	t.Helper()
	var out struct {
		Events []host.Record `json:"events"`
	}
	if err := json.Unmarshal([]byte(s.cli("host", "events", "node01", "-o", "json")), &out); err != nil {
		t.Fatalf("host events: %v", err)
	}
	recs := out.Events
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	return recs
}

// waitProgress waits (at most limit) until node01 has a progress record
// with reason detail.
func waitProgress(t *testing.T, s *server, limit time.Duration, detail string) host.Record {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, r := range records(t, s) {
			if r.Actor == "host:"+r.Host && r.Action == "progress" && r.Reason == detail {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress %q within %v; records %+v", detail, limit, records(t, s))
		}
		time.Sleep(2 * time.Second) // polling the database, not creating concurrency
	}
}

// preseedWithMirror is the built-in preseed template with a mirror: the
// test's HTTP server. A profile's own config replaces the built-in one, so
// this is also what an operator's preseed looks like.
func preseedWithMirror(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "bootscripts", "templates", "config", "preseed", "preseed.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	return append(b, fmt.Sprintf("d-i mirror/country string manual\n"+
		"d-i mirror/http/hostname string %s\n"+
		"d-i mirror/http/directory string /debian\n"+
		"d-i mirror/http/proxy string\n"+
		"d-i mirror/suite string bookworm\n", mirrorAddr)...)
}

// evidenceRE picks the serial-log lines that show each step; tokenRE
// hides the one-time token in what the test prints.
var (
	evidenceRE = regexp.MustCompile(`(?m)^.*(bootpilot|/boot/v1/config/|EFI stub: Loaded initrd|Linux version|Failed to retrieve).*$`)
	tokenRE    = regexp.MustCompile(`/node01/[0-9a-f]{16,}`)
)

// logEvidence logs the serial-log lines that show each step, token hidden.
func logEvidence(t *testing.T, log string) {
	t.Helper()
	for _, l := range evidenceRE.FindAllString(log, -1) {
		t.Logf("serial: %s", tokenRE.ReplaceAllString(strings.TrimSpace(l), "/node01/<token>"))
	}
}

// TestDebianInstaller: a reimage with a preseed profile whose kernel and
// initrd are the real Debian 12 netboot installer. iPXE fetches kernel,
// initrd, preseed.cfg and the CA over pinned HTTPS and puts the last two
// into the initramfs; d-i loads /preseed.cfg without a prompt, brings up the
// static address (no DHCP exists on this network), its early_command posts
// "installer started" to the one-time callback URL pinning the CA with the
// initrd's wget, and d-i asks the mirror the preseed names for
// dists/bookworm/Release. The VM is stopped there (no full install).
func TestDebianInstaller(t *testing.T) {
	a := requireInstaller(t)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	mir := startMirror(t)
	release := mir.waitCh("/debian/dists/bookworm/Release")

	kernel, _ := s.imageAdd(diKernel)
	initrd, _ := s.imageAdd(diInitrd)
	cfg := writeFile(t, dir, "preseed.tmpl", preseedWithMirror(t))
	s.cli("profile", "add", "debian12", "--installer", "preseed", "--kernel", kernel, "--initrd", initrd,
		"--cmdline", "console=ttyS0", "--config-file", cfg)
	s.addHost("debian12")
	iso := s.iso(dir)
	s.cli("host", "reimage", "node01")

	v := startInstallerVM(t, dir, "install", iso, newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA), port, mir)
	select {
	case <-release:
	case <-v.doneCh():
		t.Fatalf("QEMU ended before d-i asked the mirror; mirror log %q\nserial log:\n%s", mir.requests(), v.Log())
	case <-time.After(limitInstaller):
		log := v.stopNow(t)
		t.Fatalf("d-i did not ask the mirror within %v; mirror log %q; records %+v\nserial log:\n%s",
			limitInstaller, mir.requests(), records(t, s), log)
	}
	p := waitProgress(t, s, 3*time.Minute, "installer started")
	// The early_command prints this once wget, pinning the CA, got a 2xx.
	v.waitFor(t, time.Minute, `bootpilot: reported installer started`)
	log := v.stopNow(t)
	t.Logf("mirror requests: %q", mir.requests())
	logEvidence(t, log)

	if p.Attempt != 1 {
		t.Errorf("progress recorded for attempt %d, want 1", p.Attempt)
	}
	mustContain(t, "debian installer", log, reStage0,
		`bootpilot: node01: install debian12 \(preseed\), attempt 1`,
		`https://10\.0\.2\.100:8443/boot/v1/config/node01/\S+/preseed\.cfg\.\.\. ok`,
		`https://10\.0\.2\.100:8443/boot/v1/config/node01/\S+/ca\.pem\.\.\. ok`,
		`Linux version 6\.1`)
	mustNotContain(t, "debian installer", log, `Failed to retrieve the preconfiguration file`,
		`bootpilot: install failed`, `(?i)dhcp`, reGiveUp)
	h := wantState(t, s, host.StateInstalling)
	if h.LastCallback != "" {
		t.Errorf("last callback %q, want none (the install is still running)", h.LastCallback)
	}
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing")
}

// TestDebianInstallerStaleToken: the attempt is cancelled between the
// script and the installer's config (the test's mirror serves the kernel and
// cancels first), so the one-time config URL is refused: iPXE fails that
// fetch and exits 1 to the disk. The installer never starts, let alone
// waits for a person.
func TestDebianInstallerStaleToken(t *testing.T) {
	a := requireInstaller(t)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	mir := startMirror(t)
	mir.files["/di/linux"], mir.files["/di/initrd.gz"] = diKernel, diInitrd
	var cancelErr error
	mir.before["/di/linux"] = func() { _, cancelErr = s.tryCLI("host", "cancel", "node01") }

	base := fmt.Sprintf("http://%s/di/", mirrorAddr)
	s.cli("profile", "add", "debian12", "--installer", "preseed", "--kernel", base+"linux", "--initrd", base+"initrd.gz",
		"--cmdline", "console=ttyS0")
	s.addHost("debian12")
	iso := s.iso(dir)
	s.cli("host", "reimage", "node01")

	disk := newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA)
	log := startInstallerVM(t, dir, "stale", iso, disk, port, mir).finish(t, limitInstaller)
	if cancelErr != nil {
		t.Fatalf("host cancel while iPXE fetched the kernel: %v", cancelErr)
	}
	mustContain(t, "stale token", log, `bootpilot: node01: install debian12 \(preseed\), attempt 1`,
		`https://10\.0\.2\.100:8443/boot/v1/config/node01/\S+/preseed\.cfg\.\.\. `,
		`bootpilot: install failed, booting the local disk`, markerLine("A"))
	mustNotContain(t, "stale token", log, `Linux version`, `preseed\.cfg\.\.\. ok`)
	if got := strings.Join(mir.requests(), "\n"); !strings.Contains(got, "GET /di/linux") {
		t.Errorf("mirror requests %q, want the kernel", got)
	}
	wantState(t, s, host.StateReady)
}
