package attack_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bootpilot/bootpilot/internal/testenv"
)

// TestFileModes — finding 7: the SQLite database (and its -wal/-shm) and
// the ISOs (each holding a boot token) were written 0644 under umask 022
// (TestMain sets it). Everything secret the server and the CLI write is
// 0600.
func TestFileModes(t *testing.T) {
	s := startServer(t, serverOptions{isoUnsigned: true})
	s.addHost("node01", 1, "")
	out := t.TempDir()
	iso := filepath.Join(out, "node01.iso")
	if _, errOut, err := s.cli("host", "iso", "node01", "-f", iso); err != nil {
		t.Fatalf("bootpilot host iso: %v\n%s", err, errOut)
	}
	csv := filepath.Join(out, "hosts.csv")
	if err := os.WriteFile(csv, []byte("name,mac,ipv4,gateway,dns\nnode02,"+mac(2)+",10.0.2.16/24,10.0.2.2,10.0.2.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	built := filepath.Join(out, "built")
	if _, errOut, err := runCLI(t, testenv.CleanEnv(), "iso", "build", "--csv", csv, "--out", built, "--offline", "--unsigned",
		"--server-url", s.url, "--ca-cert", s.caFile); err != nil {
		t.Fatalf("bootpilot iso build: %v\n%s", err, errOut)
	}
	for _, f := range []string{
		filepath.Join(s.dir, "bootpilot.db"), filepath.Join(s.dir, "bootpilot.db-wal"), filepath.Join(s.dir, "bootpilot.db-shm"),
		filepath.Join(s.dir, "admin-token"), filepath.Join(s.dir, "ca-key.pem"), filepath.Join(s.dir, "server-key.pem"),
		iso, filepath.Join(built, "node02.iso"),
	} {
		st, err := os.Stat(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %#o, want 0600 (nobody but the owner)", f, perm)
		}
	}
}

// TestCSVHugeLine — finding 7: `iso build --csv` read a 200 MB CSV line
// whole (2 GB RSS) and echoed it in its error. The error must name the
// line (hosts.csv:2:), stay short, and the CLI's peak memory stay bounded.
func TestCSVHugeLine(t *testing.T) {
	s := startServer(t, serverOptions{}) // for a real CA certificate
	dir := t.TempDir()
	csv := filepath.Join(dir, "hosts.csv")
	writeHugeCSV(t, csv, 200<<20)
	var stdout, stderr strings.Builder
	cmd := exec.Command(bootpilot, "iso", "build", "--csv", csv, "--out", filepath.Join(dir, "out"), "--offline",
		"--unsigned", "--server-url", s.url, "--ca-cert", s.caFile)
	cmd.Env, cmd.Dir = testenv.CleanEnv(), dir
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatalf("iso build with a 200 MB CSV line succeeded, want an error")
	}
	if !strings.Contains(stderr.String(), "hosts.csv:2:") {
		t.Errorf("iso build: stderr does not name hosts.csv:2: %s", quoteShort([]byte(stderr.String()), 500))
	}
	if n := stderr.Len() + stdout.Len(); n > 4<<10 {
		t.Errorf("iso build printed %d bytes, want at most 4 KiB (the line must not be echoed)", n)
	}
	const bound = 256 << 20
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("no rusage for the CLI")
	}
	if peak := ru.Maxrss << 10; peak > bound {
		t.Errorf("iso build peak RSS %d MiB, want at most %d MiB", peak>>20, bound>>20)
	} else {
		t.Logf("iso build peak RSS %d MiB", peak>>20)
	}
}

// writeHugeCSV writes a hosts CSV whose second line has a dns field of
// size bytes, streamed.
func writeHugeCSV(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "name,mac,ipv4,gateway,dns\nnode01,%s,10.0.2.15/24,10.0.2.2,", mac(1))
	if _, err := io.Copy(w, io.LimitReader(repeatReader('A'), size)); err != nil {
		t.Fatal(err)
	}
	w.WriteString("\nnode02," + mac(2) + ",10.0.2.16/24,10.0.2.2,10.0.2.3\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
