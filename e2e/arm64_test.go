package e2e_test

import (
	"context"
	"fmt"
	"os"
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
// any host. A boot to iPXE takes ≈15 s on an idle x86_64 machine.

var (
	armOnce    sync.Once
	armMarkerA []byte
	armErr     error
)

// requireArm64 checks every component an arm64 scenario needs (skip
// locally, fail in CI) and returns the arm64 marker program A.
func requireArm64(t *testing.T) []byte {
	t.Helper()
	qemutest.RequireArm64(t)
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

// arm64ISO registers node01 through `bootpilot iso build --api` and
// returns its unsigned arm64 ISO (a fresh boot token).
func (s *server) arm64ISO(dir string) string {
	s.t.Helper()
	csv := writeFile(s.t, dir, "hosts.csv", []byte(fmt.Sprintf("name,mac,ipv4,gateway,dns\nnode01,%s,%s,%s,%s\n",
		qemutest.DefaultMAC, qemutest.GuestIP, qemutest.GuestGW, qemutest.GuestDNS)))
	out := filepath.Join(dir, fmt.Sprintf("iso-%d", time.Now().UnixNano()))
	s.cli("iso", "build", "--api", fmt.Sprintf("https://127.0.0.1:%d", s.port), "--csv", csv, "--out", out,
		"--server-url", fmt.Sprintf("https://%s:%d", qemutest.ServerAddr, qemutest.ServerPort),
		"--ca-cert", filepath.Join(s.dataDir, "ca.pem"), "--unsigned", "--arch", "arm64")
	return filepath.Join(out, "node01.iso")
}

// startArm64VM boots iso (CD, first in the boot order) with disk (second)
// on the arm64 virt machine, the network forwarded to port.
func startArm64VM(t *testing.T, dir, name, iso, disk string, port int, nicOutOfBootOrder bool) *vm {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &qemutest.Machine{Dir: d, Arch: "arm64", ISO: iso, Disks: []string{disk}, ForwardTo: port, NICOutOfBootOrder: nicOutOfBootOrder}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	v := &vm{Machine: m, name: name, start: time.Now()}
	t.Cleanup(m.Kill)
	return v
}

// TestArm64Localboot: a ready host's arm64 ISO finds the NIC, fetches its
// script over HTTPS, gets localboot (exit 1), and AAVMF boots the disk.
func TestArm64Localboot(t *testing.T) {
	marker := requireArm64(t)
	scenario(t)
	dir := t.TempDir()
	port := freePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	iso := s.arm64ISO(dir)
	disk := newArm64MarkerDisk(t, dir, "disk.img", marker)
	before := wantState(t, s, host.StateReady)

	log := startArm64VM(t, dir, "boot1", iso, disk, port, false).finish(t, limitLocal)
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
	port := freePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	iso := s.arm64ISO(dir)
	disk := newArm64MarkerDisk(t, dir, "disk.img", marker)
	s.stop()

	v := startArm64VM(t, dir, "boot-giveup", iso, disk, port, false)
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
	port := freePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	iso := s.arm64ISO(dir)
	disk := newArm64MarkerDisk(t, dir, "disk.img", marker)

	log := startArm64VM(t, dir, "boot-nonic", iso, disk, port, true).finish(t, limitLocal)
	mustContain(t, "arm64 no NIC", log, reStage0, `bootpilot: no NIC with MAC 52:54:00:12:34:56`,
		`bootpilot: iPXE sees no NIC: the firmware connected no UEFI network driver`, reGiveUp, markerLine("A"))
	mustNotContain(t, "arm64 no NIC", log, `bootpilot: fetch `, `booting the local disk`)
	if h := wantState(t, s, host.StateReady); !h.Inventory.SeenAt.IsZero() {
		t.Errorf("inventory recorded without a NIC: %+v", h.Inventory)
	}
}
