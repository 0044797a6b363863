package attack_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
)

// TestCallbackStaleAfterCancel — finding 7: after cancel, the old
// attempt's callback token still recorded progress events.
func TestCallbackStaleAfterCancel(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/profiles", benignProfile("rocky9"), nil)
	tok := s.addHost("node01", 1, "rocky9")
	cb := callbackURL(t, s.installing("node01", tok, 1))
	if a := s.callback(cb, `{"event":"progress","detail":"installer started"}`); a.code != http.StatusOK {
		t.Fatalf("progress of the live attempt: %s, want 200", a)
	}
	s.mustAPI(http.StatusOK, "POST", "/api/v1/hosts/node01/cancel", map[string]any{"reason": "attack"}, nil)
	for _, ev := range []string{"progress", "installed", "failed"} {
		if a := s.callback(cb, `{"event":"`+ev+`","detail":"late"}`); a.code != http.StatusForbidden {
			t.Errorf("%s after cancel: %s, want 403", ev, a)
		}
	}
	if a := s.api("GET", "/api/v1/hosts/node01/events", nil); strings.Contains(string(a.body), "late") {
		t.Errorf("a callback of the cancelled attempt was recorded: %s", a)
	}
}

// TestCallbackNoEnumeration — finding 7: the callback answered an unknown
// host differently from a known host with a wrong token, so host names
// could be enumerated without any credential.
func TestCallbackNoEnumeration(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/profiles", benignProfile("rocky9"), nil)
	tok := s.addHost("node01", 1, "rocky9")
	s.installing("node01", tok, 1)
	bad := strings.Repeat("ab", 16)
	for _, body := range []string{`{"event":"progress","detail":"x"}`, `{"event":"installed"}`, `{"event":"failed"}`} {
		known := s.callback(s.url+"/boot/v1/callback/node01/"+bad, body)
		unknown := s.callback(s.url+"/boot/v1/callback/nobody/"+bad, body)
		if known.code != unknown.code || string(known.body) != string(unknown.body) {
			t.Errorf("%s: known host, wrong token: %s; unknown host: %s; want byte-identical answers", body, known, unknown)
		}
	}
}

// TestBootRequiresMAC — finding 7: a boot without mac= skipped the check
// that the MAC belongs to the host.
func TestBootRequiresMAC(t *testing.T) {
	s := startServer(t, serverOptions{})
	tok := s.addHost("node01", 1, "")
	for _, q := range []string{"", "uuid=x", "mac="} {
		if a := s.boot("node01", tok, q); a.code != http.StatusBadRequest {
			t.Errorf("boot with query %q: %s, want 400", q, a)
		}
	}
	if a := s.boot("node01", tok, "mac="+mac(2)); a.code != http.StatusForbidden {
		t.Errorf("boot with another host's MAC: %s, want 403", a)
	}
	if a := s.boot("node01", tok, "mac="+mac(1)); a.code != http.StatusOK {
		t.Errorf("boot with the registered MAC: %s, want 200", a)
	}
}

// TestTerminalEscapesReachCLI — finding 7: boot inventory (serial=…) and
// callback details are written by the host, and reached the admin's
// terminal raw through `bootpilot host show`: OSC 52 (clipboard write),
// CSI (clear screen, colours), bidi overrides.
func TestTerminalEscapesReachCLI(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/profiles", benignProfile("rocky9"), nil)
	tok := s.addHost("node01", 1, "rocky9")
	s.mustAPI(http.StatusOK, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"reason": "attack"}, nil)
	q := "mac=" + mac(1) + "&serial=%1b]52;c;aGk=%07%1b[2J&asset=%c2%9b31m&uuid=%e2%80%aeevil&platform=%9b2J"
	a := s.boot("node01", tok, q)
	if a.code != http.StatusOK {
		t.Fatalf("boot with hostile inventory: %s", a)
	}
	cb := callbackURL(t, a.body)
	if a := s.callback(cb, `{"event":"progress","detail":"\u001b[31m\u202e red and reversed \u009b2J"}`); a.code != http.StatusOK {
		t.Fatalf("progress with escapes: %s", a)
	}
	for _, args := range [][]string{{"host", "show", "node01"}, {"host", "show", "node01", "-o", "json"},
		{"host", "events", "node01"}, {"host", "list"}} {
		out, errOut, err := s.cli(args...)
		if err != nil {
			t.Fatalf("bootpilot %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		for what, b := range map[string][]byte{"stdout": out, "stderr": errOut} {
			if c := terminalControl(b); c != "" {
				t.Errorf("bootpilot %s: %s holds %s: %s", strings.Join(args, " "), what, c, quoteShort(b, 2000))
			}
		}
	}
}

// TestTLSAndHeaders — finding 7: the server accepted TLS 1.2 CBC-SHA1
// suites and sent no HSTS, nosniff or no-store.
func TestTLSAndHeaders(t *testing.T) {
	s := startServer(t, serverOptions{})
	for _, cs := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA} {
		cfg := s.tlsConfig()
		cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, []uint16{cs}
		if c, err := tls.Dial("tcp", s.addr, cfg); err == nil {
			c.Close()
			t.Errorf("TLS 1.2 handshake offering only %s succeeded, want refused", tls.CipherSuiteName(cs))
		}
	}
	// The control: what iPXE offers still works.
	cfg := s.tlsConfig()
	cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	c, err := tls.Dial("tcp", s.addr, cfg)
	if err != nil {
		t.Fatalf("TLS 1.2 ECDHE-RSA-AES256-GCM (iPXE's): %v", err)
	}
	c.Close()

	tok := s.addHost("node01", 1, "")
	answers := map[string]answer{
		"boot script":         s.boot("node01", tok, "mac="+mac(1)),
		"boot challenge":      s.unauthenticated("GET", "/boot/v1/script"),
		"api":                 s.api("GET", "/api/v1/hosts/node01", nil),
		"api unauthenticated": s.unauthenticated("GET", "/api/v1/hosts"),
		"not found":           s.unauthenticated("GET", "/nothing"),
		"readyz":              s.unauthenticated("GET", "/readyz"),
	}
	for what, a := range answers {
		for k, want := range map[string]string{
			"Strict-Transport-Security": "max-age=",
			"X-Content-Type-Options":    "nosniff",
			"Cache-Control":             "no-store",
		} {
			if got := a.header.Get(k); !strings.Contains(got, want) {
				t.Errorf("%s (%d): %s = %q, want %q", what, a.code, k, got, want)
			}
		}
	}
}
