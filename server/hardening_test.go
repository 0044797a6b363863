package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/server"
)

// TestBootRequiresMAC: stage 0 always sends mac=; a request without it
// must not skip the MAC check.
func TestBootRequiresMAC(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	tok := e.addHost("node01", mac1, "10.0.2.15/24")
	if code, body := e.boot("node01", tok, ""); code != http.StatusBadRequest || !strings.Contains(body, "mac") {
		t.Errorf("boot without mac: %d %q, want 400 naming mac", code, body)
	}
	if code, _ := e.boot("node01", tok, mac1); code != http.StatusOK {
		t.Errorf("boot with the registered mac: %d, want 200", code)
	}
}

// TestCallbackStaleAfterCancel: once an attempt is cancelled its callback
// token reports nothing, progress included.
func TestCallbackStaleAfterCancel(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"reason": "test"}, nil)
		_, script := e.boot("node01", tok, mac1)
		cb := callbackURL(t, script)
		if code, body := e.callback(cb, `{"event":"progress","detail":"installer started"}`); code != 200 {
			t.Fatalf("progress of the live attempt: %d %s", code, body)
		}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/cancel", map[string]any{"reason": "test"}, nil)
		before := len(e.events("node01"))
		for _, ev := range []string{"progress", "installed", "failed"} {
			if code, body := e.callback(cb, `{"event":"`+ev+`","detail":"late"}`); code != http.StatusForbidden {
				t.Errorf("%s after cancel: %d %s, want 403", ev, code, body)
			}
		}
		if after := len(e.events("node01")); after != before {
			t.Errorf("callbacks of a cancelled attempt recorded %d events", after-before)
		}
	})
}

// events returns a host's events through the API.
func (e *env) events(name string) []map[string]any {
	e.t.Helper()
	var evs []map[string]any
	e.mustDo(200, "GET", "/api/v1/hosts/"+name+"/events", nil, &evs)
	return evs
}

// TestCallbackNoEnumeration: an unknown host and a known host with a wrong
// token get the same answer.
func TestCallbackNoEnumeration(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	tok := e.addHost("node01", mac1, "10.0.2.15/24")
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"reason": "test"}, nil)
	e.boot("node01", tok, mac1)
	bad := strings.Repeat("ab", 16)
	for _, ev := range []string{"progress", "installed"} {
		body := `{"event":"` + ev + `"}`
		kc, kb := e.callback(e.url+"/boot/v1/callback/node01/"+bad, body)
		uc, ub := e.callback(e.url+"/boot/v1/callback/nobody/"+bad, body)
		if kc != uc || kb != ub {
			t.Errorf("%s: known host %d %q, unknown host %d %q: want the same answer", ev, kc, kb, uc, ub)
		}
	}
}

// TestSecurityHeaders: every answer forbids caching (tokens travel in
// scripts, ISOs and API answers), sniffing and framing, and pins HTTPS.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	tok := e.addHost("node01", mac1, "10.0.2.15/24")
	check := func(what string, h http.Header) {
		t.Helper()
		for k, want := range map[string]string{
			"Strict-Transport-Security": "max-age=63072000",
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "DENY",
			"Cache-Control":             "no-store",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", what, k, got, want)
			}
		}
	}
	for _, tc := range []struct{ what, method, path, user, pass string }{
		{"boot script", "GET", "/boot/v1/script?mac=" + mac1, "node01", tok},
		{"boot challenge", "GET", "/boot/v1/script", "", ""},
		{"api", "POST", "/api/v1/hosts/node01/boot-token", "", ""},
		{"api unauthenticated", "GET", "/api/v1/hosts", "", ""},
		{"not found", "GET", "/nothing", "", ""},
		{"readyz", "GET", "/readyz", "", ""},
	} {
		req, _ := http.NewRequest(tc.method, e.url+tc.path, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		if tc.what == "api" {
			req.Header.Set("Authorization", "Bearer "+e.admin)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check(fmt.Sprintf("%s (%d)", tc.what, resp.StatusCode), resp.Header)
	}
}

// TestTLSRefusesCBC: the server negotiates ECDHE + AEAD only; a client that
// offers nothing but the CBC/SHA-1 suites is refused.
func TestTLSRefusesCBC(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	pool := x509.NewCertPool()
	pool.AddCert(testPKI().CA)
	addr := strings.TrimPrefix(e.url, "https://")
	for _, cs := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cs}})
		if err == nil {
			c.Close()
			t.Errorf("handshake with only %s succeeded, want refused", tls.CipherSuiteName(cs))
		}
	}
	// What iPXE negotiates (ECDHE-RSA with AES-GCM) still works.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}})
	if err != nil {
		t.Fatalf("ECDHE-RSA-AES256-GCM: %v", err)
	}
	c.Close()
}

// TestBodyCaps: a body over the route's cap is refused before it is read.
func TestBodyCaps(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	e.addProfiles()
	for _, tc := range []struct {
		path string
		size int
	}{
		{"/api/v1/profiles", 2 << 20},
		{"/api/v1/hosts", 2 << 20},
		{"/boot/v1/callback/node01/" + strings.Repeat("ab", 16), 128 << 10},
	} {
		body := `{"name":"` + strings.Repeat("x", tc.size) + `"}`
		req, _ := http.NewRequest("POST", e.url+tc.path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s with %d bytes: %d, want 413", tc.path, len(body), resp.StatusCode)
		}
	}
}

// TestSlowBodyCut: a client that sends headers and then trickles (or
// withholds) its body loses the connection after the body timeout, instead
// of holding it open for as long as it likes.
func TestSlowBodyCut(t *testing.T) {
	e := newEnv(t, store.DriverSQLite, func(o *server.Options) { o.BodyTimeout = 300 * time.Millisecond })
	pool := x509.NewCertPool()
	pool.AddCert(testPKI().CA)
	c, err := tls.Dial("tcp", strings.TrimPrefix(e.url, "https://"), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /boot/v1/callback/node01/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", strings.Repeat("ab", 16))
	// Waiting, not timing: the old server kept such a request open for as
	// long as the client liked; this one must drop it. The deadline is only
	// a safety net.
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// An error answer is fine; then the connection must be closed.
		_, err = c.Read(make([]byte, 1))
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept a slow request body open for 60 s")
	}
}

// TestConnectionCap: over MaxConnections, a new connection waits until one
// closes.
func TestConnectionCap(t *testing.T) {
	e := newEnv(t, store.DriverSQLite, func(o *server.Options) { o.MaxConnections = 2 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	pool := x509.NewCertPool()
	pool.AddCert(testPKI().CA)
	dial := func() (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	}
	var held []*tls.Conn
	for range 2 {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	third := make(chan error, 1)
	go func() {
		c, err := dial()
		if err == nil {
			c.Close()
		}
		third <- err
	}()
	select {
	case err := <-third:
		t.Fatalf("third connection was served while two were open (err %v); want it to wait", err)
	case <-time.After(500 * time.Millisecond):
	}
	held[0].Close()
	if err := <-third; err != nil {
		t.Fatalf("third connection after one closed: %v", err)
	}
	held[1].Close()
}

// TestReadyzDataDir: /readyz fails when the data directory cannot be
// written (here: it is gone), not only when the database is down.
func TestReadyzDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store.DriverSQLite, func(o *server.Options) { o.DataDir = dir })
	if code, _ := e.get(e.url + "/readyz"); code != 200 {
		t.Fatalf("readyz with a writable data dir: %d", code)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if code, body := e.get(e.url + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "data directory") {
		t.Errorf("readyz without a data dir: %d %q, want 503", code, body)
	}
}
