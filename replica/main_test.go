package replica_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/testenv"
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
		buildError = testenv.GoBuild(bootpilot, "./cmd/bootpilot")
		fmt.Fprintf(os.Stderr, "replica: built bootpilot in %.1fs\n", time.Since(start).Seconds())
		return m.Run()
	}()
	os.Exit(code)
}
