package console_test

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/auth/directorytest"
	"github.com/bootpilot/bootpilot/server"
)

// TestBrowserDirectoryUser logs in through the console's form as users of
// a real OpenLDAP directory: bob is operator on team=lab through a nested
// group and sees the operator's buttons on a lab host; alice (editor) sees
// the edit form and no action buttons; a wrong password shows the one
// message for bad credentials.
func TestBrowserDirectoryUser(t *testing.T) {
	dir := directorytest.StartSlapd(t)
	cfg, err := auth.LoadConfig(dir.WriteConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	d, err := auth.NewDirectory(cfg.LDAP, cfg.Grants)
	if err != nil {
		t.Fatal(err)
	}
	e := newConsoleEnv(t, func(o *server.Options) {
		o.Auth = auth.NewService(o.Store.(auth.Store), d, auth.ServiceOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	})
	e.addHost("lab01", "52:54:00:12:34:56", "10.0.2.15/24", map[string]string{"team": "lab"})
	e.addHost("ops01", "52:54:00:12:34:57", "10.0.2.16/24", map[string]string{"team": "ops"})

	b := newBrowser(t, e)
	b.login("bob", dir.Password("bob"))
	b.navigate("/hosts")
	b.waitText("body", "lab01", 10*time.Second)
	if names := b.texts("table a[href^='/hosts/']"); slices.Contains(names, "ops01") {
		t.Errorf("bob (operator@team=lab) sees ops01 in the list: %q", names)
	}
	b.navigate("/hosts/lab01")
	b.waitText("#host-state", "ready", 10*time.Second)
	if got := visibleButtons(b); !slices.Equal(got, hostButtons) {
		t.Errorf("bob sees buttons %q, want %q", got, hostButtons)
	}
	if who := b.text("header .who span"); who != "ldap:bob" {
		t.Errorf("header says %q, want ldap:bob", who)
	}
	b.screenshot("ldap-bob-host")

	a := newBrowser(t, e)
	a.login("alice", dir.Password("alice"))
	a.navigate("/hosts/lab01")
	a.waitText("#host-state", "ready", 10*time.Second)
	if got := visibleButtons(a); !slices.Equal(got, editButtons) {
		t.Errorf("alice (editor) sees action buttons %q, want %q", got, editButtons)
	}
	if !eval[bool](a, `!!document.querySelector("form#edit")`) {
		t.Error("alice (editor) does not see the edit form")
	}

	w := newBrowser(t, e)
	w.allowError("401")
	w.navigate("/login")
	w.typeInto(`input[name=username]`, "alice")
	w.typeInto(`input[name=password]`, "not-her-password")
	w.click(`form[action="/login"] button[type=submit]`)
	w.waitText(".login .error", "Invalid username or password.", 10*time.Second)
}
