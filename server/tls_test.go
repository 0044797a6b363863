package server_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/server"
)

// tlsVersions are the versions resumption is tested with: iPXE speaks TLS
// 1.2 (RFC 5077 tickets); Go clients use TLS 1.3 (PSK tickets).
var tlsVersions = []struct {
	name string
	max  uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// ticketEnv starts a replica whose session-ticket master key is key (nil:
// Go's default random keys).
func ticketEnv(t *testing.T, key []byte) *env {
	t.Helper()
	return newEnv(t, "sqlite", func(o *server.Options) { o.TicketKey = key })
}

// resumingClient is a client with a session cache and no keep-alive: each
// request is a new TLS connection.
func resumingClient(maxVersion uint16) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(testPKI().CA)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MaxVersion: maxVersion,
			ClientSessionCache: tls.NewLRUClientSessionCache(8)},
	}}
}

// connect makes one HTTPS request to e on a new connection and reports
// whether the client resumed a session.
func connect(t *testing.T, c *http.Client, e *env) bool {
	t.Helper()
	resp, err := c.Get(e.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.TLS == nil {
		t.Fatal("no TLS connection state")
	}
	return resp.TLS.DidResume
}

var reHandshakes = regexp.MustCompile(`(?m)^bootpilot_tls_handshakes_total\{resumed="(true|false)"\} (\d+)$`)

// handshakes reads e's handshake counter (full, resumed) from /metrics,
// served in process so the scrape makes no handshake of its own.
func handshakes(t *testing.T, e *env) (full, resumed int) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	found := 0
	for _, m := range reHandshakes.FindAllStringSubmatch(rec.Body.String(), -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "true" {
			resumed = n
		} else {
			full = n
		}
		found++
	}
	if found != 2 {
		t.Fatalf("/metrics has %d bootpilot_tls_handshakes_total series, want 2:\n%s", found, rec.Body.String())
	}
	return full, resumed
}

// wantHandshakes fails unless e counted full and resumed handshakes.
func wantHandshakes(t *testing.T, e *env, name string, full, resumed int) {
	t.Helper()
	if f, r := handshakes(t, e); f != full || r != resumed {
		t.Errorf("%s: handshakes full=%d resumed=%d, want full=%d resumed=%d", name, f, r, full, resumed)
	}
}

func TestSessionTicketKey(t *testing.T) {
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	keys := map[[32]byte]string{}
	for _, c := range []struct {
		name   string
		master []byte
		period int64
	}{{"a/0", a, 0}, {"a/1", a, 1}, {"a/20424", a, 20424}, {"b/20424", b, 20424}, {"a/-1", a, -1}} {
		k := server.SessionTicketKey(c.master, c.period)
		if prev, dup := keys[k]; dup {
			t.Errorf("SessionTicketKey(%s) = SessionTicketKey(%s)", c.name, prev)
		}
		keys[k] = c.name
		if again := server.SessionTicketKey(bytes.Clone(c.master), c.period); again != k {
			t.Errorf("SessionTicketKey(%s) is not deterministic", c.name)
		}
		if bytes.Contains(k[:], c.master[:8]) {
			t.Errorf("SessionTicketKey(%s) contains the master key", c.name)
		}
	}
}

// TestSessionResumption: a client's second connection resumes (both sides
// see it and the counter says 1 full + 1 resumed); a ticket from replica A
// resumes on replica B with the same secret key, not with another key.
func TestSessionResumption(t *testing.T) {
	key, other := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 32)
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			a, b, c := ticketEnv(t, key), ticketEnv(t, key), ticketEnv(t, other)
			wantHandshakes(t, a, "A at start", 0, 0)

			cl := resumingClient(v.max)
			if connect(t, cl, a) {
				t.Error("first connection to A resumed")
			}
			if !connect(t, cl, a) {
				t.Error("second connection to A did not resume")
			}
			wantHandshakes(t, a, "A after two connections", 1, 1)

			if !connect(t, cl, b) {
				t.Error("ticket from A did not resume on B (same secret key)")
			}
			wantHandshakes(t, b, "B (same key)", 0, 1)

			fresh := resumingClient(v.max)
			connect(t, fresh, a) // a ticket from A only
			if connect(t, fresh, c) {
				t.Error("ticket from A resumed on C (another secret key)")
			}
			wantHandshakes(t, c, "C (other key)", 1, 0)
		})
	}
}

// TestSessionResumptionDefaultKeys: without a ticket key a replica still
// resumes its own sessions (Go's random keys) but not another replica's.
func TestSessionResumptionDefaultKeys(t *testing.T) {
	a, b := ticketEnv(t, nil), ticketEnv(t, nil)
	cl := resumingClient(tls.VersionTLS12)
	connect(t, cl, a)
	if !connect(t, cl, a) {
		t.Error("second connection to A did not resume (Go's default keys)")
	}
	if connect(t, cl, b) {
		t.Error("ticket from A resumed on B without a shared key")
	}
	wantHandshakes(t, b, "B", 1, 0)
}

// TestSessionTicketRotation: tickets from the previous rotation period
// still resume; tickets from two periods ago do not.
func TestSessionTicketRotation(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	for _, v := range tlsVersions {
		for _, c := range []struct {
			periods int
			resume  bool
		}{{0, true}, {1, true}, {2, false}, {3, false}} {
			t.Run(fmt.Sprintf("%s/%d periods later", v.name, c.periods), func(t *testing.T) {
				e := newEnv(t, "sqlite", func(o *server.Options) { o.TicketKey, o.TicketPeriod = key, time.Hour })
				cl := resumingClient(v.max)
				connect(t, cl, e)
				e.clock.Add(time.Duration(c.periods) * time.Hour)
				if got := connect(t, cl, e); got != c.resume {
					t.Errorf("resumed %d periods later = %v, want %v", c.periods, got, c.resume)
				}
			})
		}
	}
}

// TestTicketKeyTooShort: a master key under 32 bytes is refused.
func TestTicketKeyTooShort(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	_, err := server.New(server.Options{Store: db, Auth: auth.NewService(db, nil, auth.ServiceOptions{}), PKI: testPKI(),
		TicketKey: bytes.Repeat([]byte{1}, 16)})
	if err == nil {
		t.Error("New with a 16-byte TicketKey: no error")
	}
}
