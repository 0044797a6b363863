package console_test

// Plain HTTP tests of the import, profile, image, audit and admin pages:
// the real server over real HTTPS on loopback, on SQLite, driven with the
// session cookie a browser would hold (no browser here; the browser tier
// is in browser_test.go).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/server"
	"github.com/bootpilot/bootpilot/server/console"
)

// pagesEnv is a real server with local users of each role.
type pagesEnv struct {
	t      *testing.T
	db     *store.DB
	auth   *auth.Service
	url    string
	client *http.Client
	pages  map[string]string // every page rendered by get/post: path → body, for the page-wide checks
}

// pagesPassword is every test user's password.
const pagesPassword = "correct horse battery staple"

// newPagesEnv starts a server on SQLite with the local users viewer,
// operator, editor, auditor and admin (each with that role on every host)
// and the profile rocky9.
func newPagesEnv(t *testing.T) *pagesEnv {
	t.Helper()
	db := storetest.Open(t, store.DriverSQLite)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := auth.NewService(db, nil, auth.ServiceOptions{Logger: quiet})
	b, err := pki.Ensure(pki.FilesIn(t.TempDir()), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cache, err := images.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	e := &pagesEnv{t: t, db: db, auth: svc, url: "https://" + ts.Listener.Addr().String(), pages: map[string]string{}}
	srv, err := server.New(server.Options{Store: db, Auth: svc, PKI: b, ExternalURL: e.url, Images: cache,
		Policy: host.Policy{MaxAttempts: 3, InstallTimeout: time.Hour, CleanTimeout: time.Hour}, CleanProfile: "agent-clean",
		HoldSeconds: 60, AgentAfter: "reboot", Logger: quiet,
		ISO: func(w io.Writer, h host.Host, tok string) error {
			_, err := fmt.Fprintf(w, "ISO of %s\n", h.Name) // the token never leaves the builder
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv.Handler()
	ts.TLS = srv.TLSConfig()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(b.CA)
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, r := range auth.Roles {
		if _, err := svc.CreateUser(context.Background(), auth.System, auth.NewUser{Name: string(r), Password: pagesPassword,
			Grants: []auth.Grant{{Role: r}}}, auth.Meta{}); err != nil {
			t.Fatalf("CreateUser %s: %v", r, err)
		}
	}
	_, err = db.CreateProfile(context.Background(), host.Profile{Name: "rocky9", Kernel: "https://mirror.example/rocky9/vmlinuz",
		Initrds: []string{"https://mirror.example/rocky9/initrd.img"}, Cmdline: "inst.repo=https://mirror.example/rocky9",
		Installer: host.InstallerKickstart})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// login logs user in through the login form and returns the session cookie.
func (e *pagesEnv) login(user string) string {
	e.t.Helper()
	return e.loginPassword(user, pagesPassword)
}

func (e *pagesEnv) loginPassword(user, password string) string {
	e.t.Helper()
	resp, err := e.client.PostForm(e.url+"/login", url.Values{"username": {user}, "password": {password}, "next": {"/hosts"}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == console.SessionCookie && c.Value != "" {
			return c.Value
		}
	}
	e.t.Fatalf("login %s: %s, no session cookie", user, resp.Status)
	return ""
}

// do sends a request with the session cookie and returns the status and body.
func (e *pagesEnv) do(cookie, method, path, contentType string, body io.Reader) (int, string, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.AddCookie(&http.Cookie{Name: console.SessionCookie, Value: cookie})
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		e.checkPage(method+" "+path, resp.Header, string(b))
	}
	return resp.StatusCode, string(b), resp.Header
}

// get fetches a page.
func (e *pagesEnv) get(cookie, path string) (int, string) {
	e.t.Helper()
	code, body, _ := e.do(cookie, "GET", path, "", nil)
	return code, body
}

// post submits a form.
func (e *pagesEnv) post(cookie, path string, form url.Values) (int, string) {
	e.t.Helper()
	code, body, _ := e.do(cookie, "POST", path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	return code, body
}

// upload posts a multipart form with one file (field) and other fields.
func (e *pagesEnv) upload(cookie, path, field, filename string, content []byte, fields url.Values) (int, string) {
	e.t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, vs := range fields {
		for _, v := range vs {
			w.WriteField(k, v)
		}
	}
	fw, _ := w.CreateFormFile(field, filename)
	fw.Write(content)
	w.Close()
	code, body, _ := e.do(cookie, "POST", path, w.FormDataContentType(), &buf)
	return code, body
}

// Inline script, inline style and event-handler attributes: the CSP
// refuses them, so a page that has one is broken in a browser.
var (
	inlineScriptRE = regexp.MustCompile(`(?is)<script\b[^>]*>\s*[^<\s]`) // a script element with content
	scriptTagRE    = regexp.MustCompile(`(?is)<script\b([^>]*)>`)
	styleElemRE    = regexp.MustCompile(`(?i)<style\b`)
	styleAttrRE    = regexp.MustCompile(`(?i)<[^>]+\sstyle\s*=`)
	handlerAttrRE  = regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`)
	jsURLRE        = regexp.MustCompile(`(?i)(href|src|action)\s*=\s*["']?\s*javascript:`)
)

// checkPage fails the test when an HTML answer lacks the CSP or the
// framing refusal, or has inline script, style or event handlers.
func (e *pagesEnv) checkPage(what string, h http.Header, body string) {
	e.t.Helper()
	for _, p := range pageProblems(h, body) {
		e.t.Errorf("%s: %s", what, p)
	}
	e.pages[what] = body
}

// pageProblems lists what checkPage refuses in one answer.
func pageProblems(h http.Header, body string) []string {
	var out []string
	if got := h.Get("Content-Security-Policy"); got != console.CSP {
		out = append(out, fmt.Sprintf("Content-Security-Policy = %q, want %q", got, console.CSP))
	}
	if got := h.Get("X-Frame-Options"); got != "DENY" {
		out = append(out, fmt.Sprintf("X-Frame-Options = %q, want DENY", got))
	}
	for _, m := range scriptTagRE.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(m[1], "src=") {
			out = append(out, "script without src: "+m[0])
		}
	}
	for _, c := range []struct {
		re   *regexp.Regexp
		what string
	}{{inlineScriptRE, "inline script"}, {styleElemRE, "style element"}, {styleAttrRE, "style attribute"},
		{handlerAttrRE, "event-handler attribute"}, {jsURLRE, "javascript: URL"}} {
		if m := c.re.FindString(body); m != "" {
			out = append(out, fmt.Sprintf("%s: %.120s", c.what, m))
		}
	}
	return out
}

// TestPageProblemsCatchesInline proves the page-wide check finds what it
// looks for (a check that cannot fail proves nothing).
func TestPageProblemsCatchesInline(t *testing.T) {
	good := http.Header{"Content-Security-Policy": {console.CSP}, "X-Frame-Options": {"DENY"}}
	for _, body := range []string{
		`<script>alert(1)</script>`, `<div style="color:red">`, `<button onclick="x()">`, `<style>p{}</style>`,
		`<a href="javascript:alert(1)">`, `<script type="module">`, `<BUTTON
 ONCLICK='x()'>`,
	} {
		if got := pageProblems(good, body); len(got) == 0 {
			t.Errorf("pageProblems(%q) = none, want a problem", body)
		}
	}
	if got := pageProblems(http.Header{}, `<p>ok</p>`); len(got) != 2 {
		t.Errorf("pageProblems(no headers) = %q, want the CSP and X-Frame-Options", got)
	}
	ok := `<script src="/static/htmx.min.js"></script><a href="/x" data-confirm="d">x</a><p>one=two</p>`
	if got := pageProblems(good, ok); len(got) != 0 {
		t.Errorf("pageProblems(%q) = %q, want none", ok, got)
	}
}

// mustContain fails unless body contains every want.
func mustContain(t *testing.T, what, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("%s: no %q in:\n%s", what, w, clip(body))
		}
	}
}

// mustNotContain fails if body contains any of bad.
func mustNotContain(t *testing.T, what, body string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(body, b) {
			t.Errorf("%s: %q should not be there:\n%s", what, b, clip(body))
		}
	}
}

// clip keeps a failure message readable: the page's main element.
func clip(body string) string {
	if i := strings.Index(body, `<main id="main">`); i >= 0 {
		body = body[i:]
	}
	if len(body) > 4000 {
		body = body[:4000] + "…"
	}
	return body
}

// b64 is s in standard base64 (the apply form's csv field).
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// sha is the SHA-256 of s in hex (the apply form's digest field).
func sha(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}
