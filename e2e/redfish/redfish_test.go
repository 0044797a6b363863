package redfish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/bootpilot/bootpilot/ipxe"
)

var (
	workDir    string
	bootpilot  string // cmd/bootpilot
	agentBin   string // cmd/bootpilot-agent, static
	buildError error
)

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		if workDir, err = os.MkdirTemp("", "bootpilot-e2e-redfish-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(workDir)
		if d := os.Getenv("E2E_BIN_DIR"); d != "" {
			bootpilot, agentBin = filepath.Join(d, "bootpilot"), filepath.Join(d, "bootpilot-agent")
		} else {
			bootpilot, agentBin = filepath.Join(workDir, "bootpilot"), filepath.Join(workDir, "bootpilot-agent")
			buildError = testenv.GoBuild(bootpilot, "./cmd/bootpilot", "CGO_ENABLED=0")
			if buildError == nil {
				buildError = testenv.GoBuild(agentBin, "./cmd/bootpilot-agent", "CGO_ENABLED=0")
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

const (
	bmcUser  = "admin"
	bmcPass  = "e2e-BMC-password-never-printed"
	diskSize = 12 << 20
	reStage0 = `bootpilot stage 0: node01`
)

func markerLine(x string) string { return "BOOTPILOT-DISK-MARKER-" + x }

// markerEFI is the stock iPXE binary whose embedded script prints
// markerLine(x) and powers off.
func markerEFI(t *testing.T, x string) []byte {
	t.Helper()
	stock, err := ipxe.Stock("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	var fp [32]byte
	copy(fp[:], ipxe.StockRootFingerprint)
	efi, err := stock.Patch([]byte("#!ipxe\necho "+markerLine(x)+"\npoweroff\n"), fp)
	if err != nil {
		t.Fatal(err)
	}
	return efi
}

// markerDisk writes a GPT disk image: an EFI system partition with efi as
// EFI/BOOT/BOOTX64.EFI and an empty "cidata" partition for the agent's
// NoCloud seed.
func markerDisk(t *testing.T, path string, efi []byte) string {
	t.Helper()
	d, err := diskfs.Create(path, diskSize, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table := &gpt.Table{ProtectiveMBR: true, LogicalSectorSize: 512, PhysicalSectorSize: 512,
		GUID: "5a1e0c2d-6b7f-4e3a-9c1d-0e2f3a4b5c6d",
		Partitions: []*gpt.Partition{
			{Index: 1, Start: 2048, End: 9<<11 - 1, Type: gpt.EFISystemPartition, Name: "EFI System", GUID: "6b2f1d3e-7c8a-4f4b-8d2e-1f3a4b5c6d7e"},
			{Index: 2, Start: 9 << 11, End: 10<<11 - 1, Type: gpt.LinuxFilesystem, Name: "cidata", GUID: "7c3a2e4f-8d9b-4a5c-9e3f-2a4b5c6d7e8f"},
		}}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat16, VolumeLabel: "ESP", Reproducible: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Mkdir("/EFI/BOOT"); err != nil {
		t.Fatal(err)
	}
	f, err := fs.OpenFile("/EFI/BOOT/BOOTX64.EFI", os.O_CREATE|os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(efi); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// server is one `bootpilot serve` subprocess.
type server struct {
	t       *testing.T
	dataDir string
	port    int
	cmd     *exec.Cmd
	done    chan struct{}
	log     string
}

func startServer(t *testing.T, dataDir string, port int, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dataDir: dataDir, port: port, log: filepath.Join(dataDir, "server.log")}
	os.MkdirAll(dataDir, 0o700)
	f, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--data-dir", dataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--external-url", fmt.Sprintf("https://%s:%d", qemutest.ServerAddr, qemutest.ServerPort), "--install-timeout", "1h"}, extra...)
	s.cmd = exec.Command(bootpilot, args...)
	s.cmd.Stdout, s.cmd.Stderr, s.cmd.Env = f, f, testenv.CleanEnv()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); f.Close(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := s.try("host", "list"); err == nil {
			return s
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.log)
			t.Fatalf("server exited at start:\n%s", b)
		default:
		}
		if time.Now().After(end) {
			b, _ := os.ReadFile(s.log)
			t.Fatalf("server not up:\n%s", b)
		}
	}
}

func (s *server) try(args ...string) (string, error) {
	cmd := exec.Command(bootpilot, args...)
	cmd.Env = append(testenv.CleanEnv(), fmt.Sprintf("BOOTPILOT_SERVER=https://127.0.0.1:%d", s.port),
		"BOOTPILOT_TOKEN_FILE="+filepath.Join(s.dataDir, "admin-token"),
		"BOOTPILOT_CA_CERT="+filepath.Join(s.dataDir, "ca.pem"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("bootpilot %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (s *server) cli(args ...string) string {
	s.t.Helper()
	out, err := s.try(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *server) imageAdd(file string) (url, sha string) {
	s.t.Helper()
	var img struct{ Digest, URL string }
	if err := json.Unmarshal([]byte(s.cli("image", "add", file, "-o", "json")), &img); err != nil {
		s.t.Fatal(err)
	}
	return img.URL, strings.TrimPrefix(img.Digest, "sha256:")
}

func (s *server) show() host.Host {
	s.t.Helper()
	var out struct{ Host host.Host }
	if err := json.Unmarshal([]byte(s.cli("host", "show", "node01", "-o", "json")), &out); err != nil {
		s.t.Fatal(err)
	}
	return out.Host
}

// machine is the host behind the simulated BMC: a QEMU VM that starts
// powered off (-S) with an empty CD drive cd0 before the disk. A power-on
// after the VM powered itself off starts a new QEMU on the same disk, with
// the CD the BMC says is inserted. With secureBoot it runs OVMF's Secure
// Boot firmware on vars, and each new QEMU starts with the variables the
// last one left (NVRAM survives a power cycle).
type machine struct {
	t          *testing.T
	dir        string
	disk       string
	port       int
	bmc        func() *bmcsim.BMC
	sim        *bmcsim.Machine
	secureBoot bool
	vars       []byte // the first QEMU's VARS file (secureBoot)

	mu   sync.Mutex
	n    int
	vm   *qemutest.Machine
	boot []*qemutest.Machine
}

func (m *machine) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	d := filepath.Join(m.dir, fmt.Sprintf("boot%d", m.n))
	os.MkdirAll(d, 0o755)
	sockDir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		return err
	}
	m.t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "qmp.sock")
	vm := &qemutest.Machine{Dir: d, Disks: []string{m.disk}, ForwardTo: m.port, SecureBoot: m.secureBoot, Extra: []string{"-S",
		"-qmp", "unix:" + sock + ",server=on,wait=off",
		"-drive", "if=none,id=cdd,media=cdrom,readonly=on", "-device", "ide-cd,drive=cdd,id=cd0,bootindex=1"}}
	if m.secureBoot {
		vm.Vars = m.vars
		if m.vm != nil {
			if vm.Vars, err = os.ReadFile(varsFile(m.vm)); err != nil {
				return err
			}
		}
	}
	vctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	m.t.Cleanup(cancel)
	if err := vm.Start(vctx); err != nil {
		return err
	}
	m.t.Cleanup(vm.Kill)
	q, err := bmcsim.DialQMP(ctx, sock)
	if err != nil {
		return err
	}
	m.t.Cleanup(func() { q.Close() })
	m.vm, m.sim.QMP = vm, q
	m.boot = append(m.boot, vm)
	return nil
}

// powerOn starts the VM: cont for one waiting in prelaunch, else a new one.
func (m *machine) powerOn(ctx context.Context) error {
	m.mu.Lock()
	vm := m.vm
	m.mu.Unlock()
	if vm.Exited() {
		if err := m.start(ctx); err != nil {
			return err
		}
		if cd := m.bmc().CD(); cd.Inserted {
			// The BMC still has media: the new VM gets it too.
			files, _ := filepath.Glob(filepath.Join(m.sim.Dir, "media-*.iso"))
			sort.Strings(files)
			if len(files) > 0 {
				if err := m.sim.QMP.ChangeMedium(ctx, "cd0", files[len(files)-1]); err != nil {
					return err
				}
			}
		}
	}
	return m.sim.QMP.Cont(ctx)
}

// powerOff quits QEMU and waits until it has exited.
func (m *machine) powerOff(ctx context.Context) error {
	vm := m.current()
	if vm.Exited() {
		return nil
	}
	if err := m.sim.QMP.Quit(ctx); err != nil {
		return err
	}
	for !vm.Exited() {
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// varsFile is where qemutest keeps vm's copy of the UEFI variables.
func varsFile(vm *qemutest.Machine) string { return filepath.Join(vm.Dir, "OVMF_VARS.fd") }

func (m *machine) current() *qemutest.Machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vm
}

// serveBMC starts the simulated BMC for m (basic settings from cfg, with
// asynchronous tasks and media under the system) behind TLS and registers
// it as node01's BMC.
func serveBMC(t *testing.T, s *server, dir string, m *machine, cfg bmcsim.Config) (*bmcsim.BMC, *httptest.Server) {
	t.Helper()
	cfg.Username, cfg.Password = bmcUser, bmcPass
	cfg.AsyncTasks, cfg.MediaUnderSystems = true, true
	m.sim.Attach(&cfg)
	// A machine that is off is a QEMU waiting in prelaunch: media inserted
	// after the last one exited goes into a new one.
	insert := cfg.OnInsert
	cfg.OnInsert = func(u string) error {
		if m.current().Exited() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := m.start(ctx); err != nil {
				return err
			}
		}
		return insert(u)
	}
	bmc := bmcsim.New(cfg)
	bsrv := httptest.NewTLSServer(bmc)
	bsrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(bsrv.Close)
	caFile, pwFile := filepath.Join(dir, "bmc-ca.pem"), filepath.Join(dir, "bmc-password")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: bsrv.Certificate().Raw}), 0o644)
	os.WriteFile(pwFile, []byte(bmcPass), 0o600)
	s.cli("bmc", "set", "node01", "--url", bsrv.URL, "--username", bmcUser, "--password-file", pwFile,
		"--bmc-ca-cert", caFile, "--session")
	return bmc, bsrv
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", limit, what)
}

func waitExit(t *testing.T, vm *qemutest.Machine, limit time.Duration) string {
	t.Helper()
	waitFor(t, "the VM to power off", limit, vm.Exited)
	return vm.Log()
}

// TestReimageViaRedfish is the scenario, end to end.
func TestReimageViaRedfish(t *testing.T) {
	qemutest.Require(t, false)
	testenv.Tool(t, "go")
	if buildError != nil {
		t.Fatal(buildError)
	}
	kernel, modules := agenttest.Kernel(t)
	dir := t.TempDir()
	initrd := filepath.Join(dir, "agent.cpio.gz")
	if out, err := exec.Command(bootpilot, "agent", "initramfs", "--kernel", kernel, "--modules", modules,
		"--agent", agentBin, "--out", initrd).CombinedOutput(); err != nil {
		t.Fatalf("agent initramfs: %v\n%s", err, out)
	}
	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	keyFile := filepath.Join(dir, "secret.key")
	s0 := &server{t: t}
	if _, err := s0.try("secret-key", "init", keyFile); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned", "--agent-after", "poweroff",
		"--secret-key-file", keyFile, "--media-listen", fmt.Sprintf("127.0.0.1:%d", mport),
		"--media-url", fmt.Sprintf("http://127.0.0.1:%d", mport))

	// Profiles: the agent deploys image B (a disk whose ESP boots marker B).
	imgB := markerDisk(t, filepath.Join(dir, "image-b.raw"), markerEFI(t, "B"))
	kURL, _ := s.imageAdd(kernel)
	iURL, _ := s.imageAdd(initrd)
	s.cli("profile", "add", "agent-clean", "--installer", "none", "--kernel", kURL, "--initrd", iURL,
		"--cmdline", "console=ttyS0", "--clean-method", "zero")
	bURL, bSHA := s.imageAdd(imgB)
	s.cli("profile", "add", "deploy", "--installer", "image", "--image", bURL, "--image-sha256", bSHA,
		"--target-disk", "/dev/vda", "--kernel", kURL, "--initrd", iURL, "--cmdline", "console=ttyS0")
	s.cli("host", "add", "node01", "--mac", qemutest.DefaultMAC, "--ipv4", qemutest.GuestIP,
		"--gateway", qemutest.GuestGW, "--dns", qemutest.GuestDNS, "--profile", "deploy")

	// The machine and its BMC.
	diskA := markerDisk(t, filepath.Join(dir, "disk.img"), markerEFI(t, "A"))
	mediaDir := filepath.Join(dir, "media")
	os.MkdirAll(mediaDir, 0o755)
	var bmc *bmcsim.BMC
	m := &machine{t: t, dir: dir, disk: diskA, port: port, bmc: func() *bmcsim.BMC { return bmc },
		sim: &bmcsim.Machine{Device: "cd0", Dir: mediaDir, Log: slog.New(slog.DiscardHandler)}}
	m.sim.PowerOn, m.sim.PowerOff = m.powerOn, m.powerOff
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.start(ctx); err != nil {
		t.Fatal(err)
	}
	bmc, _ = serveBMC(t, s, dir, m, bmcsim.Config{})
	if out := s.cli("bmc", "test", "node01"); !strings.Contains(out, "Off") {
		t.Fatalf("bmc test: the machine should be off:\n%s", out)
	}

	// One command: flag, build + publish the ISO, insert, boot override, power on.
	t0 := time.Now()
	out := s.cli("host", "reimage", "node01", "--via", "redfish", "--reason", "e2e redfish")
	t.Logf("bootpilot host reimage node01 --via redfish (%.1fs):\n%s", time.Since(t0).Seconds(), out)
	if med, err := m.sim.QMP.Medium(ctx, "cd0"); err != nil || !strings.HasPrefix(med, mediaDir) {
		t.Fatalf("VM CD after the reimage = %q, %v; want the ISO the BMC fetched", med, err)
	}
	if st := bmc.State(); !st.PowerOn || len(st.BootedFrom) != 1 || st.BootedFrom[0] != "Cd" {
		t.Fatalf("BMC after the reimage: power %v, booted from %v; want on, Cd", st.PowerOn, st.BootedFrom)
	}

	// The VM boots the inserted ISO; the agent deploys and powers off.
	vm1 := m.current()
	log1 := waitExit(t, vm1, 8*time.Minute)
	t.Logf("boot 1 (virtual media → deploy): %.1fs", time.Since(t0).Seconds())
	for _, want := range []string{reStage0, `bootpilot: node01: deploy deploy \(image\), attempt 1`, `msg="agent done" after=poweroff`} {
		if !regexp.MustCompile(want).MatchString(log1) {
			t.Fatalf("boot 1 lacks %q; serial log:\n%s", want, log1)
		}
	}
	if strings.Contains(log1, "BOOTPILOT-DISK-MARKER") {
		t.Fatalf("boot 1 ran a disk marker instead of the ISO:\n%s", log1)
	}
	if h := s.show(); h.State != host.StateReady || h.LastCallback != host.EventInstalled {
		t.Fatalf("after the deploy: state %s, last callback %q; want ready, installed", h.State, h.LastCallback)
	}
	waitFor(t, "the server to eject the media", time.Minute, func() bool {
		var b struct {
			MediaInserted bool `json:"media_inserted"`
		}
		json.Unmarshal([]byte(s.cli("bmc", "show", "node01", "-o", "json")), &b)
		return !b.MediaInserted
	})
	if cd, st := bmc.CD(), bmc.State(); cd.Inserted || cd.Image != "" || st.BootEnabled != "Disabled" {
		t.Fatalf("BMC after ready: CD %+v, override %s/%s; want empty, Disabled", cd, st.BootTarget, st.BootEnabled)
	}

	// Power on through the BMC: the next boot is the deployed disk. (The
	// simulated BMC does not watch QEMU exit, as a real one watches the
	// power rail, so its power state is brought to Off first.)
	s.cli("host", "power", "node01", "off")
	if out := s.cli("host", "power", "node01", "on"); !strings.Contains(out, "power On") {
		t.Errorf("host power on: %s", out)
	}
	vm2 := m.current()
	if vm2 == vm1 {
		t.Fatal("power on did not start the machine again")
	}
	log2 := waitExit(t, vm2, 4*time.Minute)
	if !strings.Contains(log2, markerLine("B")) || strings.Contains(log2, markerLine("A")) || strings.Contains(log2, "bootpilot stage 0") {
		t.Fatalf("boot 2 should run the deployed disk (marker B) without stage 0; serial log:\n%s", log2)
	}
	t.Logf("reimage via redfish → ready → disk: %.1fs", time.Since(t0).Seconds())

	evs := s.cli("host", "events", "node01")
	for _, want := range []string{"bmc-set", "redfish-insert", "redfish-boot", "redfish-eject", "e2e redfish", "installed"} {
		if !strings.Contains(evs, want) {
			t.Errorf("events lack %q:\n%s", want, evs)
		}
	}
	srvLog, _ := os.ReadFile(s.log)
	if bytes.Contains(srvLog, []byte(bmcPass)) || strings.Contains(evs, bmcPass) {
		t.Error("the BMC password appears in the server log or the events")
	}
	for _, err := range m.sim.Errors() {
		// Ejecting from a VM that already powered itself off is fine:
		// the next power-on starts a machine with whatever the BMC holds.
		if !strings.HasPrefix(err.Error(), "eject") {
			t.Errorf("BMC machine hook: %v", err)
		}
	}
}
