package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// hostileCmdline is the injection seen on the landed code: iPXE reads a bare
// ";" as a command separator, so the real iPXE ran "echo INJECTED".
const hostileCmdline = "console=ttyS0 ; echo INJECTED ;"

// TestHostileCmdline: a profile whose cmdline carries "; echo INJECTED ;"
// cannot be saved through the API (400 naming cmdline); and when such a row
// reaches the database anyway (written with the store package, behind the
// API's back), a reimage boot gets localboot: iPXE never runs the injected
// command and the firmware boots the disk.
func TestHostileCmdline(t *testing.T) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	data := filepath.Join(dir, "data")
	s := startServer(t, data, port, "--iso-unsigned")
	// The kernel does not exist: were the script served, kernel would fail
	// and the ';' would run echo INJECTED all the same.
	kernel := "https://10.0.2.100:8443/images/v1/no-such-kernel"

	// Through the API (the real client), and through the CLI.
	bad := host.Profile{Name: "evil-api", Installer: host.InstallerNone, Kernel: kernel, Cmdline: hostileCmdline}
	_, err := apiClient(t, s).CreateProfile(context.Background(), bad)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Field != "cmdline" {
		t.Errorf("POST profile with cmdline %q: %v, want an HTTP 400 for field cmdline", hostileCmdline, err)
	}
	if out, err := s.tryCLI("profile", "add", "evil-api", "--installer", "none", "--kernel", kernel, "--cmdline", hostileCmdline); err == nil || !strings.Contains(err.Error(), "cmdline") {
		t.Errorf("profile add with cmdline %q: %v (output %q), want it refused naming cmdline", hostileCmdline, err, out)
	}

	s.cli("profile", "add", "evil", "--installer", "none", "--kernel", kernel, "--cmdline", "console=ttyS0")
	s.addHost("evil")
	disk := newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA)
	iso := s.iso(dir)

	s.stop()
	writeCmdline(t, data, "evil", hostileCmdline)
	s.restart()
	s.cli("host", "reimage", "node01", "--reason", "e2e hostile cmdline")
	wantState(t, s, host.StateReimage)

	log := startVM(t, dir, "boot1", iso, disk, port, bootOpts{}).finish(t, limitLocal)
	mustContain(t, "hostile cmdline", log, reStage0, `bootpilot: booting the local disk`, markerLine("A"))
	mustNotContain(t, "hostile cmdline", log, `INJECTED`, `attempt \d`, reGiveUp)
}

// apiClient returns an admin client of s.
func apiClient(t *testing.T, s *server) *client.Client {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(s.dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(s.dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(fmt.Sprintf("https://127.0.0.1:%d", s.port), strings.TrimSpace(string(tok)), ca)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeCmdline sets profile name's cmdline in the stopped server's SQLite
// database directly, without the validation the API applies.
func writeCmdline(t *testing.T, dataDir, name, cmdline string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dataDir, "bootpilot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := db.UpdateProfile(ctx, name, func(p *host.Profile) error {
		p.Cmdline = cmdline
		return nil
	})
	if err != nil || p.Cmdline != cmdline {
		t.Fatalf("store: set cmdline of %s: %v (cmdline %q)", name, err, p.Cmdline)
	}
}
