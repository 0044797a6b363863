package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
)

// Tests for what a new user hit on day one (issue 10): each drives the CLI
// as the README does.

// cliFail runs the CLI, wants an error and returns it with stderr.
func cliFail(t *testing.T, args ...string) (msg, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	if err == nil {
		t.Fatalf("bootpilot %s: no error\n%s%s", strings.Join(args, " "), out.String(), errb.String())
	}
	return err.Error(), errb.String()
}

// cliOK runs the CLI, wants success and returns stdout and stderr.
func cliOK(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("bootpilot %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

const day1CSV = "name,mac,ipv4,gateway,dns\nnode01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3\n"

// TestDay1ISOBuildAPIToken: iso build --api finds the admin token where
// every client command does (--token-file, BOOTPILOT_TOKEN_FILE,
// ./bootpilot-data/admin-token), so the README's example runs as written.
func TestDay1ISOBuildAPIToken(t *testing.T) {
	url, dataDir := realServer(t, "sqlite")
	dir := t.TempDir()
	csv := filepath.Join(dir, "hosts.csv")
	if err := os.WriteFile(csv, []byte(day1CSV), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dataDir, "admin-token")
	// ./bootpilot-data next to the CLI, as after `make run`.
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "bootpilot-data"), 0o700); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "bootpilot-data", "admin-token"), tok, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	for _, tc := range []struct {
		name  string
		env   string // BOOTPILOT_TOKEN_FILE
		extra []string
	}{
		{"env BOOTPILOT_TOKEN_FILE", tokenFile, nil},
		{"--token-file", "", []string{"--token-file", tokenFile}},
		{"./bootpilot-data/admin-token", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("BOOTPILOT_TOKEN_FILE", tc.env)
			t.Setenv("BOOTPILOT_DATA_DIR", "")
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"iso", "build", "--csv", csv, "--out", out, "--unsigned", "--api", url,
				"--server-url", url, "--ca-cert", filepath.Join(dataDir, "ca.pem")}, tc.extra...)
			stdout, _ := cliOK(t, args...)
			if _, err := os.Stat(filepath.Join(out, "node01.iso")); err != nil {
				t.Errorf("no ISO: %v", err)
			}
			if want := "1 ISO written to " + out + "/, unsigned: Secure Boot will refuse them\n"; stdout != want {
				t.Errorf("stdout = %q, want %q", stdout, want)
			}
		})
	}
}

// TestDay1ISOSummary: a signed build names its signer.
func TestDay1ISOSummary(t *testing.T) {
	dir := t.TempDir()
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	csv := filepath.Join(dir, "hosts.csv")
	if err := os.WriteFile(csv, []byte(isoCSV), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	stdout, _ := cliOK(t, "iso", "build", "--csv", csv, "--out", out, "--offline", "--server-url", "https://10.0.2.100:8443",
		"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath)
	// --offline with no --server-cert: the check that was not made is named.
	want := "3 ISOs written to " + out + "/, signed by CN=iso test db\n" +
		`not checked: whether the server's certificate names "10.0.2.100" (hosts boot their disks when it does not); ` +
		"check with --server-cert DATA_DIR/server.pem\n"
	if stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
}

// TestDay1ISOBuildServerURLNotInCert: ISOs that call a host name the
// server's certificate does not have would boot their disks; the build
// refuses, names the certificate's names and the next step, and writes
// nothing.
func TestDay1ISOBuildServerURLNotInCert(t *testing.T) {
	url, dataDir := realServer(t, "sqlite") // certificate: localhost, 127.0.0.1
	dir := t.TempDir()
	csv := filepath.Join(dir, "hosts.csv")
	if err := os.WriteFile(csv, []byte(day1CSV), 0o644); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dataDir, "ca.pem")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"--api: the server's TLS handshake", []string{"--api", url}},
		{"--offline --server-cert", []string{"--offline", "--server-cert", filepath.Join(dataDir, "server.pem")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"iso", "build", "--csv", csv, "--out", out, "--unsigned",
				"--server-url", "https://bootsrv:8443", "--ca-cert", ca}, tc.args...)
			msg, _ := cliFail(t, args...)
			for _, want := range []string{`"bootsrv"`, "not in the server's certificate", "127.0.0.1", "localhost",
				"boot their disks", "--external-url https://bootsrv:8443"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("out dir exists after the refusal: %v", err)
			}
		})
	}
	// A name the certificate has passes.
	out := filepath.Join(t.TempDir(), "out")
	cliOK(t, "iso", "build", "--csv", csv, "--out", out, "--unsigned", "--offline",
		"--server-url", "https://localhost:8443", "--ca-cert", ca, "--server-cert", filepath.Join(dataDir, "server.pem"))
}

// TestDay1ServeShortHostWarning: an --external-url defaulted from a short
// host name (no dot, not an IP) is warned about at start.
func TestDay1ServeShortHostWarning(t *testing.T) {
	for _, tc := range []struct {
		host string
		warn bool
	}{
		{"bootsrv", true},
		{"boot.example.org", false},
		{"10.0.0.5", false},
		{"localhost", true},
	} {
		got := shortHostWarning("https://" + tc.host + ":8443")
		if (got != "") != tc.warn {
			t.Errorf("shortHostWarning(%q) = %q, want a warning: %v", tc.host, got, tc.warn)
		}
		if tc.warn && (!strings.Contains(got, "hosts must resolve "+tc.host) ||
			!strings.Contains(got, "set --external-url https://<address hosts use>:8443")) {
			t.Errorf("shortHostWarning(%q) = %q", tc.host, got)
		}
	}
}

// TestDay1ServeConfigFile: serve --config fails at start, before anything
// is created, with FILE:LINE and the reason.
func TestDay1ServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, tc := range []struct{ text, want string }{
		{"data-dir: " + data + "\nmax-connections: lots\n", ":2: max-connections: "},
		{"data-dir: " + data + "\nmax-connections: 5\n", ":2: --max-connections 5 must be 16-1000000"},
		{"data-dir: " + data + "\nexternal_url: https://boot.example.org:8443\n", `:2: unknown key "external_url"`},
	} {
		file := filepath.Join(dir, "bootpilot.yaml")
		if err := os.WriteFile(file, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		msg, _ := cliFail(t, "serve", "--config", file, "--listen", "127.0.0.1:0")
		if !strings.HasPrefix(msg, file+tc.want) {
			t.Errorf("serve --config with %q: %q, want %q", tc.text, msg, file+tc.want)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("serve created its data dir before refusing the config: %v", err)
		}
	}
}

// TestDay1SecretKeyInit: the directory is made (0700) and a second run
// says what to do instead of "file exists".
func TestDay1SecretKeyInit(t *testing.T) {
	umask022(t)
	dir := filepath.Join(t.TempDir(), "etc", "bootpilot")
	file := filepath.Join(dir, "secret.key")
	cliOK(t, "secret-key", "init", file)
	checkMode(t, dir, 0o700)
	checkMode(t, file, 0o600)
	before, _ := os.ReadFile(file)
	msg, _ := cliFail(t, "secret-key", "init", file)
	if want := file + " already exists; keep it (it seals the BMC passwords) or remove it first"; msg != want {
		t.Errorf("second init: %q, want %q", msg, want)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
		t.Error("second init changed the key")
	}
}

// TestDay1ErrorsInCLITerms: server answers are shown in the command's
// terms: flags for API fields, commands for API routes, the valid states,
// and a question when no server answers.
func TestDay1ErrorsInCLITerms(t *testing.T) {
	_, _ = realServer(t, "sqlite")
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3")
	check := func(msg string, want, notWant []string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not contain %q", msg, w)
			}
		}
		for _, w := range notWant {
			if strings.Contains(msg, w) {
				t.Errorf("error %q contains %q", msg, w)
			}
		}
	}
	msg, _ := cliFail(t, "host", "reimage", "node01")
	check(msg, []string{"--profile"}, []string{`{"profile"`})
	msg, _ = cliFail(t, "host", "power", "node01", "status")
	check(msg, []string{"bootpilot bmc set node01"}, []string{"PUT", "/api/v1"})
	msg, _ = cliFail(t, "host", "add", "node02", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.16/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3")
	check(msg, []string{"node02"}, []string{"/api/v1", "POST"})
	msg, _ = cliFail(t, "host", "add", "node03", "--mac", "52:54:00:12:34:59", "--ipv4", "10.0.2.17/24",
		"--gateway", "10.9.9.9", "--dns", "10.0.2.3")
	check(msg, []string{"--gateway: 10.9.9.9"}, nil)
	msg, _ = cliFail(t, "host", "list", "--state", "installed")
	check(msg, []string{"ready, reimage, installing", "hold", "discovered"}, nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + ln.Addr().String()
	ln.Close()
	msg, _ = cliFail(t, "bmc", "set", "node01", "--url", "https://10.0.0.10", "--username", "root", "--server", down)
	check(msg, []string{"bmc set node01", "is the server running at " + down + "?"}, []string{"PUT", "/api/v1"})
}

// TestDay1CLIErrorMapping: whatever field the API names (the owner of a
// duplicate MAC included) is shown as the command's flag, and routes and
// JSON hints as commands and flags.
func TestDay1CLIErrorMapping(t *testing.T) {
	root := newRootCmd()
	find := func(args ...string) *cobra.Command {
		t.Helper()
		c, _, err := root.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	add, reimage, bmcSet, clean := find("host", "add"), find("host", "reimage"), find("bmc", "set"), find("host", "clean")
	for _, tc := range []struct {
		cmd  *cobra.Command
		err  error
		want string
	}{
		{add, fmt.Errorf("host add node02: %w", &client.Error{Status: 409, Field: "macs", Message: "52:54:00:12:34:56 is registered to host node01"}),
			"host add node02: server: --mac: 52:54:00:12:34:56 is registered to host node01 (HTTP 409)"},
		{add, fmt.Errorf("host add node02: %w", &client.Error{Status: 400, Field: "macs[1]", Message: "macs[1]: not a MAC"}),
			"host add node02: server: --mac: not a MAC (HTTP 400)"},
		{reimage, fmt.Errorf("host reimage node01: %w", &client.Error{Status: 400, Field: "profile", Message: `host node01 has no profile; pass {"profile": …}`}),
			"host reimage node01: server: --profile: host node01 has no profile; pass --profile (HTTP 400)"},
		{clean, fmt.Errorf("x: %w", &client.Error{Status: 400, Field: "then_install", Message: "needs a profile"}),
			"x: server: --then-install: needs a profile (HTTP 400)"},
		{bmcSet, fmt.Errorf("bmc set node01: %w", &client.Error{Status: 400, Field: "password", Message: "required for a new BMC"}),
			"bmc set node01: server: --password-file: required for a new BMC (HTTP 400)"},
		{reimage, fmt.Errorf("x: %w", &client.Error{Status: 404, Message: "host node01 has no BMC (set one with PUT /api/v1/hosts/node01/bmc): not found"}),
			"x: server: host node01 has no BMC (set one with bootpilot bmc set node01): not found (HTTP 404)"},
		{reimage, fmt.Errorf("x: %w", &client.Error{Status: 409, Message: "state failed: use POST /api/v1/hosts/node01/retry"}),
			"x: server: state failed: use bootpilot host retry node01 (HTTP 409)"},
		{add, fmt.Errorf("host add n: %w", host.Invalid("gateway", "outside the subnet")), "host add n: --gateway: outside the subnet"},
		{add, fmt.Errorf("x: %w", &client.Error{Status: 500, Field: "macs", Message: "internal"}), "x: server: macs: internal (HTTP 500)"},
		{add, errors.New("plain"), "plain"},
	} {
		got := cliError(tc.cmd, tc.err)
		if got.Error() != tc.want {
			t.Errorf("cliError(%s, %q) = %q, want %q", tc.cmd.CommandPath(), tc.err, got, tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("cliError(%q) lost the error chain", tc.err)
		}
	}
}

// TestDay1BMCWaitNotice: a command that goes through the host's BMC says on
// stderr that it may wait for the server's retries.
func TestDay1BMCWaitNotice(t *testing.T) {
	old := cliBMCNoticeAfter
	cliBMCNoticeAfter = 0
	t.Cleanup(func() { cliBMCNoticeAfter = old })
	keyFile := filepath.Join(t.TempDir(), "secret.key")
	cliOK(t, "secret-key", "init", keyFile)
	_, _ = realServer(t, "sqlite", func(c *config.Config) { c.SecretKeyFile = keyFile })
	bmc := bmcsim.New(bmcsim.Config{Username: "root", Password: cliBMCPass, PoweredOn: true})
	srv := httptest.NewTLSServer(bmc)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "bmc-ca.pem")
	pwFile := filepath.Join(dir, "bmc-pw")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(cliBMCPass), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3")
	_, stderr := cliOK(t, "bmc", "set", "node01", "--url", srv.URL, "--username", "root", "--password-file", pwFile, "--bmc-ca-cert", caFile)
	if strings.Contains(stderr, "waiting for the BMC") {
		t.Errorf("bmc set (no BMC call) said %q", stderr)
	}
	for _, args := range [][]string{{"host", "power", "node01", "status"}, {"bmc", "test", "node01"}} {
		_, stderr := cliOK(t, args...)
		if want := "waiting for the BMC (retrying for up to 7.5 s)…\n"; stderr != want {
			t.Errorf("%v: stderr %q, want %q", args, stderr, want)
		}
	}
}

// TestDay1Version: --version prints what `bootpilot version` does.
func TestDay1Version(t *testing.T) {
	got, _ := cliOK(t, "--version")
	want, _ := cliOK(t, "version")
	if got != want {
		t.Errorf("--version = %q, want %q", got, want)
	}
}
