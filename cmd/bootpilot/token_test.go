package main

import (
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

// TestTokenCLI: a logged-in operator makes a viewer token; the secret is
// printed once on stdout (warning on stderr); with it `host reimage` is a
// 403 explained in CLI terms; after `token revoke` it is a 401.
func TestTokenCLI(t *testing.T) {
	pw := operatorEnv(t)
	realServer(t, "sqlite")
	addLabelledHost(t, "node01", "52:54:00:12:34:56", "10.0.2.15/24", "team=lab")
	// auth.Identity.Covers wants the same role: an operator alone cannot give a
	// token viewer (reported); carol holds both.
	cli(t, "user", "add", "carol", "--grant", "operator@team=lab", "--grant", "viewer@team=lab", "--password-file", pw)
	cli(t, "login", "--username", "carol", "--password-file", pw)
	dropAdminToken(t)

	secret, stderr, err := runCLI("token", "create", "ci", "--grant", "viewer@team=lab", "--expires-in", "1h")
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.TrimSpace(secret)
	if strings.Contains(secret, "\n") || len(secret) < 16 {
		t.Fatalf("token create stdout %q, want only the secret", secret)
	}
	if !strings.Contains(stderr, "printed once") || strings.Contains(stderr, secret) {
		t.Errorf("token create stderr %q, want the warning without the secret", stderr)
	}
	id := regexp.MustCompile(`Token ([0-9]+) "ci"`).FindStringSubmatch(stderr)
	if id == nil {
		t.Fatalf("no token id in %q", stderr)
	}
	list := cli(t, "token", "list")
	if !strings.Contains(list, "ci") || !strings.Contains(list, "viewer@team=lab") || !strings.Contains(list, "valid") {
		t.Errorf("token list:\n%s", list)
	}

	t.Setenv(cliEnvToken, secret)
	who := cli(t, "whoami")
	if !strings.Contains(who, "Token:") || !strings.Contains(who, "ci") || !strings.Contains(who, "viewer@team=lab") || !strings.Contains(who, "API token") {
		t.Errorf("whoami with the token:\n%s", who)
	}
	_, _, err = runCLI("host", "reimage", "node01")
	if !errors.Is(err, host.ErrForbidden) || !strings.Contains(err.Error(), "your grants do not allow `bootpilot host reimage` on host node01") ||
		!strings.Contains(err.Error(), "ask an admin") {
		t.Errorf("viewer's host reimage: %v, want a 403 in CLI terms", err)
	}
	t.Setenv(cliEnvToken, "")

	if out := cli(t, "token", "revoke", id[1]); !strings.Contains(out, "revoked token "+id[1]) {
		t.Errorf("token revoke: %q", out)
	}
	if list := cli(t, "token", "list"); !strings.Contains(list, "revoked") {
		t.Errorf("token list after revoke:\n%s", list)
	}
	t.Setenv(cliEnvToken, secret)
	_, _, err = runCLI("host", "list")
	if !errors.Is(err, host.ErrUnauthorized) || !strings.Contains(err.Error(), "refused the API token") {
		t.Errorf("revoked token: %v, want a 401 with the next step", err)
	}
	_, _, err = runCLI("token", "revoke", "x")
	if err == nil || !strings.Contains(err.Error(), "bootpilot token list") {
		t.Errorf("token revoke x: %v", err)
	}
}

// TestUserCLI: users are listed, disabled (login refused), enabled, given
// new grants, a new password, and deleted.
func TestUserCLI(t *testing.T) {
	pw := operatorEnv(t)
	realServer(t, "sqlite")
	cli(t, "user", "add", "dave", "--role", "viewer", "--password-file", pw)
	if _, _, err := runCLI("user", "add", "erin", "--password-file", pw); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Errorf("user add without a grant: %v, want a hint to --role", err)
	}
	if _, _, err := runCLI("user", "add", "erin", "--role", "boss", "--password-file", pw); err == nil || !strings.Contains(err.Error(), "viewer, operator") {
		t.Errorf("user add with an unknown role: %v, want the roles", err)
	}
	if l := cli(t, "user", "list"); !strings.Contains(l, "local:dave") || !strings.Contains(l, "viewer") {
		t.Errorf("user list:\n%s", l)
	}
	cli(t, "user", "disable", "dave")
	if _, _, err := runCLI("login", "--username", "dave", "--password-file", pw); err == nil || !strings.Contains(err.Error(), "invalid credentials") {
		t.Errorf("disabled user's login: %v", err)
	}
	cli(t, "user", "enable", "local:dave")
	cli(t, "user", "grant", "dave", "--grant", "operator@team=lab", "--grant", "auditor")
	newPW := filepath.Join(t.TempDir(), "pw2")
	os.WriteFile(newPW, []byte("another long passphrase"), 0o600)
	cli(t, "user", "passwd", "dave", "--password-file", newPW)
	out := cli(t, "login", "--username", "dave", "--password-file", newPW)
	if !strings.Contains(out, "operator@team=lab, auditor") {
		t.Errorf("login after grant and passwd:\n%s", out)
	}
	if _, _, err := runCLI("user", "delete", "dave"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("user delete without --yes: %v", err)
	}
	cli(t, "user", "delete", "dave", "--yes")
	if l := cli(t, "user", "list"); strings.Contains(l, "dave") {
		t.Errorf("user list after delete:\n%s", l)
	}
}

// TestAuditCLI: the audit table and the CSV export, filtered, with paging.
func TestAuditCLI(t *testing.T) {
	operatorEnv(t)
	realServer(t, "sqlite")
	addLabelledHost(t, "node01", "52:54:00:12:34:56", "10.0.2.15/24", "team=lab")
	cli(t, "host", "hold", "node01", "--reason", "rack\x1b[2Jmove")
	table := cli(t, "audit", "--since", "1h")
	for _, want := range []string{"ACTOR", "node01", "hold", `rack\x1b[2Jmove`} {
		if !strings.Contains(table, want) {
			t.Errorf("audit table lacks %q:\n%s", want, table)
		}
	}
	if strings.ContainsRune(table, 0x1b) {
		t.Error("audit table prints a raw escape")
	}
	out, stderr, err := runCLI("audit", "--host", "node01", "--limit", "1")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(stderr, "--after ") {
		t.Errorf("audit --limit 1: %v\n%s\n%s", err, out, stderr)
	}
	raw := cli(t, "audit", "-o", "csv", "--host", "node01", "--action", "hold")
	rows, err := csv.NewReader(strings.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatalf("audit csv: %v\n%s", err, raw)
	}
	if len(rows) != 2 || rows[0][0] != "id" || rows[1][5] != "node01" || rows[1][7] != "hold" {
		t.Errorf("audit csv rows %q, want the header and the hold", rows)
	}
	if _, _, err := runCLI("audit", "--since", "yesterday"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("audit --since yesterday: %v", err)
	}
}
