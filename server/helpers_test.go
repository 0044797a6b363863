package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/internal/token"
	"github.com/bootpilot/bootpilot/server"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a real server over real HTTPS on loopback, on a real database.
type env struct {
	t      testing.TB
	db     *store.DB
	srv    *server.Server
	ts     *httptest.Server
	client *http.Client
	admin  string
	clock  *clock
	url    string
}

var testPKI = sync.OnceValue(func() *pki.Bundle {
	dir, err := tempDir()
	if err != nil {
		panic(err)
	}
	b, err := pki.Ensure(pki.FilesIn(dir), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		panic(err)
	}
	return b
})

// newEnv starts a server on driver's database ("sqlite" or "mysql").
func newEnv(tb testing.TB, driver string, mutate ...func(*server.Options)) *env {
	tb.Helper()
	db := storetest.Open(tb, driver)
	return newEnvDB(tb, db, mutate...)
}

func newEnvDB(tb testing.TB, db *store.DB, mutate ...func(*server.Options)) *env {
	tb.Helper()
	e := &env{t: tb, db: db, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}}
	cache, err := images.New(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	o := server.Options{
		Images: cache, Store: db, PKI: testPKI(), Policy: host.Policy{MaxAttempts: 3, InstallTimeout: time.Hour, CleanTimeout: time.Hour},
		CleanProfile: "agent-clean", HoldSeconds: 60, AgentAfter: "reboot",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: e.clock.Now,
		Auth: auth.NewService(db, nil, auth.ServiceOptions{Now: e.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}),
	}
	for _, m := range mutate {
		m(&o)
	}
	ts := httptest.NewUnstartedServer(nil)
	e.url = "https://" + ts.Listener.Addr().String()
	o.ExternalURL = e.url
	srv, err := server.New(o)
	if err != nil {
		tb.Fatal(err)
	}
	e.srv = srv
	ts.Config.Handler = srv.Handler()
	ts.TLS = srv.TLSConfig()
	ts.StartTLS()
	tb.Cleanup(ts.Close)
	e.ts = ts
	pool := x509.NewCertPool()
	pool.AddCert(testPKI().CA)
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	plain, hash := token.New()
	if err := db.CreateAPIToken(context.Background(), host.APIToken{Name: "test-" + plain[:8], Hash: hash, Role: "admin", CreatedAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
	e.admin = plain
	return e
}

// do sends an admin API request and decodes a JSON answer into out (if not nil).
func (e *env) do(method, path string, body any, out any) int {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			r = strings.NewReader(b)
		default:
			j, _ := json.Marshal(b)
			r = strings.NewReader(string(j))
		}
	}
	req, _ := http.NewRequest(method, e.url+path, r)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// mustDo is do that fails the test unless the status is want.
func (e *env) mustDo(want int, method, path string, body any, out any) {
	e.t.Helper()
	var raw json.RawMessage
	if got := e.do(method, path, body, &raw); got != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, got, raw, want)
	}
	if out != nil {
		json.Unmarshal(raw, out)
	}
}

// boot fetches the stage-1 script as iPXE does (credentials in the request).
func (e *env) boot(name, tok, mac string) (int, string) {
	e.t.Helper()
	q := url.Values{"mac": {mac}, "uuid": {"4c4c4544-0000-1111-2222-333344445555"}, "serial": {"SN-" + name}, "arch": {"x86_64"}, "platform": {"efi"}}
	req, _ := http.NewRequest("GET", e.url+"/boot/v1/script?"+q.Encode(), nil)
	if name != "" {
		req.SetBasicAuth(name, tok)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("boot %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// callback posts an installer report to url (taken from a served script).
func (e *env) callback(u, body string) (int, string) {
	e.t.Helper()
	resp, err := e.client.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatalf("callback: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) get(u string) (int, string) {
	e.t.Helper()
	resp, err := e.client.Get(u)
	if err != nil {
		e.t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const mac1 = "52:54:00:12:34:56"

// addHost registers a host with the rocky9 profile and returns its boot token.
func (e *env) addHost(name, mac, ip string) string {
	e.t.Helper()
	e.addProfiles()
	e.mustDo(201, "POST", "/api/v1/hosts", map[string]any{"name": name, "macs": []string{mac},
		"ipv4": ip, "gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}, "profile": "rocky9"}, nil)
	var tok struct{ Token string }
	e.mustDo(200, "POST", "/api/v1/hosts/"+name+"/boot-token", nil, &tok)
	return tok.Token
}

func (e *env) addProfiles() {
	e.t.Helper()
	if e.do("GET", "/api/v1/profiles/rocky9", nil, nil) == 200 {
		return
	}
	e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "rocky9",
		"kernel": "https://mirror.example/rocky9/vmlinuz", "initrds": []string{"https://mirror.example/rocky9/initrd.img"},
		"cmdline": "inst.repo=https://mirror.example/rocky9 console=ttyS0", "installer": "kickstart"}, nil)
	e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "agent-clean",
		"kernel": "https://10.0.2.100:8443/files/vmlinuz", "initrds": []string{"https://10.0.2.100:8443/files/agent.cpio.gz"},
		"installer": "none", "clean_method": "zero"}, nil)
}

func (e *env) host(name string) host.Host {
	e.t.Helper()
	h, err := e.db.GetHost(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// callbackURL extracts bootpilot.callback= from a served script.
func callbackURL(t testing.TB, script string) string {
	t.Helper()
	i := strings.Index(script, "bootpilot.callback=")
	if i < 0 {
		t.Fatalf("no bootpilot.callback in script:\n%s", script)
	}
	rest := script[i+len("bootpilot.callback="):]
	if j := strings.IndexAny(rest, " \n"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func forEachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) { f(t, d) })
	}
}
