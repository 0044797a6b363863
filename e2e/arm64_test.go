package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/bootpilot/bootpilot/ipxe"
)

// The arm64 firmware tier: the server's arm64 ISO (iPXE snp.efi as
// EFI/BOOT/BOOTAA64.EFI) on QEMU's virt machine with AAVMF, under TCG on
// any host. Times are close to x86_64's (scenario_test.go): ≈15 s to the
// disk marker, ≈30 s for a deploy boot, on two cores at load 6–9.

var (
	armOnce    sync.Once
	armMarkerA []byte
	armErr     error

	armAgentOnce sync.Once
	armAgent     arm64Agent
	armAgentErr  error
)

// arm64KernelRoot is where `dpkg -x` unpacked Debian's linux-image-*-arm64
// package, with modules.dep made by `depmod -b ROOT VERSION`; the
// environment variable E2E_ARM64_KERNEL_ROOT overrides it.
const arm64KernelRoot = "/opt/bootpilot-e2e/linux-arm64"

// requireArm64 checks every component an arm64 scenario needs (skip
// locally, fail in CI) and returns the arm64 marker program A.
func requireArm64(t *testing.T) []byte {
	t.Helper()
	qemutest.RequireArm64(t, false)
	testenv.Tool(t, "go")
	if buildError != nil {
		t.Fatal(buildError)
	}
	armOnce.Do(func() { armMarkerA, armErr = markerEFIArch("arm64", "A") })
	if armErr != nil {
		t.Fatal(armErr)
	}
	return armMarkerA
}

// arm64Agent is the Debian arm64 kernel and an agent ramdisk for it with
// the agent built for arm64.
type arm64Agent struct{ kernel, initrd string }

// requireArm64Agent finds the arm64 kernel (skip locally, fail in CI) and
// builds, once, the arm64 agent and its ramdisk.
func requireArm64Agent(t *testing.T) arm64Agent {
	t.Helper()
	root := arm64KernelRoot
	if r := os.Getenv("E2E_ARM64_KERNEL_ROOT"); r != "" {
		root = r
	}
	var kernel, modules string
	ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	for _, k := range ks {
		ver := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		for _, dir := range []string{"lib", "usr/lib"} {
			m := filepath.Join(root, dir, "modules", ver)
			if _, err := os.Stat(filepath.Join(m, "modules.dep")); err == nil {
				kernel, modules = k, m
			}
		}
	}
	if kernel == "" {
		testenv.Missing(t, "no Debian arm64 kernel in "+root+" (dpkg -x linux-image-<ver>-arm64_*.deb "+root+"; depmod -b "+root+" <ver>)")
		return arm64Agent{}
	}
	armAgentOnce.Do(func() {
		bin := filepath.Join(workDir, "bootpilot-agent-arm64")
		if armAgentErr = testenv.GoBuild(bin, "./cmd/bootpilot-agent", "CGO_ENABLED=0", "GOARCH=arm64"); armAgentErr != nil {
			return
		}
		armAgent = arm64Agent{kernel: kernel, initrd: filepath.Join(workDir, "agent-arm64.cpio.gz")}
		// No --kernel: its version check reads x86 bzImages only.
		if out, err := exec.Command(bootpilot, "agent", "initramfs", "--modules", modules,
			"--agent", bin, "--out", armAgent.initrd).CombinedOutput(); err != nil {
			armAgentErr = fmt.Errorf("arm64 agent initramfs: %v\n%s", err, out)
		}
	})
	if armAgentErr != nil {
		t.Fatal(armAgentErr)
	}
	return armAgent
}

// markerEFIArch is markerEFI (unsigned) for arch's stock iPXE binary.
func markerEFIArch(arch, x string) ([]byte, error) {
	stock, err := ipxe.Stock(arch)
	if err != nil {
		return nil, err
	}
	var fp [32]byte
	copy(fp[:], ipxe.StockRootFingerprint)
	return stock.Patch([]byte("#!ipxe\necho "+markerLine(x)+"\npoweroff\n"), fp)
}

// newArm64MarkerDisk writes a marker disk whose ESP holds efi as
// EFI/BOOT/BOOTAA64.EFI.
func newArm64MarkerDisk(t *testing.T, dir, name string, efi []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := markerDiskAs(p, diskSize, "BOOTAA64.EFI", efi); err != nil {
		t.Fatal(err)
	}
	return p
}

// arm64ISO registers node01 (with profile, may be empty) through
// `bootpilot iso build --api` and returns its arm64 ISO (a fresh boot
// token): unsigned, or signed with the sign flags (--db-key F --db-cert F).
func (s *server) arm64ISO(dir, profile string, sign ...string) string {
	s.t.Helper()
	if len(sign) == 0 {
		sign = []string{"--unsigned"}
	}
	csv := writeFile(s.t, dir, "hosts.csv", []byte(fmt.Sprintf("name,mac,ipv4,gateway,dns,profile\nnode01,%s,%s,%s,%s,%s\n",
		qemutest.DefaultMAC, qemutest.GuestIP, qemutest.GuestGW, qemutest.GuestDNS, profile)))
	out := filepath.Join(dir, fmt.Sprintf("iso-%d", time.Now().UnixNano()))
	args := []string{"iso", "build", "--api", fmt.Sprintf("https://127.0.0.1:%d", s.port), "--csv", csv, "--out", out,
		"--server-url", fmt.Sprintf("https://%s:%d", qemutest.ServerAddr, qemutest.ServerPort),
		"--ca-cert", filepath.Join(s.dataDir, "ca.pem"), "--arch", "arm64"}
	s.cli(append(args, sign...)...)
	return filepath.Join(out, "node01.iso")
}

// arm64Opts tune one arm64 boot.
type arm64Opts struct {
	nicOutOfBootOrder bool   // see qemutest.Machine.NICOutOfBootOrder
	memoryMB          int    // 512 when 0
	secureBoot        bool   // AAVMF with Secure Boot keys: vars, else AAVMF_VARS.ms.fd
	vars              []byte // initial VARS content
}

// startArm64VM boots iso (CD, first in the boot order) with disk (second)
// on the arm64 virt machine, the network forwarded to port.
func startArm64VM(t *testing.T, dir, name, iso, disk string, port int, o arm64Opts) *vm {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &qemutest.Machine{Dir: d, Arch: "arm64", ISO: iso, Disks: []string{disk}, ForwardTo: port,
		NICOutOfBootOrder: o.nicOutOfBootOrder, MemoryMB: o.memoryMB, SecureBoot: o.secureBoot, Vars: o.vars}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	v := &vm{Machine: m, name: name, start: time.Now()}
	t.Cleanup(m.Kill)
	return v
}

// TestArm64Localboot: a ready host's ISO from the server (serve --iso-arch
// x86_64,arm64) finds the NIC on arm64, fetches its script over HTTPS, gets
// localboot (exit 1), and AAVMF boots the disk.
func TestArm64Localboot(t *testing.T) {
	marker := requireArm64(t)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	// The server's own ISO (what `host iso` and virtual media get), with
	// both architectures: one ISO boots x86_64 and arm64 hosts.
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned", "--iso-arch", "x86_64,arm64")
	s.addHost("")
	iso := s.iso(dir)
	disk := newArm64MarkerDisk(t, dir, "disk.img", marker)
	before := wantState(t, s, host.StateReady)

	log := startArm64VM(t, dir, "boot1", iso, disk, port, arm64Opts{}).finish(t, limitLocal)
	if testing.Verbose() {
		t.Logf("serial log:\n%s", log)
	}
	mustContain(t, "arm64 localboot", log, reStage0, `bootpilot: net0 52:54:00:12:34:56 10\.0\.2\.15`,
		`https://10\.0\.2\.100:8443/boot/v1/script\.\.\. ok`, `bootpilot: booting the local disk`, markerLine("A"))
	mustNotContain(t, "arm64 localboot", log, reGiveUp, `attempt \d`)

	h := wantState(t, s, host.StateReady)
	if h.Inventory.MAC != qemutest.DefaultMAC || h.Inventory.Arch != "arm64" || h.Inventory.Platform != "efi" || !h.Inventory.SeenAt.After(before.CreatedAt) {
		t.Errorf("inventory after the boot = %+v, want the guest's MAC, arm64, efi, seen now", h.Inventory)
	}
	wantEvents(t, s)
}

// TestArm64ServerDown: the server is stopped; the arm64 ISO's stage 0
// gives up after its bounded retries and AAVMF boots the disk.
func TestArm64ServerDown(t *testing.T) {
	marker := requireArm64(t)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	iso := s.arm64ISO(dir, "")
	disk := newArm64MarkerDisk(t, dir, "disk.img", marker)
	s.stop()

	v := startArm64VM(t, dir, "boot-giveup", iso, disk, port, arm64Opts{})
	v.waitFor(t, limitLocal, reStage0)
	t0 := time.Now()
	v.waitFor(t, limitLocal, reGiveUp)
	t.Logf("server down: stage 0 gave up %.1fs after it started", time.Since(t0).Seconds())
	log := v.finish(t, limitLocal)
	if testing.Verbose() {
		t.Logf("serial log:\n%s", log)
	}
	mustContain(t, "arm64 server down", log, `bootpilot: net0 52:54:00:12:34:56`, `bootpilot: fetch 3/4 failed, retry in 8s`, reGiveUp, markerLine("A"))
	mustNotContain(t, "arm64 server down", log, `fetch 4/4`, `booting the local disk`)
	if n := strings.Count(log, "bootpilot: fetch "); n != 3 {
		t.Errorf("%d retries, want 3 (4 tries)", n)
	}
}

// TestArm64NoNIC: the firmware connects no UEFI driver to the NIC (AAVMF
// with the NIC out of QEMU's boot order), so snp.efi sees no NIC; stage 0
// says so, exits 1 at once, and AAVMF boots the disk.
func TestArm64NoNIC(t *testing.T) {
	marker := requireArm64(t)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	iso := s.arm64ISO(dir, "")
	disk := newArm64MarkerDisk(t, dir, "disk.img", marker)

	log := startArm64VM(t, dir, "boot-nonic", iso, disk, port, arm64Opts{nicOutOfBootOrder: true}).finish(t, limitLocal)
	mustContain(t, "arm64 no NIC", log, reStage0, `bootpilot: no NIC with MAC 52:54:00:12:34:56`,
		`bootpilot: iPXE sees no NIC: the firmware connected no UEFI network driver`, reGiveUp, markerLine("A"))
	mustNotContain(t, "arm64 no NIC", log, `bootpilot: fetch `, `booting the local disk`)
	if h := wantState(t, s, host.StateReady); !h.Inventory.SeenAt.IsZero() {
		t.Errorf("inventory recorded without a NIC: %+v", h.Inventory)
	}
}

// TestArm64Deploy: reimage an arm64 host with an image profile; the arm64
// agent (Debian's arm64 kernel) writes the image, reports installed, and the
// next boot runs the deployed disk.
func TestArm64Deploy(t *testing.T) {
	markerA := requireArm64(t)
	ag := requireArm64Agent(t)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned", "--agent-after", "reboot", "--log-level", "debug")
	markerB, err := markerEFIArch("arm64", "B")
	if err != nil {
		t.Fatal(err)
	}
	imgB := filepath.Join(dir, "image-b.raw.zst")
	zstdFile(t, newArm64MarkerDisk(t, dir, "image-b.raw", markerB), imgB)
	var u agentURLs
	u.kernel, _ = s.imageAdd(ag.kernel)
	u.initrd, _ = s.imageAdd(ag.initrd)
	u.image, u.sha = s.imageAdd(imgB)
	s.cli("profile", "add", "agent-clean", "--installer", "none", "--kernel", u.kernel, "--initrd", u.initrd,
		"--cmdline", "console=ttyAMA0", "--clean-method", "zero")
	s.cli("profile", "add", "deploy", "--installer", "image", "--image", u.image, "--image-sha256", u.sha,
		"--target-disk", "/dev/vda", "--kernel", u.kernel, "--initrd", u.initrd, "--cmdline", "console=ttyAMA0")
	iso := s.arm64ISO(dir, "deploy")
	disk := newArm64MarkerDisk(t, dir, "disk.img", markerA)
	s.cli("host", "reimage", "node01", "--reason", "e2e arm64 deploy")
	wantState(t, s, host.StateReimage)
	tm := time.Now()

	log := startArm64VM(t, dir, "boot1-deploy", iso, disk, port, arm64Opts{memoryMB: 1024}).finishAgent(t, limitAgent)
	if testing.Verbose() {
		t.Logf("serial log of the deploy boot:\n%s", log)
	}
	mustContain(t, "arm64 deploy", log, reStage0, `bootpilot: node01: deploy deploy \(image\), attempt 1`,
		`detail="writing zstd image`, `msg="agent done" after=reboot`)
	mustNotContain(t, "arm64 deploy", log, `BOOTPILOT-DISK-MARKER`, reGiveUp, `level=ERROR`)
	h := wantState(t, s, host.StateReady)
	if h.LastCallback != host.EventInstalled || h.Inventory.Arch != "arm64" {
		t.Errorf("after deploy: last callback %q, arch %q; want installed, arm64", h.LastCallback, h.Inventory.Arch)
	}
	if efi, err := readDiskFile(disk, 1, "/EFI/BOOT/BOOTAA64.EFI"); err != nil || !bytes.Equal(efi, markerB) {
		t.Errorf("disk ESP: BOOTAA64.EFI is not image B's marker (err %v, %d bytes)", err, len(efi))
	}
	t.Logf("reimage → installed → ready: %.1fs", time.Since(tm).Seconds())

	log = startArm64VM(t, dir, "boot2-local", iso, disk, port, arm64Opts{}).finish(t, limitLocal)
	mustContain(t, "arm64 after deploy", log, reStage0, `bootpilot: booting the local disk`, markerLine("B"))
	mustNotContain(t, "arm64 after deploy", log, markerLine("A"), `attempt \d`)
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing", "host:node01:installed:installing>ready")
}

// TestArm64SecureBoot: AAVMF with Microsoft's keys plus our db certificate
// (qemutest.EnrollDB), Secure Boot on. Arm64 ISOs without a signature or
// signed by another key are refused and the (signed) disk boots instead.
// The arm64 ISO `iso build --api --db-key --db-cert` makes with the
// server's db key boots: stage 0 fetches its script and boots the disk. A
// deploy with Debian's arm64 kernel re-signed by our key lands, the agent
// sees Secure Boot on, and the next boot runs the deployed, signed marker.
func TestArm64SecureBoot(t *testing.T) {
	requireArm64(t)
	qemutest.RequireArm64(t, true)
	ag := requireArm64Agent(t)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	db := qemutest.NewDBKey(t, "bootpilot e2e db")
	keyFile, certFile := writeSigner(t, dir, db)
	other := t.TempDir()
	otherKey, otherCert := writeSigner(t, other, qemutest.NewDBKey(t, "someone else's db key"))
	stock, err := os.ReadFile(qemutest.AAVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := qemutest.EnrollDB(stock, db.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	sb := arm64Opts{secureBoot: true, vars: vars}
	marker := func(x string) []byte {
		efi, err := markerEFIArch("arm64", x)
		if err == nil {
			efi, err = db.SignPE(efi)
		}
		if err != nil {
			t.Fatal(err)
		}
		return efi
	}
	markerA, markerB := marker("A"), marker("B")
	kernel := qemutest.ResignKernel(t, dir, ag.kernel, db)

	s := startServer(t, filepath.Join(dir, "data"), port, "--db-key", keyFile, "--db-cert", certFile, "--agent-after", "reboot")
	disk := newArm64MarkerDisk(t, dir, "disk.img", markerA)

	refused := `failed to load Boot0001 "UEFI QEMU QEMU CD-ROM[^\n]*Access Denied`
	for _, c := range []struct {
		name string
		sign []string
	}{{"unsigned", nil}, {"other-key", []string{"--db-key", otherKey, "--db-cert", otherCert}}} {
		iso := s.arm64ISO(t.TempDir(), "", c.sign...)
		log := startArm64VM(t, dir, "boot-"+c.name, iso, disk, port, sb).finish(t, limitLocal)
		mustContain(t, "arm64 "+c.name+" ISO", log, refused, markerLine("A"))
		mustNotContain(t, "arm64 "+c.name+" ISO", log, `bootpilot stage 0`)
		if n := strings.Count(log, "iPXE initialising"); n != 1 {
			t.Errorf("arm64 %s ISO: iPXE started %d times, want once (the disk's marker)", c.name, n)
		}
		if h := wantState(t, s, host.StateReady); !h.Inventory.SeenAt.IsZero() {
			t.Errorf("arm64 %s ISO: inventory recorded: %+v", c.name, h.Inventory)
		}
	}

	iso := s.arm64ISO(t.TempDir(), "", "--db-key", keyFile, "--db-cert", certFile)
	log := startArm64VM(t, dir, "boot-signed", iso, disk, port, sb).finish(t, limitLocal)
	mustContain(t, "arm64 signed ISO", log, reStage0, `https://10\.0\.2\.100:8443/boot/v1/script\.\.\. ok`,
		`bootpilot: booting the local disk`, markerLine("A"))
	mustNotContain(t, "arm64 signed ISO", log, `Access Denied`, reGiveUp)

	var u agentURLs
	u.kernel, _ = s.imageAdd(kernel)
	u.initrd, _ = s.imageAdd(ag.initrd)
	imgB := filepath.Join(dir, "image-b.raw.zst")
	zstdFile(t, newArm64MarkerDisk(t, dir, "image-b.raw", markerB), imgB)
	u.image, u.sha = s.imageAdd(imgB)
	s.cli("profile", "add", "deploy", "--installer", "image", "--image", u.image, "--image-sha256", u.sha,
		"--target-disk", "/dev/vda", "--kernel", u.kernel, "--initrd", u.initrd, "--cmdline", "console=ttyAMA0")
	s.cli("host", "reimage", "node01", "--profile", "deploy", "--reason", "e2e arm64 secure boot")
	o := sb
	o.memoryMB = 1024
	log = startArm64VM(t, dir, "boot-signed-deploy", iso, disk, port, o).finishAgent(t, limitAgent)
	if testing.Verbose() {
		t.Logf("serial log of the deploy boot:\n%s", log)
	}
	mustContain(t, "arm64 signed deploy", log, reStage0, `bootpilot: node01: deploy deploy \(image\), attempt 1`,
		`msg=firmware secure_boot=enabled setup_mode=disabled`, `detail="writing zstd image`, `msg="agent done" after=reboot`)
	mustNotContain(t, "arm64 signed deploy", log, `Access Denied`, `BOOTPILOT-DISK-MARKER`, `level=ERROR`)
	if h := wantState(t, s, host.StateReady); h.LastCallback != host.EventInstalled {
		t.Errorf("after deploy: last callback %q, want installed", h.LastCallback)
	}
	if efi, err := readDiskFile(disk, 1, "/EFI/BOOT/BOOTAA64.EFI"); err != nil || !bytes.Equal(efi, markerB) {
		t.Errorf("disk ESP: BOOTAA64.EFI is not image B's marker (err %v, %d bytes)", err, len(efi))
	}

	log = startArm64VM(t, dir, "boot-signed-local", iso, disk, port, sb).finish(t, limitLocal)
	mustContain(t, "arm64 signed ISO after deploy", log, reStage0, `bootpilot: booting the local disk`, markerLine("B"))
	mustNotContain(t, "arm64 signed ISO after deploy", log, `Access Denied`, markerLine("A"))
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing", "host:node01:installed:installing>ready")
}
