package replica_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Set once in TestMain.
var (
	bootpilot  string // the binary every replica runs
	buildError error
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "bootpilot-replica-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bootpilot = filepath.Join(dir, "bootpilot")
		start := time.Now()
		buildError = goBuild(bootpilot, "./cmd/bootpilot")
		fmt.Fprintf(os.Stderr, "replica: built bootpilot in %.1fs\n", time.Since(start).Seconds())
		return m.Run()
	}()
	os.Exit(code)
}

// goBuild builds pkg of this module into out (the pattern of attack's
// harness).
func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot is the repository root: go test runs in replica/.
func moduleRoot() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}
