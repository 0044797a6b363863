package console_test

import (
	"testing"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// TestHarnessLogin: the harness starts a server and a browser that trusts
// it, and a local user logs in through the real form.
func TestHarnessLogin(t *testing.T) {
	e := newConsoleEnv(t)
	e.addUser("vera", auth.Grant{Role: auth.RoleViewer})
	b := newBrowser(t, e)
	b.login("vera", testPassword)
	if got := b.text("header.top .who span"); got != "local:vera" {
		t.Errorf("logged in as %q, want local:vera", got)
	}
	b.screenshot("login-done")
}
