package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/client/clienttest"
	"github.com/bootpilot/bootpilot/internal/host"
)

// cliFake starts the API fake, moves the test into an empty directory (so no
// ./bootpilot-data is found by accident) and points the BOOTPILOT_* variables
// at the fake. It returns the fake and the path of its CA file.
func cliFake(t *testing.T) (*clienttest.Server, string) {
	t.Helper()
	s := clienttest.New(t)
	dir := t.TempDir()
	t.Chdir(dir)
	ca := filepath.Join(dir, "fake-ca.pem")
	if err := os.WriteFile(ca, s.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(cliEnvServer, s.URL)
	t.Setenv(cliEnvToken, s.Token)
	t.Setenv(cliEnvCACert, ca)
	t.Setenv(cliEnvTokenFile, "")
	t.Setenv(cliEnvDataDir, "")
	return s, ca
}

// cliRun runs the CLI and returns its stdout and stderr.
func cliRun(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// cliMustRun runs the CLI and fails the test on an error.
func cliMustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := cliRun(t, args...)
	if err != nil {
		t.Fatalf("bootpilot %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestClientFlagsEnv(t *testing.T) {
	s, _ := cliFake(t)
	if out := cliMustRun(t, "host", "list"); !strings.HasPrefix(out, "NAME") {
		t.Errorf("host list via env = %q, want a table", out)
	}
	if got := s.LastRequest().Auth; got != "Bearer "+s.Token {
		t.Errorf("Authorization = %q, want the env token", got)
	}
}

// TestClientFlagsPrecedence checks flag over env, and that a token never
// shows up in output or errors.
func TestClientFlagsPrecedence(t *testing.T) {
	s, _ := cliFake(t)
	bad := "bad-token-" + strings.Repeat("5", 24)

	t.Setenv(cliEnvToken, bad)
	out, errOut, err := cliRun(t, "host", "list")
	if !errors.Is(err, host.ErrUnauthorized) {
		t.Errorf("host list with a bad env token: err = %v, want ErrUnauthorized", err)
	}
	if strings.Contains(out+errOut+err.Error(), bad) {
		t.Errorf("the token appears in the output or error: %q %q %v", out, errOut, err)
	}
	if _, _, err := cliRun(t, "host", "list", "--token", s.Token); err != nil {
		t.Errorf("host list with --token over a bad env token: %v", err)
	}

	t.Setenv(cliEnvToken, s.Token)
	if _, _, err := cliRun(t, "host", "list", "--token", bad); !errors.Is(err, host.ErrUnauthorized) {
		t.Errorf("host list with a bad --token over a good env token: err = %v, want ErrUnauthorized", err)
	}

	// --server beats the environment.
	t.Setenv(cliEnvServer, "https://127.0.0.1:1")
	if _, _, err := cliRun(t, "host", "list", "--server", s.URL); err != nil {
		t.Errorf("host list with --server over a bad env server: %v", err)
	}
	if _, _, err := cliRun(t, "host", "list"); err == nil {
		t.Errorf("host list against the bad env server = nil error")
	}
}

func TestClientFlagsTokenFile(t *testing.T) {
	s, _ := cliFake(t)
	t.Setenv(cliEnvToken, "")
	file := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(file, []byte(s.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cliRun(t, "host", "list", "--token-file", file); err != nil {
		t.Errorf("host list --token-file: %v", err)
	}
	t.Setenv(cliEnvTokenFile, file)
	if _, _, err := cliRun(t, "host", "list"); err != nil {
		t.Errorf("host list with %s: %v", cliEnvTokenFile, err)
	}
	t.Setenv(cliEnvTokenFile, "")
	_, _, err := cliRun(t, "host", "list")
	if err == nil || !strings.Contains(err.Error(), "no admin token") {
		t.Errorf("host list without any token: err = %v, want 'no admin token'", err)
	}
	if n := len(s.Requests()); n != 2 {
		t.Errorf("server saw %d requests, want 2 (none without a token)", n)
	}
}

// TestClientFlagsDataDir checks the defaults next to a server's data
// directory: ./bootpilot-data/admin-token and ca.pem, or $BOOTPILOT_DATA_DIR.
func TestClientFlagsDataDir(t *testing.T) {
	s, _ := cliFake(t)
	t.Setenv(cliEnvToken, "")
	t.Setenv(cliEnvCACert, "")
	// Without the CA file the system roots are used, which do not know the fake.
	if _, _, err := cliRun(t, "host", "list", "--token", s.Token); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("host list without a CA: err = %v, want a certificate error", err)
	}
	writeData := func(dir string) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(s.Token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca.pem"), s.CAPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeData("bootpilot-data")
	if _, _, err := cliRun(t, "profile", "list"); err != nil {
		t.Errorf("profile list with ./bootpilot-data: %v", err)
	}
	other := filepath.Join(t.TempDir(), "data")
	writeData(other)
	if err := os.RemoveAll("bootpilot-data"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(cliEnvDataDir, other)
	if _, _, err := cliRun(t, "profile", "list"); err != nil {
		t.Errorf("profile list with %s: %v", cliEnvDataDir, err)
	}
}

func TestClientFlagsRefusals(t *testing.T) {
	s, _ := cliFake(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"host", "list", "--server", "http://127.0.0.1:8443"}, "https"},
		{[]string{"host", "list", "-o", "yaml"}, "table or json"},
		{[]string{"host", "list", "--ca-cert", "/nonexistent/ca.pem"}, "CA certificate"},
		{[]string{"host", "list", "--state", "bogus"}, "not a state"},
	}
	for _, tt := range tests {
		_, _, err := cliRun(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("bootpilot %s: err = %v, want one mentioning %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}
