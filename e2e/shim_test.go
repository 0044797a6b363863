package e2e_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// Debian's shim-signed package: shim signed by Microsoft's UEFI CA (it
// trusts Debian's key, so Debian's kernels), and MokManager.
const (
	debianShim       = "/usr/lib/shim/shimx64.efi.signed"
	debianMokManager = "/usr/lib/shim/mmx64.efi.signed"
)

// shimMarkerDisk writes a marker disk whose ESP boots shim as BOOTX64.EFI,
// which loads marker as grubx64.efi: the shape of a disk installed with a
// distribution's shim.
func shimMarkerDisk(t *testing.T, dir, name string, shim, marker []byte) string {
	t.Helper()
	p := newMarkerDisk(t, dir, name, diskSize, shim)
	d, err := diskfs.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.OpenFile("/EFI/BOOT/grubx64.efi", os.O_CREATE|os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(marker); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestShim: Secure Boot firmware whose db holds only Microsoft's keys (no
// db change possible), with our db certificate in shim's MokList. The
// server builds its ISOs with Debian's Microsoft-signed shim in front of
// our signed iPXE; without the MOK, shim refuses iPXE and waits at its
// prompt (no stage 0, the server is never asked). With it, the ISO boots
// shim → iPXE → Debian's kernel as Debian signed it (verified by shim,
// which trusts Debian's key) → the agent deploys → ready, and the next boot
// goes ISO → localboot → the disk's shim → the deployed, signed marker B.
func TestShim(t *testing.T) {
	a := require(t, true)
	testenv.File(t, debianShim)
	testenv.File(t, debianMokManager)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	db := qemutest.NewDBKey(t, "bootpilot e2e db (MOK)")
	keyFile, certFile := writeSigner(t, dir, db)
	msOnly, err := os.ReadFile(qemutest.OVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	mok, err := qemutest.EnrollMOK(msOnly, db.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	shim, err := os.ReadFile(debianShim)
	if err != nil {
		t.Fatal(err)
	}
	markerA, err := markerEFI("A", db)
	if err != nil {
		t.Fatal(err)
	}
	markerB, err := markerEFI("B", db)
	if err != nil {
		t.Fatal(err)
	}

	s := startServer(t, filepath.Join(dir, "data"), port, "--db-key", keyFile, "--db-cert", certFile,
		"--shim", debianShim, "--mok-manager", debianMokManager, "--agent-after", "reboot")
	imgB := filepath.Join(dir, "image-b.raw.zst")
	zstdFile(t, shimMarkerDisk(t, dir, "image-b.raw", shim, markerB), imgB)
	s.agentProfiles(a.kernel, a.initrd, "zero", imgB) // Debian's kernel as shipped
	s.addHost("deploy")
	disk := shimMarkerDisk(t, dir, "disk.img", shim, markerA)
	s.cli("host", "reimage", "node01", "--reason", "e2e shim")
	iso := s.iso(dir)

	// No MOK: shim shows "Verification failed" and waits for a key; iPXE
	// never runs. Bound the wait, then cut the VM.
	v := startVM(t, dir, "boot-no-mok", iso, disk, port, bootOpts{secureBoot: true, vars: msOnly})
	v.waitFor(t, limitLocal, `Verification failed`)
	t.Logf("boot no-mok: \"Verification failed\" after %.1fs", time.Since(v.start).Seconds())
	// iPXE, had shim started it, would print within seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = v.WaitFor(ctx, regexp.MustCompile(`iPXE|bootpilot stage 0`))
	cancel()
	log := v.stopNow(t)
	if err == nil {
		t.Errorf("no MOK: iPXE ran")
	}
	mustNotContain(t, "no MOK", log, `iPXE`, `bootpilot stage 0`, markerLine("A"))
	wantState(t, s, host.StateReimage)

	sb := bootOpts{secureBoot: true, vars: mok}
	log = startVM(t, dir, "boot-shim-deploy", iso, disk, port, sb).finishAgent(t, limitAgent)
	mustContain(t, "shim deploy", log, reStage0, `bootpilot: node01: deploy deploy \(image\), attempt 1`,
		`msg="modules loaded"`, `msg=firmware secure_boot=enabled setup_mode=disabled`, `detail="writing zstd image`, `msg="agent done" after=reboot`)
	mustNotContain(t, "shim deploy", log, `Verification failed`, `Access Denied`, `BOOTPILOT-DISK-MARKER`, `level=ERROR`)
	h := wantState(t, s, host.StateReady)
	if h.LastCallback != host.EventInstalled {
		t.Errorf("after deploy: last callback %q, want installed", h.LastCallback)
	}
	if got, err := readDiskFile(disk, 1, "/EFI/BOOT/grubx64.efi"); err != nil || !bytes.Equal(got, markerB) {
		t.Errorf("disk ESP: grubx64.efi is not image B's marker (err %v, %d bytes)", err, len(got))
	}

	log = startVM(t, dir, "boot-shim-local", iso, disk, port, sb).finish(t, limitLocal)
	if testing.Verbose() {
		t.Logf("serial log of the boot after the deploy:\n%s", log)
	}
	mustContain(t, "shim, localboot", log, reStage0, `bootpilot: booting the local disk`, markerLine("B"))
	mustNotContain(t, "shim, localboot", log, `Verification failed`, `Access Denied`)
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing", "host:node01:installed:installing>ready")
}
