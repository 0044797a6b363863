package console_test

// The console's test harness, shared by every console screen's tests (the
// host screens and the other console helper's /import, /profiles, /images,
// /audit and /admin): a real server over real HTTPS on loopback, on a real
// SQLite store, driven through plain HTTP (httpLogin) or a real headless
// Chromium (newBrowser).
//
// Chromium trusts the test server by its key only: the server's leaf
// certificate's SubjectPublicKeyInfo hash is passed as
// --ignore-certificate-errors-spki-list, so no other certificate error is
// ignored and no NSS database is needed. A browser test fails on any
// uncaught exception, console error or Content-Security-Policy violation
// (see newBrowser). Screenshots go to t.ArtifactDir() (go test -artifacts
// keeps them under -outputdir; without it they land in a temporary
// directory and their path is logged).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/bootpilot/bootpilot/internal/token"
	"github.com/bootpilot/bootpilot/server"
)

// testPassword is every test user's password (≥ auth.MinPasswordLen).
const testPassword = "correct horse battery staple"

// consoleEnv is a real server over HTTPS on loopback with a SQLite store.
type consoleEnv struct {
	t      testing.TB
	db     *store.DB
	srv    *server.Server
	url    string       // "https://127.0.0.1:PORT"
	client *http.Client // trusts the test CA; no cookies
	admin  string       // an admin service token
	spki   string       // base64 SHA-256 of the server certificate's public key
}

var testPKI = sync.OnceValue(func() *pki.Bundle {
	dir, err := os.MkdirTemp("", "bootpilot-console-pki-")
	if err != nil {
		panic(err)
	}
	b, err := pki.Ensure(pki.FilesIn(dir), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		panic(err)
	}
	return b
})

// newConsoleEnv starts a server on a fresh SQLite database; mutate may
// change its options.
func newConsoleEnv(tb testing.TB, mutate ...func(*server.Options)) *consoleEnv {
	tb.Helper()
	db := storetest.Open(tb, "sqlite")
	return newConsoleEnvDB(tb, db, mutate...)
}

// newConsoleEnvDB starts a server on db.
func newConsoleEnvDB(tb testing.TB, db *store.DB, mutate ...func(*server.Options)) *consoleEnv {
	tb.Helper()
	cache, err := images.New(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	o := server.Options{
		Images: cache, Store: db, PKI: testPKI(),
		Policy:       host.Policy{MaxAttempts: 3, InstallTimeout: time.Hour, CleanTimeout: time.Hour},
		CleanProfile: "agent-clean", HoldSeconds: 60, AgentAfter: "reboot", Logger: quiet,
		Auth: auth.NewService(db, nil, auth.ServiceOptions{Logger: quiet}),
	}
	for _, m := range mutate {
		m(&o)
	}
	ts := httptest.NewUnstartedServer(nil)
	e := &consoleEnv{t: tb, db: db, url: "https://" + ts.Listener.Addr().String()}
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
	pool := x509.NewCertPool()
	pool.AddCert(testPKI().CA)
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	leaf, err := x509.ParseCertificate(testPKI().TLS.Certificate[0])
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	e.spki = base64.StdEncoding.EncodeToString(sum[:])
	plain, hash := token.New()
	if err := db.CreateAPIToken(context.Background(), host.APIToken{Name: "test-" + plain[:8], Hash: hash, Role: "admin", CreatedAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
	e.admin = plain
	return e
}

// api sends an API request as the admin service token and decodes a JSON
// answer into out (if not nil); it returns the status.
func (e *consoleEnv) api(method, path string, body, out any) int {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		r = strings.NewReader(string(j))
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

// mustAPI is api that fails the test unless the status is want.
func (e *consoleEnv) mustAPI(want int, method, path string, body, out any) {
	e.t.Helper()
	var raw json.RawMessage
	if got := e.api(method, path, body, &raw); got != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, got, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// addUser creates a local user with grants (through POST /api/v1/users)
// whose password is testPassword.
func (e *consoleEnv) addUser(name string, grants ...auth.Grant) {
	e.t.Helper()
	e.mustAPI(201, "POST", "/api/v1/users", map[string]any{"name": name, "password": testPassword, "grants": grants}, nil)
}

// addProfiles creates the profiles rocky9 and agent-clean (once).
func (e *consoleEnv) addProfiles() {
	e.t.Helper()
	if e.api("GET", "/api/v1/profiles/rocky9", nil, nil) == 200 {
		return
	}
	e.mustAPI(201, "POST", "/api/v1/profiles", map[string]any{"name": "rocky9",
		"kernel": "https://mirror.example/rocky9/vmlinuz", "initrds": []string{"https://mirror.example/rocky9/initrd.img"},
		"cmdline": "inst.repo=https://mirror.example/rocky9 console=ttyS0", "installer": "kickstart"}, nil)
	e.mustAPI(201, "POST", "/api/v1/profiles", map[string]any{"name": "agent-clean",
		"kernel": "https://10.0.2.100:8443/files/vmlinuz", "initrds": []string{"https://10.0.2.100:8443/files/agent.cpio.gz"},
		"installer": "none", "clean_method": "zero"}, nil)
}

// addHost registers a host with the rocky9 profile and labels (may be nil)
// and returns its boot token.
func (e *consoleEnv) addHost(name, mac, ipv4 string, labels map[string]string) string {
	e.t.Helper()
	e.addProfiles()
	e.mustAPI(201, "POST", "/api/v1/hosts", map[string]any{"name": name, "macs": []string{mac},
		"ipv4": ipv4, "gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}, "profile": "rocky9", "labels": labels}, nil)
	var tok struct{ Token string }
	e.mustAPI(200, "POST", "/api/v1/hosts/"+name+"/boot-token", nil, &tok)
	return tok.Token
}

// boot fetches the stage-1 script as iPXE does (HTTP Basic name + boot
// token) and returns the status and script.
func (e *consoleEnv) boot(name, tok, mac string) (int, string) {
	e.t.Helper()
	q := url.Values{"mac": {mac}, "uuid": {"4c4c4544-0000-1111-2222-333344445555"}, "serial": {"SN-" + name},
		"arch": {"x86_64"}, "platform": {"efi"}}
	req, _ := http.NewRequest("GET", e.url+"/boot/v1/script?"+q.Encode(), nil)
	req.SetBasicAuth(name, tok)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("boot %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// callback posts an installer report to u (taken from a served script with
// callbackURL).
func (e *consoleEnv) callback(u, body string) int {
	e.t.Helper()
	resp, err := e.client.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatalf("callback: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// callbackURL extracts bootpilot.callback= from a served script.
func callbackURL(tb testing.TB, script string) string {
	tb.Helper()
	i := strings.Index(script, "bootpilot.callback=")
	if i < 0 {
		tb.Fatalf("no bootpilot.callback in script:\n%s", script)
	}
	rest := script[i+len("bootpilot.callback="):]
	if j := strings.IndexAny(rest, " \n"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// session is a plain HTTP client logged in to the console (a cookie jar
// holding the session cookie); requests carry no Origin, as a non-browser
// client.
type session struct {
	e *consoleEnv
	c *http.Client
}

// httpLogin logs user in through POST /login and returns the session.
func (e *consoleEnv) httpLogin(user, password string) *session {
	e.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := *e.client
	c.Jar = jar
	resp, err := c.PostForm(e.url+"/login", url.Values{"username": {user}, "password": {password}, "next": {"/hosts"}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login %s: status %d, want 303", user, resp.StatusCode)
	}
	return &session{e: e, c: &c}
}

// get fetches path and returns the status, headers and body.
func (s *session) get(path string, hdr ...string) (int, http.Header, string) {
	s.e.t.Helper()
	req, _ := http.NewRequest("GET", s.e.url+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return s.do(req)
}

// post posts form to path and returns the status, headers and body.
func (s *session) post(path string, form url.Values) (int, http.Header, string) {
	s.e.t.Helper()
	req, _ := http.NewRequest("POST", s.e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return s.do(req)
}

func (s *session) do(req *http.Request) (int, http.Header, string) {
	s.e.t.Helper()
	resp, err := s.c.Do(req)
	if err != nil {
		s.e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// browser is a headless Chromium tab on a consoleEnv.
type browser struct {
	t   *testing.T
	e   *consoleEnv
	ctx context.Context

	mu     sync.Mutex
	errors []string // console errors, exceptions, CSP violations
	allow  []string // substrings of expected errors
}

// chromium returns Chromium's path, or calls testenv.Missing.
func chromium(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{os.Getenv("BOOTPILOT_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	testenv.Missing(tb, "chromium (Debian package chromium) not installed")
	return ""
}

// newBrowser starts a headless Chromium that trusts e's certificate. The
// test fails (at its end) on any uncaught exception, console error or
// Content-Security-Policy violation, except those allowed by allowError.
func newBrowser(t *testing.T, e *consoleEnv) *browser {
	t.Helper()
	opts := append([]chromedp.ExecAllocatorOption{}, chromedp.DefaultExecAllocatorOptions[:]...)
	opts = append(opts,
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", e.spki),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	b := &browser{t: t, e: e, ctx: ctx}
	t.Cleanup(func() {
		cancelB()
		cancelA()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, m := range b.errors {
			t.Errorf("browser: %s", m)
		}
	})
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
			b.record("exception: " + msg)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.record("console." + string(ev.Type) + ": " + strings.Join(parts, " "))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError || strings.Contains(ev.Entry.Text, "Content Security Policy") {
				b.record("log " + string(ev.Entry.Source) + ": " + ev.Entry.Text + " " + ev.Entry.URL)
			}
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, runtime.Enable, cdp.Empty{})
		return err
	})); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// allowError lets an expected browser error containing substr pass (a
// deliberate 403 the test provokes, say).
func (b *browser) allowError(substr string) {
	b.mu.Lock()
	b.allow = append(b.allow, substr)
	b.mu.Unlock()
}

func (b *browser) record(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range b.allow {
		if strings.Contains(msg, a) {
			return
		}
	}
	b.errors = append(b.errors, msg)
}

// do runs actions with a time limit, failing the test on error.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// navigate opens path on the server.
func (b *browser) navigate(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.e.url + path))
}

// location returns the current page's URL.
func (b *browser) location() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.t.Fatalf("browser: location: %v", err)
	}
	return loc
}

// click clicks the element sel (a CSS selector) once it is visible.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// submit clicks sel, a button that submits a form and so navigates, and
// waits for a page whose path (and query) starts with want to load. A
// click that navigates can fail with "Inspected target navigated or
// closed": that is the navigation, so the location is polled instead.
func (b *browser) submit(sel, want string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
	cancel()
	if err != nil && !strings.Contains(err.Error(), "navigated or closed") {
		b.t.Fatalf("browser: click %s: %v", sel, err)
	}
	b.waitFor("a page at "+want, 15*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
		defer cancel()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			return false
		}
		state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState`))
		if err != nil {
			return false
		}
		u, err := url.Parse(loc)
		return err == nil && strings.HasPrefix(u.RequestURI(), want) && state == "complete"
	})
}

// login logs user in through the real /login form.
func (b *browser) login(user, password string) {
	b.t.Helper()
	b.navigate("/login")
	b.do(
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
	)
	b.submit(`form[action="/login"] button[type=submit]`, "/hosts")
}

// typeInto types text into the element sel (a CSS selector).
func (b *browser) typeInto(sel, text string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), text))
}

// eval evaluates a JavaScript expression and returns its value (a
// promise's, when it is one).
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("browser: evaluate %s: %v", js, err)
	}
	return v
}

// text returns the text content of the first element matching sel (a CSS
// selector), "" when there is none.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(function(){var e=document.querySelector(%q);return e?e.textContent:""})()`, sel))
}

// texts returns the text content of every element matching sel.
func (b *browser) texts(sel string) []string {
	b.t.Helper()
	return eval[[]string](b, fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(function(e){return e.textContent.trim()})`, sel))
}

// waitFor polls cond every 200 ms until it holds or timeout passes (then
// the test fails naming what).
func (b *browser) waitFor(what string, timeout time.Duration, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitText polls until the text of the element matching sel (a CSS
// selector) contains want.
func (b *browser) waitText(sel, want string, timeout time.Duration) {
	b.t.Helper()
	last := ""
	deadline := time.Now().Add(timeout)
	for {
		last = b.text(sel)
		if strings.Contains(last, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: timed out after %v waiting for %s to contain %q; last %q", timeout, sel, want, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cookie returns the browser's session cookie (for forged requests).
func (b *browser) cookie() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.e.url}})
	if err != nil {
		b.t.Fatalf("browser: cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "bootpilot_session" {
			return c.Value
		}
	}
	b.t.Fatal("browser: no session cookie")
	return ""
}

// screenshot saves a full-page PNG named name.png in the test's artifact
// directory and logs its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("browser: screenshot: %v", err)
	}
	dir := artifactDir(b.t)
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
	return p
}

// artifactDir is where a test keeps files worth looking at:
// BOOTPILOT_ARTIFACTS when set (CI), else t.ArtifactDir() (under
// -outputdir with go test -artifacts, else a temporary directory).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("BOOTPILOT_ARTIFACTS"); d != "" {
		d = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.ArtifactDir()
}
