package e2e_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/qemutest"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// writeSigner writes s as PEM key and certificate files into dir.
func writeSigner(t *testing.T, dir string, s *imagebuilder.Signer) (keyFile, certFile string) {
	t.Helper()
	k := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s.Key.(*rsa.PrivateKey))})
	c := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Cert.Raw})
	return writeFile(t, dir, "db.key", k), writeFile(t, dir, "db.pem", c)
}

// foreignISO builds node01's ISO in-process for the server's CA: unsigned
// when signer is nil, else signed by signer.
func foreignISO(t *testing.T, dir, name string, s *server, signer *imagebuilder.Signer) string {
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
	b, err := imagebuilder.NewBuilder(imagebuilder.Config{ServerURL: "https://10.0.2.100:8443", CACert: ca,
		Signer: signer, Unsigned: signer == nil})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := b.Build(&buf, s.show(), "0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, buf.Bytes())
}

// TestSecureBoot: OVMF's Secure Boot firmware with our db certificate
// enrolled. ISOs without a signature or signed by another key are refused
// and the (signed) disk boots instead, with no state change. The server's
// signed ISO boots; a profile with Debian's kernel as Debian signed it is
// refused by the firmware (the disk boots); with the kernel re-signed by our
// key the deploy lands, and the next boot runs the deployed, signed marker.
func TestSecureBoot(t *testing.T) {
	a := require(t, true)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	db := qemutest.NewDBKey(t, "bootpilot e2e db")
	keyFile, certFile := writeSigner(t, dir, db)
	stock, err := os.ReadFile(qemutest.OVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := qemutest.EnrollDB(stock, db.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	sb := bootOpts{secureBoot: true, vars: vars}
	markerA, err := markerEFI("A", db)
	if err != nil {
		t.Fatal(err)
	}
	markerB, err := markerEFI("B", db)
	if err != nil {
		t.Fatal(err)
	}
	kernel := qemutest.ResignKernel(t, dir, a.kernel, db)

	s := startServer(t, filepath.Join(dir, "data"), port, "--db-key", keyFile, "--db-cert", certFile, "--agent-after", "reboot")
	imgB := filepath.Join(dir, "image-b.raw.zst")
	zstdFile(t, newMarkerDisk(t, dir, "image-b.raw", diskSize, markerB), imgB)
	u := s.agentProfiles(kernel, a.initrd, "zero", imgB)
	// The same deploy with Debian's own signature on the kernel: our db
	// does not trust it, so the firmware must refuse it.
	u.kernel, _ = s.imageAdd(a.kernel)
	s.deployProfile("debian-signed", u)
	s.addHost("debian-signed")
	disk := newMarkerDisk(t, dir, "disk.img", diskSize, markerA)
	s.cli("host", "reimage", "node01", "--reason", "e2e secure boot")

	refused := `failed to (load|start) Boot0001 "UEFI QEMU DVD-ROM[^\n]*Access Denied`
	for _, c := range []struct {
		name   string
		signer *imagebuilder.Signer
	}{{"unsigned", nil}, {"other-key", qemutest.NewDBKey(t, "someone else's db key")}} {
		iso := foreignISO(t, dir, c.name+".iso", s, c.signer)
		log := startVM(t, dir, "boot-"+c.name, iso, disk, port, sb).finish(t, limitLocal)
		mustContain(t, c.name+" ISO", log, refused, markerLine("A"))
		mustNotContain(t, c.name+" ISO", log, `bootpilot stage 0`)
		if n := strings.Count(log, "iPXE initialising"); n != 1 {
			t.Errorf("%s ISO: iPXE started %d times, want once (the disk's marker)", c.name, n)
		}
		wantState(t, s, host.StateReimage)
	}

	iso := s.iso(dir)
	log := startVM(t, dir, "boot-signed-debian-kernel", iso, disk, port, sb).finish(t, limitAgent)
	mustContain(t, "Debian-signed kernel", log, reStage0, `bootpilot: node01: deploy debian-signed \(image\), attempt 1`,
		`bootpilot: deploy failed, booting the local disk`, markerLine("A"))
	mustNotContain(t, "Debian-signed kernel", log, `msg=`, `Linux version`)
	wantState(t, s, host.StateInstalling)
	s.cli("host", "cancel", "node01")
	s.cli("host", "reimage", "node01", "--profile", "deploy")

	log = startVM(t, dir, "boot-signed-deploy", iso, disk, port, sb).finishAgent(t, limitAgent)
	mustContain(t, "signed ISO", log, reStage0, `bootpilot: node01: deploy deploy \(image\), attempt 1`,
		`msg=firmware secure_boot=enabled setup_mode=disabled`, `detail="writing zstd image`, `msg="agent done" after=reboot`)
	mustNotContain(t, "signed ISO", log, `Access Denied`, `BOOTPILOT-DISK-MARKER`, `level=ERROR`)
	h := wantState(t, s, host.StateReady)
	if h.LastCallback != host.EventInstalled {
		t.Errorf("after deploy: last callback %q, want installed", h.LastCallback)
	}
	checkDeployed(t, disk, markerB)
	if evs := s.cli("host", "events", "node01"); !strings.Contains(evs, "firmware: UEFI, Secure Boot enabled, setup mode disabled") {
		t.Errorf("events lack the agent's firmware report:\n%s", evs)
	}

	log = startVM(t, dir, "boot-signed-local", iso, disk, port, sb).finish(t, limitLocal)
	mustContain(t, "signed ISO, localboot", log, reStage0, `bootpilot: booting the local disk`, markerLine("B"))
	mustNotContain(t, "signed ISO, localboot", log, `Access Denied`)
	wantEvents(t, s, "token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing", "token:admin:cancel:installing>ready",
		"token:admin:reimage:ready>reimage", "host:node01:serve:reimage>installing", "host:node01:installed:installing>ready")
}
