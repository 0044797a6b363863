package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

// realServer starts `bootpilot serve` (the same function the command runs) on
// a free loopback port with a fresh data dir and database of driver.
func realServer(t *testing.T, driver string, mutate ...func(*config.Config)) (url, dataDir string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = addr
	cfg.ExternalURL = "https://" + addr
	if driver == "mysql" {
		cfg.DB = storetest.MySQLDSN(t)
	}
	for _, m := range mutate {
		m(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- serve(ctx, cfg, &out, io.Discard, func(a string) { ready <- a }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v after shutdown", err)
		}
	})
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), strings.TrimSpace(string(tok))) {
		t.Errorf("first start did not print the admin token once; stdout: %q", out.String())
	}
	if fi, _ := os.Stat(filepath.Join(cfg.DataDir, "admin-token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin-token mode %v, want 0600", fi.Mode().Perm())
	}
	t.Setenv("BOOTPILOT_SERVER", cfg.ExternalURL)
	t.Setenv("BOOTPILOT_TOKEN_FILE", filepath.Join(cfg.DataDir, "admin-token"))
	t.Setenv("BOOTPILOT_CA_CERT", filepath.Join(cfg.DataDir, "ca.pem"))
	return cfg.ExternalURL, cfg.DataDir
}

func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("bootpilot %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// ipxeClient fetches like iPXE: trusts only the CA in ca.pem, one request per
// connection, credentials only after the 401 challenge.
func ipxeClient(t *testing.T, dataDir string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12},
	}}
}

func bootOnce(t *testing.T, c *http.Client, url, name, tok string) string {
	t.Helper()
	u := url + "/boot/v1/script?mac=52-54-00-12-34-56&uuid=00000000-0000-0000-0000-000000000001&serial=S1&arch=x86_64&platform=efi"
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("first request: %d, want a 401 challenge", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", u, nil)
	req.SetBasicAuth(name, tok)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "#!ipxe\n") || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("boot: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}

func hostState(t *testing.T, name string) host.Host {
	t.Helper()
	var v struct{ Host host.Host }
	if err := json.Unmarshal([]byte(cli(t, "host", "show", name, "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	return v.Host
}

// TestEndToEnd drives the real server through the real CLI and an iPXE-like
// client: register → localboot → reimage → attempt 1 → attempt 2 → callback →
// localboot, then max attempts → failed → localboot.
func TestEndToEnd(t *testing.T) {
	for _, driver := range storetest.Drivers {
		t.Run(driver, func(t *testing.T) {
			url, dataDir := realServer(t, driver)
			c := ipxeClient(t, dataDir)
			cli(t, "profile", "add", "rocky9", "--installer", "kickstart",
				"--kernel", "https://mirror.example/rocky9/vmlinuz", "--initrd", "https://mirror.example/rocky9/initrd.img",
				"--cmdline", "inst.repo=https://mirror.example/rocky9 console=ttyS0")
			cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24",
				"--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--profile", "rocky9")
			tok := strings.TrimSpace(cli(t, "host", "token", "node01"))
			if i := strings.LastIndex(tok, "\n"); i >= 0 {
				tok = strings.TrimSpace(tok[i+1:])
			}

			if s := bootOnce(t, c, url, "node01", tok); !strings.Contains(s, "exit 1") || strings.Contains(s, "kernel") {
				t.Fatalf("ready host: %s", s)
			}
			cli(t, "host", "reimage", "node01", "--reason", "e2e")
			s1 := bootOnce(t, c, url, "node01", tok)
			s2 := bootOnce(t, c, url, "node01", tok)
			for i, s := range []string{s1, s2} {
				if !strings.Contains(s, "kernel --timeout") || !strings.Contains(s, "ip=10.0.2.15::10.0.2.2:255.255.255.0:node01") {
					t.Fatalf("attempt %d: %s", i+1, s)
				}
			}
			if h := hostState(t, "node01"); h.State != host.StateInstalling || h.Attempt != 2 {
				t.Fatalf("after two boots: %s/%d", h.State, h.Attempt)
			}
			cb := s2[strings.Index(s2, "bootpilot.callback=")+len("bootpilot.callback="):]
			cb = cb[:strings.IndexAny(cb, " \n")]
			resp, err := c.Post(cb, "application/json", strings.NewReader(`{"event":"installed"}`))
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("callback: %v %v", err, resp)
			}
			resp.Body.Close()
			if h := hostState(t, "node01"); h.State != host.StateReady || h.Inventory.Serial != "S1" {
				t.Fatalf("after callback: %+v", h)
			}
			if s := bootOnce(t, c, url, "node01", tok); strings.Contains(s, "kernel") {
				t.Fatalf("after install: %s", s)
			}

			cli(t, "host", "reimage", "node01")
			for i := 0; i < 3; i++ {
				if s := bootOnce(t, c, url, "node01", tok); !strings.Contains(s, "kernel") {
					t.Fatalf("attempt %d: %s", i+1, s)
				}
			}
			for i := 0; i < 2; i++ {
				if s := bootOnce(t, c, url, "node01", tok); strings.Contains(s, "kernel") {
					t.Fatalf("boot after max attempts served an install: %s", s)
				}
			}
			if h := hostState(t, "node01"); h.State != host.StateFailed {
				t.Fatalf("after max attempts: %s", h.State)
			}
			ev := cli(t, "host", "events", "node01")
			for _, want := range []string{"exhausted", "installed", "reimage"} {
				if !strings.Contains(ev, want) {
					t.Errorf("events lack %q:\n%s", want, ev)
				}
			}
			list := cli(t, "host", "list")
			if !strings.Contains(list, "node01") || !strings.Contains(list, "failed") {
				t.Errorf("host list:\n%s", list)
			}

			// Park the host: its boot waits and asks again; release returns it.
			cli(t, "host", "hold", "node01")
			if s := bootOnce(t, c, url, "node01", tok); !strings.Contains(s, "sleep ") || !strings.Contains(s, "${bootpilot/url}") {
				t.Errorf("held host: %s", s)
			}
			cli(t, "host", "release", "node01")
			if h := hostState(t, "node01"); h.State != host.StateReady {
				t.Errorf("after release: %s", h.State)
			}
			var errb bytes.Buffer
			if err := run(context.Background(), []string{"host", "adopt", "node01"}, io.Discard, &errb); err == nil {
				t.Error("adopt of a ready host succeeded, want a 409")
			}
		})
	}
}

// TestServeRestartKeepsState: a second start reuses the CA, certificate and
// token, and prints no new token.
func TestServeRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	start := func() (string, []byte) {
		cfg := config.Default()
		cfg.DataDir, cfg.Listen, cfg.ExternalURL = dir, "127.0.0.1:0", "https://127.0.0.1:8443"
		ctx, cancel := context.WithCancel(context.Background())
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() { done <- serve(ctx, cfg, &out, io.Discard, func(string) { cancel() }) }()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
		return out.String(), ca
	}
	out1, ca1 := start()
	out2, ca2 := start()
	if !strings.Contains(out1, "Admin API token") || strings.Contains(out2, "Admin API token") {
		t.Errorf("token printing: first %q, second %q; want only the first", out1, out2)
	}
	if !bytes.Equal(ca1, ca2) || len(ca1) == 0 {
		t.Error("the CA changed across restarts")
	}
}

// TestISODownload: GET /api/v1/hosts/{name}/iso through the CLI builds an ISO
// with a fresh token; the previous token stops working; Range and ETag work.
func TestISODownload(t *testing.T) {
	url, dataDir := realServer(t, "sqlite", func(c *config.Config) { c.ISOUnsigned = true })
	c := ipxeClient(t, dataDir)
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3")
	tok := strings.TrimSpace(cli(t, "host", "token", "node01"))
	tok = tok[strings.LastIndex(tok, "\n")+1:]
	bootOnce(t, c, url, "node01", tok)
	iso := filepath.Join(t.TempDir(), "node01.iso")
	cli(t, "host", "iso", "node01", "-f", iso)
	b, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 64<<10 || string(b[0x8001:0x8006]) != "CD001" {
		t.Fatalf("%s: %d bytes, no ISO9660 signature", iso, len(b))
	}
	req, _ := http.NewRequest("GET", url+"/boot/v1/script", nil)
	req.SetBasicAuth("node01", tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("old boot token after an ISO build: %d, want 401", resp.StatusCode)
	}
	admin, _ := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	req, _ = http.NewRequest("GET", url+"/api/v1/hosts/node01/iso", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
	req.Header.Set("Range", "bytes=32768-32773")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(part) != "\x01CD001" || resp.Header.Get("ETag") == "" {
		t.Errorf("ranged ISO: %d %q etag %q, want 206 \"\\x01CD001\" with an ETag", resp.StatusCode, part, resp.Header.Get("ETag"))
	}
}

// TestImageCLI uploads a blob with the CLI and reads it back from /images/v1.
func TestImageCLI(t *testing.T) {
	url, dataDir := realServer(t, "sqlite")
	f := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(f, []byte("not really a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	var img struct{ Digest, URL string }
	if err := json.Unmarshal([]byte(cli(t, "image", "add", f, "-o", "json")), &img); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("not really a kernel"))
	if want := hex.EncodeToString(sum[:]); img.Digest != "sha256:"+want || img.URL != url+"/images/v1/"+want {
		t.Fatalf("image add = %+v", img)
	}
	resp, err := ipxeClient(t, dataDir).Get(img.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "not really a kernel" {
		t.Errorf("GET %s = %q", img.URL, b)
	}
}

var isoTokenRE = regexp.MustCompile(`https://node01:([0-9a-f]{32})@`)

// TestOfflineISOImport is the CI pipeline against the real server: CSV →
// `iso build --offline` (tokens made locally, only hashes written) →
// `host import` → the token inside the ISO authenticates the host's boot.
func TestOfflineISOImport(t *testing.T) {
	url, dataDir := realServer(t, "sqlite")
	dir := t.TempDir()
	csv := filepath.Join(dir, "hosts.csv")
	if err := os.WriteFile(csv, []byte("name,mac,ipv4,gateway,dns\nnode01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	cli(t, "iso", "build", "--csv", csv, "--out", out, "--offline", "--unsigned",
		"--server-url", url, "--ca-cert", filepath.Join(dataDir, "ca.pem"))
	imp, err := os.ReadFile(filepath.Join(out, "hosts-import.json"))
	if err != nil {
		t.Fatal(err)
	}
	iso, err := os.ReadFile(filepath.Join(out, "node01.iso"))
	if err != nil {
		t.Fatal(err)
	}
	m := isoTokenRE.FindSubmatch(iso)
	if m == nil {
		t.Fatal("no boot URL with a token in node01.iso")
	}
	tok := string(m[1])
	if bytes.Contains(imp, []byte(tok)) {
		t.Fatal("hosts-import.json carries the plaintext token")
	}
	cli(t, "host", "import", filepath.Join(out, "hosts-import.json"))
	if s := bootOnce(t, ipxeClient(t, dataDir), url, "node01", tok); !strings.Contains(s, "exit 1") {
		t.Fatalf("boot with the ISO's token: %s", s)
	}
	// Rebuilding makes a new token; importing again replaces the hash.
	cli(t, "iso", "build", "--csv", csv, "--out", out, "--offline", "--unsigned",
		"--server-url", url, "--ca-cert", filepath.Join(dataDir, "ca.pem"))
	cli(t, "host", "import", filepath.Join(out, "hosts-import.json"))
	req, _ := http.NewRequest("GET", url+"/boot/v1/script", nil)
	req.SetBasicAuth("node01", tok)
	resp, err := ipxeClient(t, dataDir).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("old ISO's token after a rebuild and import: %d, want 401", resp.StatusCode)
	}
}

// TestAPIISOBuild: `iso build --api` registers the host on the real server,
// rotates its token, and the token in the ISO boots; a second build updates
// the host (409 → PATCH) and revokes the first token.
func TestAPIISOBuild(t *testing.T) {
	url, dataDir := realServer(t, "mysql")
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	csv := filepath.Join(dir, "hosts.csv")
	build := func(ip string) string {
		t.Helper()
		if err := os.WriteFile(csv, []byte("name,mac,ipv4,gateway,dns\nnode01,52:54:00:12:34:56,"+ip+",10.0.2.2,10.0.2.3\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		cli(t, "iso", "build", "--csv", csv, "--out", out, "--unsigned", "--api", url,
			"--token", strings.TrimSpace(string(admin)), "--server-url", url, "--ca-cert", filepath.Join(dataDir, "ca.pem"))
		iso, err := os.ReadFile(filepath.Join(out, "node01.iso"))
		if err != nil {
			t.Fatal(err)
		}
		m := isoTokenRE.FindSubmatch(iso)
		if m == nil {
			t.Fatal("no boot URL with a token in node01.iso")
		}
		return string(m[1])
	}
	tok1 := build("10.0.2.15/24")
	c := ipxeClient(t, dataDir)
	bootOnce(t, c, url, "node01", tok1)
	tok2 := build("10.0.2.16/24")
	if h := hostState(t, "node01"); h.IPv4 != "10.0.2.16/24" {
		t.Errorf("second build did not update the host: ipv4 %s", h.IPv4)
	}
	bootOnce(t, c, url, "node01", tok2)
	req, _ := http.NewRequest("GET", url+"/boot/v1/script", nil)
	req.SetBasicAuth("node01", tok1)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("first ISO's token after the second build: %d, want 401", resp.StatusCode)
	}
}
