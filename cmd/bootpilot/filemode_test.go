//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// umask022 sets the usual umask for the test: the modes checked must not
// depend on it.
func umask022(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", filepath.Base(path), got, want)
	}
}

// TestISOFileModes checks that every ISO the CLI writes (it carries a boot
// token) is 0600, while the manifest and the import file (hashes only)
// stay 0644.
func TestISOFileModes(t *testing.T) {
	umask022(t)

	cliFake(t)
	cliMustRun(t, node01Args...)
	cliMustRun(t, "host", "iso", "node01")
	checkMode(t, "node01.iso", 0o600)
	cliMustRun(t, "host", "iso", "node01", "-f", "other.iso")
	checkMode(t, "other.iso", 0o600)
	if out := cliMustRun(t, "host", "iso", "--help"); !strings.Contains(out, "previous token stops working") {
		t.Errorf("host iso --help does not say the boot token is rotated:\n%s", out)
	}

	dir := t.TempDir()
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	csvPath := filepath.Join(dir, "hosts.csv")
	if err := os.WriteFile(csvPath, []byte(isoCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"iso", "build", "--csv", csvPath, "--out", out, "--server-url", "https://10.0.2.100:8443",
		"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath, "--offline"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("iso build: %v\n%s", err, stderr.String())
	}
	for _, h := range []string{"node01", "node02", "node03"} {
		checkMode(t, filepath.Join(out, h+".iso"), 0o600)
	}
	checkMode(t, filepath.Join(out, "manifest.json"), 0o644)
	checkMode(t, filepath.Join(out, "hosts-import.json"), 0o644)
}
