package attack_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// binEnv names a prebuilt bootpilot binary to attack instead of building
// ./cmd/bootpilot: "run the attack suite against any build".
const binEnv = "BOOTPILOT_ATTACK_BIN"

// Set once in TestMain.
var (
	bootpilot  string // the binary under attack: server and CLI
	buildError error
)

func TestMain(m *testing.M) {
	// The file-mode checks mean something only under the usual umask: the
	// old code wrote the database 0644 under 022, and 0600 under 077.
	syscall.Umask(0o022)
	code := func() int {
		if b := os.Getenv(binEnv); b != "" {
			bootpilot, buildError = filepath.Abs(b)
			fmt.Fprintf(os.Stderr, "attack: attacking %s (%s)\n", bootpilot, binEnv)
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "bootpilot-attack-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bootpilot = filepath.Join(dir, "bootpilot")
		start := time.Now()
		buildError = goBuild(bootpilot, "./cmd/bootpilot")
		fmt.Fprintf(os.Stderr, "attack: built bootpilot in %.1fs\n", time.Since(start).Seconds())
		return m.Run()
	}()
	os.Exit(code)
}

// goBuild builds pkg of this module into out (the pattern of e2e's harness).
func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot is the repository root: go test runs in attack/.
func moduleRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}
