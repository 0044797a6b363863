package server_test

import (
	"os"
	"testing"

	"github.com/bootpilot/bootpilot/internal/auth/directorytest"
)

// TestMain stops the package's one shared Samba AD DC (login_test.go) after
// the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	directorytest.StopShared()
	os.Exit(code)
}
