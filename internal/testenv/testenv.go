// Package testenv lets tests find the real components they need (MariaDB,
// QEMU, OVMF, xorriso, sbverify…). Outside CI a missing component skips the
// test; with CI=true it fails it, so a green CI run means everything ran.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips tb outside CI and fails it in CI.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("required test component missing in CI: "+format, args...)
	}
	tb.Skipf("component missing (test would fail with CI=true): "+format, args...)
}

// Tool returns the path of an executable, or calls Missing.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, "%s not on PATH", name)
	}
	return p
}

// File returns path if it exists, or calls Missing.
func File(tb testing.TB, path string) string {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(tb, "%s: %v", path, err)
	}
	return path
}
