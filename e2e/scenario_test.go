package e2e_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Time limits: a boot to iPXE takes ≈10 s and one with the agent ≈25 s on
// an idle machine (TCG); the limits allow for a loaded CI machine.
const (
	limitLocal = 3 * time.Minute
	limitAgent = 6 * time.Minute
)

const diskSize = 12 << 20

// wantState fails unless node01 is in state st.
func wantState(t *testing.T, s *server, st host.State) host.Host {
	t.Helper()
	h := s.show()
	if h.State != st {
		t.Fatalf("node01 state %q (attempt %d), want %q; events %v", h.State, h.Attempt, st, s.events())
	}
	return h
}

// wantEvents fails unless node01's lifecycle events are exactly want.
func wantEvents(t *testing.T, s *server, want ...string) {
	t.Helper()
	if got := s.events(); !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

// TestLocalboot: a ready host's ISO asks the server, gets localboot
// (exit 1), and the firmware boots the disk.
func TestLocalboot(t *testing.T) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	port := freePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	s.addHost("")
	disk := newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA)
	iso := s.iso(dir)
	before := wantState(t, s, host.StateReady)

	log := startVM(t, dir, "boot1", iso, disk, port, bootOpts{}).finish(t, limitLocal)
	mustContain(t, "localboot", log, reStage0, `https://10\.0\.2\.100:8443/boot/v1/script\.\.\. ok`,
		`bootpilot: booting the local disk`, markerLine("A"))
	mustNotContain(t, "localboot", log, reGiveUp, `attempt \d`)

	h := wantState(t, s, host.StateReady)
	if h.Inventory.MAC != "52:54:00:12:34:56" || h.Inventory.Arch != "x86_64" || h.Inventory.Platform != "efi" || !h.Inventory.SeenAt.After(before.CreatedAt) {
		t.Errorf("inventory after the boot = %+v, want the guest's MAC, x86_64, efi, seen now", h.Inventory)
	}
	wantEvents(t, s)
}

// zstdFile compresses src into dst.
func zstdFile(t *testing.T, src, dst string) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, enc.EncodeAll(raw, nil), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkDeployed fails unless disk holds image B's marker program and the
// agent's NoCloud seed with node01's static address.
func checkDeployed(t *testing.T, disk string, markerB []byte) {
	t.Helper()
	efi, err := readDiskFile(disk, 1, "/EFI/BOOT/BOOTX64.EFI")
	if err != nil || !bytes.Equal(efi, markerB) {
		t.Errorf("disk ESP: BOOTX64.EFI is not image B's marker (err %v, %d bytes)", err, len(efi))
	}
	nc, err := readDiskFile(disk, 2, "/network-config")
	if err != nil || !strings.Contains(string(nc), "10.0.2.15/24") || !strings.Contains(string(nc), "52:54:00:12:34:56") {
		t.Errorf("cidata/network-config = %q (%v), want node01's static address matched by MAC", nc, err)
	}
}

// TestDeploy: reimage with an image profile; the agent writes the image
// (zstd), reports installed, the host is ready, and the next boot runs the
// deployed disk.
func TestDeploy(t *testing.T) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	port := freePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned", "--agent-after", "reboot")
	rawB := newMarkerDisk(t, dir, "image-b.raw", diskSize, a.markerB)
	imgB := filepath.Join(dir, "image-b.raw.zst")
	zstdFile(t, rawB, imgB)
	s.agentProfiles(a.kernel, a.initrd, "zero", imgB)
	s.addHost("deploy")
	disk := newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA)
	iso := s.iso(dir)
	s.cli("host", "reimage", "node01", "--reason", "e2e deploy")
	wantState(t, s, host.StateReimage)
	tm := time.Now()

	log := startVM(t, dir, "boot1-deploy", iso, disk, port, bootOpts{}).finish(t, limitAgent)
	mustContain(t, "deploy", log, reStage0, `bootpilot: node01: deploy deploy \(image\), attempt 1`,
		`detail="writing zstd image`, `msg="agent done" after=reboot`)
	mustNotContain(t, "deploy", log, `BOOTPILOT-DISK-MARKER`, reGiveUp, `level=ERROR`)
	if testing.Verbose() {
		t.Logf("serial log of the deploy boot:\n%s", log)
	}
	h := wantState(t, s, host.StateReady)
	if h.LastCallback != host.EventInstalled {
		t.Errorf("after deploy: last callback %q, want installed", h.LastCallback)
	}
	checkDeployed(t, disk, a.markerB)
	t.Logf("reimage → installed → ready: %.1fs", time.Since(tm).Seconds())

	log = startVM(t, dir, "boot2-local", iso, disk, port, bootOpts{}).finish(t, limitLocal)
	mustContain(t, "after deploy", log, reStage0, markerLine("B"))
	mustNotContain(t, "after deploy", log, markerLine("A"), `attempt \d`)
	wantState(t, s, host.StateReady)
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "boot:serve:reimage>installing", "callback:installed:installing>ready")
}
