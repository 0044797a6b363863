package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/host"
)

// runCLI runs the CLI and returns stdout, stderr and its error.
func runCLI(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

// operatorEnv gives the test its own config dir (for the session) and an
// empty data dir, and returns a password file.
func operatorEnv(t *testing.T) (pwFile string) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv(cliEnvDataDir, t.TempDir())
	pwFile = filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return pwFile
}

// dropAdminToken makes the following commands use the stored session:
// no token, token file, server or CA from the environment.
func dropAdminToken(t *testing.T) {
	t.Setenv(cliEnvTokenFile, "")
	t.Setenv(cliEnvToken, "")
	t.Setenv(cliEnvServer, "")
	t.Setenv(cliEnvCACert, "")
}

func sessionFile(t *testing.T) string {
	t.Helper()
	p, err := cliSessionPath()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func addLabelledHost(t *testing.T, name, mac, ip, labels string) {
	t.Helper()
	cli(t, "host", "add", name, "--mac", mac, "--ipv4", ip, "--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--labels", labels)
}

// TestLoginSession: a local user made with `user add` logs in; the session
// is stored 0600 with its server and CA, so later commands need no token
// or server; whoami shows the grants; a session the server ended gives
// "log in again"; logout deletes it.
func TestLoginSession(t *testing.T) {
	pw := operatorEnv(t)
	url, _ := realServer(t, "sqlite")
	addLabelledHost(t, "node01", "52:54:00:12:34:56", "10.0.2.15/24", "team=lab")
	addLabelledHost(t, "node02", "52:54:00:12:34:57", "10.0.2.16/24", "team=ops")
	out := cli(t, "user", "add", "alice", "--role", "operator", "--hosts", "team=lab", "--password-file", pw)
	if !strings.Contains(out, "local:alice") || !strings.Contains(out, "operator@team=lab") {
		t.Errorf("user add: %q", out)
	}
	if _, _, err := runCLI("login", "--username", "alice", "--password-file", pw, "--server", url); err != nil {
		t.Fatalf("login with the admin token's environment: %v", err)
	}
	dropAdminToken(t)

	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("wrong password"), 0o600)
	_, _, err := runCLI("login", "--username", "alice", "--password-file", bad)
	if err == nil || !strings.Contains(err.Error(), "invalid credentials") || !strings.Contains(err.Error(), "check the user name and password") {
		t.Errorf("wrong password: %v, want invalid credentials with the next step", err)
	}

	// Again, server and CA from the stored session, both credentials on
	// stdin, one per line, as a script would pipe them.
	var stdout bytes.Buffer
	root := newRootCmd()
	root.SetArgs([]string{"login"})
	root.SetIn(strings.NewReader("alice\ncorrect horse battery staple\n"))
	root.SetOut(&stdout)
	root.SetErr(&bytes.Buffer{})
	if err := root.Execute(); err != nil {
		t.Fatalf("login from stdin: %v", err)
	}
	for _, want := range []string{"Logged in to " + url, "alice (local)", "operator@team=lab", "Expires:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("login output lacks %q:\n%s", want, stdout.String())
		}
	}

	p := sessionFile(t)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != cliSessionFileMode {
		t.Errorf("session file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(p)); di.Mode().Perm() != cliSessionDirMode {
		t.Errorf("session dir mode %v, want 0700", di.Mode().Perm())
	}
	var stored cliSession
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &stored); err != nil || stored.Server != url || stored.Token == "" || stored.User != "alice" || stored.CACert == "" {
		t.Fatalf("stored session %+v (%v), want alice's for %s with a CA", stored, err, url)
	}

	who := cli(t, "whoami")
	for _, want := range []string{"alice (local)", "operator@team=lab", "login session", "Expires:"} {
		if !strings.Contains(who, want) {
			t.Errorf("whoami lacks %q:\n%s", want, who)
		}
	}
	list := cli(t, "host", "list")
	if !strings.Contains(list, "node01") || strings.Contains(list, "node02") || !strings.Contains(list, "team=lab") {
		t.Errorf("host list with alice's session (team=lab only):\n%s", list)
	}
	// An explicit token wins over the session.
	admin, _ := os.ReadFile(filepath.Join(filepath.Dir(stored.CACert), "admin-token"))
	t.Setenv(cliEnvToken, strings.TrimSpace(string(admin)))
	if list := cli(t, "host", "list"); !strings.Contains(list, "node02") {
		t.Errorf("host list with an explicit admin token does not show node02:\n%s", list)
	}
	t.Setenv(cliEnvToken, "")

	// The server ends the session (logout from another copy): the stored
	// one is refused with the next step.
	c, err := client.New(url, stored.Token, mustRead(t, stored.CACert))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCLI("host", "list")
	if err == nil || !errors.Is(err, host.ErrUnauthorized) || !strings.Contains(err.Error(), "log in again with `bootpilot login`") {
		t.Errorf("host list with an ended session: %v, want 401 and 'log in again'", err)
	}
	if out := cli(t, "logout"); !strings.Contains(out, "Logged out") {
		t.Errorf("logout: %q", out)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("session file after logout: %v, want it gone", err)
	}
	_, _, err = runCLI("host", "list")
	if err == nil || !strings.Contains(err.Error(), "log in with `bootpilot login`") {
		t.Errorf("host list after logout: %v, want 'log in'", err)
	}
	_, _, err = runCLI("logout")
	if err == nil || !strings.Contains(err.Error(), "not logged in") {
		t.Errorf("second logout: %v, want 'not logged in'", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoginThrottled: failed logins end in a 429 the CLI words as "too
// many failed logins; try again in N s".
func TestLoginThrottled(t *testing.T) {
	pw := operatorEnv(t)
	realServer(t, "sqlite")
	cli(t, "user", "add", "bob", "--role", "viewer", "--password-file", pw)
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("wrong password"), 0o600)
	re := regexp.MustCompile(`too many failed logins; try again in [0-9]+ s$`)
	for i := 0; i < 12; i++ {
		_, _, err := runCLI("login", "--username", "bob", "--password-file", bad)
		if err == nil {
			t.Fatal("login with a wrong password succeeded")
		}
		if re.MatchString(err.Error()) {
			return
		}
		if !strings.Contains(err.Error(), "invalid credentials") {
			t.Fatalf("failed login %d: %v", i+1, err)
		}
	}
	t.Error("12 failed logins were never throttled")
}
