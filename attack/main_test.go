package attack_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/testenv"
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
		buildError = testenv.GoBuild(bootpilot, "./cmd/bootpilot")
		fmt.Fprintf(os.Stderr, "attack: built bootpilot in %.1fs\n", time.Since(start).Seconds())
		return m.Run()
	}()
	os.Exit(code)
}
