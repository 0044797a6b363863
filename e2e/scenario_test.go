package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/testenv"
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
	port := testenv.FreePort(t)
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
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned", "--agent-after", "reboot", "--log-level", "debug")
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
	hs := s.tlsHandshakes()

	log := startVM(t, dir, "boot1-deploy", iso, disk, port, bootOpts{}).finishAgent(t, limitAgent)
	s.logHandshakes(t, "the deploy boot", hs) // iPXE: one pooled connection; see TestIPXEResumesTLS
	mustContain(t, "deploy", log, reStage0, `bootpilot: node01: deploy deploy \(image\), attempt 1`,
		`msg=firmware secure_boot=disabled`, `detail="writing zstd image`, `msg="agent done" after=reboot`)
	mustNotContain(t, "deploy", log, `BOOTPILOT-DISK-MARKER`, reGiveUp, `level=ERROR`)
	if testing.Verbose() {
		t.Logf("serial log of the deploy boot:\n%s", log)
	}
	if evs := s.cli("host", "events", "node01"); !strings.Contains(evs, "firmware: UEFI, Secure Boot disabled") {
		t.Errorf("events lack the agent's firmware report:\n%s", evs)
	}
	h := wantState(t, s, host.StateReady)
	if h.LastCallback != host.EventInstalled {
		t.Errorf("after deploy: last callback %q, want installed", h.LastCallback)
	}
	checkDeployed(t, disk, a.markerB)
	t.Logf("reimage → installed → ready: %.1fs", time.Since(tm).Seconds())

	log = startVM(t, dir, "boot2-local", iso, disk, port, bootOpts{}).finish(t, limitLocal)
	if testing.Verbose() {
		t.Logf("serial log of the boot after the deploy:\n%s", log)
	}
	mustContain(t, "after deploy", log, reStage0, markerLine("B"))
	mustNotContain(t, "after deploy", log, markerLine("A"), `attempt \d`)
	wantState(t, s, host.StateReady)
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing", "host:node01:installed:installing>ready")
}

// cleanDisk makes a 32 MiB marker disk whose space after the partitions
// (10 MiB to 31 MiB) and free ESP clusters (4–7 MiB) hold non-zero bytes,
// and returns it with a copy of its bytes.
func cleanDisk(t *testing.T, dir string, efi []byte) (string, []byte) {
	t.Helper()
	const size = 32 << 20
	p := newMarkerDisk(t, dir, "disk.img", size, efi)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Leave the backup GPT (last 33 sectors) alone.
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, size-cidataEnd-(1<<20)), cidataEnd); err != nil {
		t.Fatal(err)
	}
	// Free clusters in the middle of the ESP (its file fills about its
	// first 2 MiB): data a metadata clean must not touch.
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5A}, 3<<20), 4<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// nonZero returns the offset of the first non-zero byte of b, or -1.
func nonZero(b []byte) int {
	for i, c := range b {
		if c != 0 {
			return i
		}
	}
	return -1
}

func testClean(t *testing.T, method string) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned", "--agent-after", "reboot")
	s.agentProfiles(a.kernel, a.initrd, method, "")
	s.addHost("")
	disk, before := cleanDisk(t, dir, a.markerA)
	iso := s.iso(dir)
	s.cli("host", "clean", "node01", "--reason", "e2e clean "+method)
	wantState(t, s, host.StateClean)

	log := startVM(t, dir, "boot1-clean", iso, disk, port, bootOpts{}).finishAgent(t, limitAgent)
	mustContain(t, "clean", log, reStage0, `bootpilot: node01: clean agent-clean \(none\), attempt 1`,
		`detail="/dev/vda `+method+`-cleaned and verified`, `msg="agent done" after=reboot`)
	mustNotContain(t, "clean", log, `BOOTPILOT-DISK-MARKER`, `level=ERROR`)
	h := wantState(t, s, host.StateReady)
	if h.LastCallback != host.EventCleaned {
		t.Errorf("after clean: last callback %q, want cleaned", h.LastCallback)
	}
	wantEvents(t, s, "token:admin:clean:ready>clean", "host:node01:serve:clean>cleaning", "host:node01:cleaned:cleaning>ready")

	after, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("disk is %d bytes after the clean, was %d", len(after), len(before))
	}
	const mib = 1 << 20
	switch method {
	case "zero":
		if i := nonZero(after); i >= 0 {
			t.Errorf("zero clean: byte %d is %#x", i, after[i])
		}
	case "metadata":
		// Zero: first and last MiB of the disk and of each partition
		// (ESP 1–9 MiB, cidata 9–10 MiB). Untouched: everything else.
		zero := [][2]int{{0, 2 * mib}, {8 * mib, 10 * mib}, {len(after) - mib, len(after)}}
		for _, r := range zero {
			if i := nonZero(after[r[0]:r[1]]); i >= 0 {
				t.Errorf("metadata clean: byte %d (in %d–%d) is %#x", r[0]+i, r[0], r[1], after[r[0]+i])
			}
		}
		for _, r := range [][2]int{{2 * mib, 8 * mib}, {10 * mib, len(after) - mib}} {
			if !bytes.Equal(after[r[0]:r[1]], before[r[0]:r[1]]) {
				t.Errorf("metadata clean changed bytes %d–%d, which are no metadata", r[0], r[1])
			}
		}
	}
}

// TestCleanZero: clean with method zero → the whole disk reads as zeros →
// cleaned → ready.
func TestCleanZero(t *testing.T) { testClean(t, "zero") }

// TestCleanMetadata: clean with method metadata → the partition tables and
// the first and last MiB of the disk and of each partition are zero, the
// rest is untouched → cleaned → ready.
func TestCleanMetadata(t *testing.T) { testClean(t, "metadata") }

// giveUp boots an ISO whose server cannot be used and checks that stage 0
// retries 4 times, gives up and the firmware boots the disk. It returns the
// log and the time from stage 0's start to its giving up.
func giveUp(t *testing.T, dir, iso, disk string, port int) (string, time.Duration) {
	t.Helper()
	v := startVM(t, dir, "boot-giveup", iso, disk, port, bootOpts{})
	v.waitFor(t, limitLocal, reStage0)
	t0 := time.Now()
	v.waitFor(t, limitLocal, reGiveUp)
	took := time.Since(t0)
	log := v.finish(t, limitLocal)
	if testing.Verbose() {
		t.Logf("serial log:\n%s", log)
	}
	mustContain(t, "give up", log, `bootpilot: fetch 3/4 failed, retry in 8s`, reGiveUp, markerLine("A"))
	mustNotContain(t, "give up", log, `fetch 4/4`, `booting the local disk`, `attempt \d`)
	if n := strings.Count(log, "bootpilot: fetch "); n != 3 {
		t.Errorf("%d retries, want 3 (4 tries)", n)
	}
	return log, took
}

// TestServerDown: the server is stopped; the ISO's stage 0 gives up after
// its bounded retries and the disk boots; the host's state is unchanged.
func TestServerDown(t *testing.T) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	s.addHost("")
	disk := newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA)
	iso := s.iso(dir)
	s.stop()

	log, took := giveUp(t, dir, iso, disk, port)
	t.Logf("server down: stage 0 gave up %.1fs after it started", took.Seconds())
	mustContain(t, "server down", log, `Connection reset|Connection refused|Connection timed out|https://ipxe\.org/[0-9a-f]{8}`)

	s.restart()
	h := wantState(t, s, host.StateReady)
	if !h.Inventory.SeenAt.IsZero() {
		t.Errorf("inventory recorded while the server was down: %+v", h.Inventory)
	}
	wantEvents(t, s)
}

// TestForeignCA: another server (another CA) answers on the address the
// ISO knows; iPXE refuses its certificate, stage 0 gives up and the disk
// boots; the host's state is unchanged.
func TestForeignCA(t *testing.T) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned")
	s.addHost("")
	disk := newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA)
	iso := s.iso(dir)
	s.stop()
	other := startServer(t, filepath.Join(dir, "other-data"), port, "--iso-unsigned")
	other.addHost("") // the same host and MAC: only the certificate differs

	log, took := giveUp(t, dir, iso, disk, port)
	t.Logf("foreign CA: stage 0 gave up %.1fs after it started", took.Seconds())
	mustContain(t, "foreign CA", log, `https://ipxe\.org/[0-9a-f]{8}`)
	if h := other.show(); !h.Inventory.SeenAt.IsZero() {
		t.Errorf("the foreign server saw the host: %+v", h.Inventory)
	}
	other.stop()

	s.restart()
	h := wantState(t, s, host.StateReady)
	if !h.Inventory.SeenAt.IsZero() {
		t.Errorf("inventory recorded although iPXE refused the server: %+v", h.Inventory)
	}
	wantEvents(t, s)
}

// TestInterrupted: with --max-attempts 2, a deploy killed while the agent
// writes is served again as attempt 2; when that one is killed too, the
// next boot marks the host failed and boots the disk, once, with no loop.
func TestInterrupted(t *testing.T) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	s := startServer(t, filepath.Join(dir, "data"), port, "--iso-unsigned", "--max-attempts", "2")
	// A raw 128 MiB image takes the agent long enough to download that the
	// kill lands mid-write. It has disk A's layout, so a partial write
	// leaves a disk that boots marker A or marker B.
	const big = 128 << 20
	s.agentProfiles(a.kernel, a.initrd, "zero", newMarkerDisk(t, dir, "image-b.raw", big, a.markerB))
	s.addHost("deploy")
	disk := newMarkerDisk(t, dir, "disk.img", big, a.markerA)
	iso := s.iso(dir)
	s.cli("host", "reimage", "node01")

	for attempt := 1; attempt <= 2; attempt++ {
		v := startVM(t, dir, fmt.Sprintf("boot%d-killed", attempt), iso, disk, port, bootOpts{})
		v.waitFor(t, limitAgent, fmt.Sprintf(`bootpilot: node01: deploy deploy \(image\), attempt %d`, attempt))
		v.waitFor(t, limitAgent, `detail="writing raw image`)
		log := v.stopNow(t)
		mustNotContain(t, "interrupted deploy", log, `msg="agent done"`, `BOOTPILOT-DISK-MARKER`)
		h := wantState(t, s, host.StateInstalling)
		if h.Attempt != attempt || h.LastCallback != "" {
			t.Fatalf("after kill %d: attempt %d, last callback %q; want attempt %d, none", attempt, h.Attempt, h.LastCallback, attempt)
		}
	}

	log := startVM(t, dir, "boot3-failed", iso, disk, port, bootOpts{}).finish(t, limitLocal)
	mustContain(t, "after max attempts", log, reStage0, `bootpilot: booting the local disk`, `BOOTPILOT-DISK-MARKER-[AB]`)
	mustNotContain(t, "after max attempts", log, `attempt \d`, reGiveUp)
	if n := strings.Count(log, "bootpilot stage 0: node01"); n != 1 {
		t.Errorf("stage 0 ran %d times in one power-on, want 1", n)
	}
	wantState(t, s, host.StateFailed)
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing",
		"host:node01:serve:installing>installing", "host:node01:exhausted:installing>failed")

	// A failed host keeps booting its disk.
	log = startVM(t, dir, "boot4-failed", iso, disk, port, bootOpts{}).finish(t, limitLocal)
	mustContain(t, "failed host", log, `bootpilot: booting the local disk`, `BOOTPILOT-DISK-MARKER-[AB]`)
	wantState(t, s, host.StateFailed)
}
