package server_test

// End-to-end tests of login and operator identities through the real HTTPS
// API, against real directories: an OpenLDAP slapd per test and the
// package's one shared Samba AD DC (TestMain stops it). The server's
// operator service is built the way serve.go builds it: an --auth-config
// file (directorytest WriteConfig) read by auth.LoadConfig and
// auth.NewDirectory.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/auth/directorytest"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/server"
)

// recheckEvery is how often the tests' services re-read a directory user's
// groups for their sessions and tokens.
const recheckEvery = 15 * time.Minute

// invalidCredentials is the one body of every refused login.
const invalidCredentials = `{"error":"invalid credentials"}`

// logBuffer collects the server's log for tests that grep it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dirEnv is an env whose operator service logs users in against dir.
type dirEnv struct {
	*env
	dir *directorytest.Dir
	log *logBuffer
}

// newDirEnv starts a server on driver's database with dir as its
// directory, configured through an --auth-config file as serve.go does.
func newDirEnv(t *testing.T, driver string, dir *directorytest.Dir) *dirEnv {
	t.Helper()
	ac, err := auth.LoadConfig(dir.WriteConfig(t))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	d, err := auth.NewDirectory(ac.LDAP, ac.Grants)
	if err != nil {
		t.Fatalf("NewDirectory: %v", err)
	}
	db := storetest.Open(t, driver)
	lb := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnvDB(t, db, func(o *server.Options) {
		o.Logger = logger
		o.Auth = auth.NewService(db, d, auth.ServiceOptions{SessionTTL: ac.SessionTTL, PreferLocal: ac.PreferLocal,
			Now: o.Now, RecheckEvery: recheckEvery, Logger: logger})
	})
	return &dirEnv{env: e, dir: dir, log: lb}
}

// forEachDirectory runs f against a fresh OpenLDAP slapd and against the
// shared Samba AD DC.
func forEachDirectory(t *testing.T, f func(t *testing.T, dir *directorytest.Dir)) {
	t.Run("openldap", func(t *testing.T) { f(t, directorytest.StartSlapd(t)) })
	t.Run("ad", func(t *testing.T) { f(t, directorytest.SharedSambaAD(t)) })
}

var userSeq atomic.Int64

// newDirUser adds a user of the test's own to dir (the shared AD keeps its
// fixture users as described) in groups and returns the name and password.
// Names stay within AD's 20 characters.
func newDirUser(t *testing.T, dir *directorytest.Dir, prefix string, groups ...string) (string, string) {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d", prefix, time.Now().UnixNano()%100000, userSeq.Add(1))
	return name, dir.AddUser(t, name, groups...)
}

// call is one API request.
type call struct {
	method, path string
	body         any    // a string, or a value sent as JSON; nil: no body
	bearer       string // Authorization: Bearer
	cookie       string // the session cookie
	from         string // the client's loopback address; "": 127.0.0.1
	header       map[string]string
}

// reply is an API answer.
type reply struct {
	code   int
	body   string
	header http.Header
}

// send makes one request from c.from over a fresh connection.
func (e *env) send(c call) reply {
	e.t.Helper()
	var r io.Reader
	switch b := c.body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(c.method, e.url+c.path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "bootpilot_session", Value: c.cookie})
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	from := c.from
	if from == "" {
		from = "127.0.0.1"
	}
	tr := e.client.Transport.(*http.Transport).Clone()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	tr.DialContext = dialer.DialContext
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s from %s: %v", c.method, c.path, from, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, body: string(b), header: resp.Header}
}

// whoami is the answer of login and whoami.
type whoami struct {
	Token     string       `json:"token"`
	ExpiresAt *time.Time   `json:"expires_at"`
	User      string       `json:"user"`
	Source    auth.Source  `json:"source"`
	Grants    []auth.Grant `json:"grants"`
	TokenName string       `json:"token_name"`
}

// login posts a login from address from ("": 127.0.0.1).
func (e *env) login(from, user, password string) (reply, whoami) {
	e.t.Helper()
	r := e.send(call{method: "POST", path: "/api/v1/login", body: map[string]string{"username": user, "password": password}, from: from})
	var w whoami
	if r.code == 200 {
		if err := json.Unmarshal([]byte(r.body), &w); err != nil {
			e.t.Fatalf("login %q: decode %s: %v", user, r.body, err)
		}
	}
	return r, w
}

// mustLogin logs user in and returns the session token.
func (e *env) mustLogin(user, password string) whoami {
	e.t.Helper()
	r, w := e.login("", user, password)
	if r.code != 200 {
		e.t.Fatalf("login %s = %d %s, want 200", user, r.code, r.body)
	}
	return w
}

// whoamiOf asks GET /api/v1/whoami with bearer tok.
func (e *env) whoamiOf(tok string) (int, whoami) {
	e.t.Helper()
	r := e.send(call{method: "GET", path: "/api/v1/whoami", bearer: tok})
	var w whoami
	if r.code == 200 {
		json.Unmarshal([]byte(r.body), &w)
	}
	return r.code, w
}

// audit returns the newest audit records (up to 1000) as the env's admin.
func (e *env) audit(query string) []host.Record {
	e.t.Helper()
	var out struct{ Events []host.Record }
	e.mustDo(200, "GET", "/api/v1/audit?limit=1000&"+query, nil, &out)
	return out.Events
}

// keys returns the sorted keys of a JSON object.
func keys(t *testing.T, body string) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return slices.Sorted(maps.Keys(m))
}

// TestLoginDirectory: alice (bp-editors) logs in on both directories; the
// answer, the cookie, the token as bearer and as cookie, whoami, and the
// cross-origin refusal of cookie writes.
func TestLoginDirectory(t *testing.T) {
	forEachDirectory(t, func(t *testing.T, dir *directorytest.Dir) {
		e := newDirEnv(t, store.DriverSQLite, dir)
		r, a := e.login("", "alice", dir.Password("alice"))
		if r.code != 200 {
			t.Fatalf("login alice = %d %s, want 200", r.code, r.body)
		}
		if got, want := keys(t, r.body), []string{"expires_at", "grants", "source", "token", "user"}; !slices.Equal(got, want) {
			t.Errorf("login answer keys = %v, want %v", got, want)
		}
		wantExp := e.clock.Now().Add(auth.DefaultSessionTTL)
		if a.User != "alice" || a.Source != auth.SourceLDAP || a.Token == "" || a.ExpiresAt == nil || !a.ExpiresAt.Equal(wantExp) {
			t.Errorf("login answer = %s, want alice, ldap, a token, expiring at %s", r.body, wantExp)
		}
		if want := []auth.Grant{{Role: auth.RoleEditor}}; !slices.Equal(a.Grants, want) {
			t.Errorf("grants = %v, want %v", a.Grants, want)
		}
		var setCookie string
		for _, c := range r.header.Values("Set-Cookie") {
			if strings.HasPrefix(c, "bootpilot_session=") {
				setCookie = c
			}
		}
		for _, attr := range []string{"bootpilot_session=" + a.Token + ";", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
			if !strings.Contains(setCookie, attr) {
				t.Errorf("Set-Cookie %q lacks %q", setCookie, attr)
			}
		}

		// The token as a bearer: whoami has the login's shape, without the token.
		code, w := e.whoamiOf(a.Token)
		if code != 200 || w.User != "alice" || w.Source != auth.SourceLDAP || !slices.Equal(w.Grants, a.Grants) || w.Token != "" {
			t.Errorf("whoami (bearer) = %d %+v, want alice/ldap/%v", code, w, a.Grants)
		}
		if w.ExpiresAt == nil || !w.ExpiresAt.Equal(*a.ExpiresAt) {
			t.Errorf("whoami expires_at = %v, want the session's %v", w.ExpiresAt, a.ExpiresAt)
		}
		if code := e.send(call{method: "GET", path: "/api/v1/hosts", bearer: a.Token}).code; code != 200 {
			t.Errorf("GET /hosts (bearer) = %d, want 200", code)
		}

		// The token as the console's cookie: reads work.
		rc := e.send(call{method: "GET", path: "/api/v1/whoami", cookie: a.Token})
		if rc.code != 200 || !strings.Contains(rc.body, `"user":"alice"`) {
			t.Errorf("whoami (cookie) = %d %s, want alice", rc.code, rc.body)
		}
		// Cross-origin writes with the cookie are refused, before anything happens.
		for _, h := range []map[string]string{
			{"Sec-Fetch-Site": "cross-site"},
			{"Origin": "https://evil.example"},
		} {
			r := e.send(call{method: "POST", path: "/api/v1/tokens", body: map[string]string{"name": "csrf"}, cookie: a.Token, header: h})
			if r.code != 403 {
				t.Errorf("cross-origin POST /tokens with the cookie, %v = %d %s, want 403", h, r.code, r.body)
			}
			r = e.send(call{method: "POST", path: "/api/v1/logout", cookie: a.Token, header: h})
			if r.code != 403 {
				t.Errorf("cross-origin POST /logout with the cookie, %v = %d %s, want 403", h, r.code, r.body)
			}
		}
		var toks struct{ Tokens []auth.Token }
		if r := e.send(call{method: "GET", path: "/api/v1/tokens", bearer: a.Token}); r.code != 200 {
			t.Errorf("GET /tokens = %d %s", r.code, r.body)
		} else if json.Unmarshal([]byte(r.body), &toks); len(toks.Tokens) != 0 {
			t.Errorf("a refused cross-origin POST made tokens: %+v", toks.Tokens)
		}
		// Same-origin writes with the cookie work.
		r = e.send(call{method: "POST", path: "/api/v1/tokens", body: map[string]string{"name": "laptop"}, cookie: a.Token,
			header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": e.url}})
		if r.code != 201 {
			t.Errorf("same-origin POST /tokens with the cookie = %d %s, want 201", r.code, r.body)
		}
		if dir.Kind == directorytest.KindAD {
			// The user principal name is the same user.
			_, b := e.login("", "alice@example.test", dir.Password("alice"))
			if b.User != "alice" {
				t.Errorf("login alice@example.test: user %q, want alice", b.User)
			}
		}
		// Logout with the cookie ends the session and clears the cookie.
		r = e.send(call{method: "POST", path: "/api/v1/logout", cookie: a.Token, header: map[string]string{"Sec-Fetch-Site": "same-origin"}})
		if r.code != 204 || !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), "\n"), "bootpilot_session=;") {
			t.Errorf("logout = %d %v, want 204 clearing the cookie", r.code, r.header.Values("Set-Cookie"))
		}
		if code, _ := e.whoamiOf(a.Token); code != 401 {
			t.Errorf("whoami after logout = %d, want 401", code)
		}
	})
}

// TestLoginNestedGroupScopes: bob is operator@team=lab only through a
// nested group (lab-team in bp-lab-ops): he sees and reimages the lab host
// only; the editor alice may not reimage.
func TestLoginNestedGroupScopes(t *testing.T) {
	forEachDirectory(t, func(t *testing.T, dir *directorytest.Dir) {
		e := newDirEnv(t, store.DriverSQLite, dir)
		e.addProfiles()
		e.ensureMatrixHosts(host.StateReady)
		bob := e.mustLogin("bob", dir.Password("bob"))
		if want := []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}}; !slices.Equal(bob.Grants, want) {
			t.Fatalf("bob's grants = %v, want %v (through the nested group)", bob.Grants, want)
		}
		r := e.send(call{method: "GET", path: "/api/v1/hosts", bearer: bob.Token})
		var list struct{ Hosts []host.Host }
		json.Unmarshal([]byte(r.body), &list)
		var names []string
		for _, h := range list.Hosts {
			names = append(names, h.Name)
		}
		if r.code != 200 || !slices.Equal(names, []string{labHost}) {
			t.Errorf("GET /hosts as bob = %d %v, want only %s", r.code, names, labHost)
		}
		if r := e.send(call{method: "GET", path: "/api/v1/hosts/" + infraHost, bearer: bob.Token}); r.code != 404 {
			t.Errorf("GET /hosts/%s as bob = %d %s, want 404", infraHost, r.code, r.body)
		}
		if r := e.send(call{method: "POST", path: "/api/v1/hosts/" + infraHost + "/reimage", body: "{}", bearer: bob.Token}); r.code != 404 {
			t.Errorf("reimage %s as bob = %d %s, want 404", infraHost, r.code, r.body)
		}
		alice := e.mustLogin("alice", dir.Password("alice"))
		for _, name := range []string{labHost, infraHost} {
			if r := e.send(call{method: "POST", path: "/api/v1/hosts/" + name + "/reimage", body: "{}", bearer: alice.Token}); r.code != 403 {
				t.Errorf("reimage %s as the editor alice = %d %s, want 403", name, r.code, r.body)
			}
		}
		if r := e.send(call{method: "POST", path: "/api/v1/hosts/" + labHost + "/reimage", body: `{"reason":"nested"}`, bearer: bob.Token}); r.code != 200 {
			t.Errorf("reimage %s as bob = %d %s, want 200", labHost, r.code, r.body)
		}
		if st := e.host(labHost).State; st != host.StateReimage {
			t.Errorf("%s is %s after bob's reimage, want %s", labHost, st, host.StateReimage)
		}
		evs := e.audit("host=" + labHost + "&action=reimage")
		if len(evs) != 1 || evs[0].Actor != "ldap:bob" {
			t.Errorf("reimage events of %s = %+v, want one by ldap:bob", labHost, evs)
		}
	})
}

// TestLoginFailuresLookAlike: a disabled account, a wrong password, an
// unknown user and a user without grants get the same 401; each is in the
// audit log as login-failed with the client's address, and no password is
// in the audit log or the server's log.
func TestLoginFailuresLookAlike(t *testing.T) {
	forEachDirectory(t, func(t *testing.T, dir *directorytest.Dir) {
		e := newDirEnv(t, store.DriverSQLite, dir)
		wrong := "Wrong-Pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		cases := []struct{ from, user, password, why string }{
			{"127.0.0.11", "carol", dir.Password("carol"), "disabled account, right password"},
			{"127.0.0.12", "alice", wrong, "wrong password"},
			{"127.0.0.13", "nobody-here", wrong + "-2", "unknown user"},
			{"127.0.0.14", "erin", dir.Password("erin"), "no grants"},
			{"127.0.0.15", "alice", "", "empty password"},
		}
		for _, c := range cases {
			r, _ := e.login(c.from, c.user, c.password)
			if r.code != 401 || strings.TrimSpace(r.body) != invalidCredentials {
				t.Errorf("%s (%s) = %d %s, want 401 %s", c.user, c.why, r.code, r.body, invalidCredentials)
			}
			if len(r.header.Values("Set-Cookie")) != 0 {
				t.Errorf("%s (%s) set a cookie", c.user, c.why)
			}
		}
		evs := e.audit("action=login-failed")
		for _, c := range cases {
			found := slices.ContainsFunc(evs, func(ev host.Record) bool {
				return ev.ClientAddr == c.from && strings.HasSuffix(ev.Actor, ":"+c.user) && ev.RequestID != "" && ev.Reason != ""
			})
			if !found {
				t.Errorf("no login-failed event for %s from %s; events: %+v", c.user, c.from, evs)
			}
		}
		if n := len(e.audit("action=login")); n != 0 {
			t.Errorf("%d login events after failures only", n)
		}
		export := e.send(call{method: "GET", path: "/api/v1/audit?format=csv", bearer: e.admin}).body
		js := e.send(call{method: "GET", path: "/api/v1/audit?limit=1000", bearer: e.admin}).body
		for _, c := range cases {
			if c.password == "" {
				continue
			}
			for what, s := range map[string]string{"audit CSV": export, "audit JSON": js, "server log": e.log.String()} {
				if strings.Contains(s, c.password) {
					t.Errorf("the %s holds %s's password", what, c.user)
				}
			}
		}
	})
}

// TestLoginInjectionUsernames: user names that would change an unescaped
// LDAP filter, or that no directory should see, get 401 and never a
// session, even with alice's right password.
func TestLoginInjectionUsernames(t *testing.T) {
	forEachDirectory(t, func(t *testing.T, dir *directorytest.Dir) {
		e := newDirEnv(t, store.DriverSQLite, dir)
		names := []string{"*", "ali*", "*)(uid=*", "*)(sAMAccountName=*", "alice)(|(a=*", "admin)(|(a=*",
			"alice\x00", "alice\x00x", "\x00", "ålice", "alice\u200b", "\u0430lice", strings.Repeat("a", 300), "alice" + strings.Repeat(" ", 295)}
		for i, name := range names {
			r, _ := e.login(fmt.Sprintf("127.0.1.%d", i+1), name, dir.Password("alice"))
			if r.code != 401 || strings.TrimSpace(r.body) != invalidCredentials || len(r.header.Values("Set-Cookie")) != 0 {
				t.Errorf("login %q = %d %s, cookies %v; want 401 %s and no cookie", name, r.code, r.body, r.header.Values("Set-Cookie"), invalidCredentials)
			}
		}
		if evs := e.audit("action=login"); len(evs) != 0 {
			t.Errorf("injection names made sessions: %+v", evs)
		}
		if n := len(e.audit("action=login-failed")); n != len(names) {
			t.Errorf("%d login-failed events, want %d", n, len(names))
		}
		// The directory still answers: alice herself logs in.
		e.mustLogin("alice", dir.Password("alice"))
	})
}

// retryAfter returns r's Retry-After in seconds, failing unless it is a
// positive number.
func retryAfter(t *testing.T, r reply) time.Duration {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
	return time.Duration(n) * time.Second
}

// TestLoginThrottling: failures for one user name, and failures from one
// address over many names, are throttled (429 with Retry-After) even for
// the right password; after the wait the right password works. The
// throttle is the operator service's, so one directory (OpenLDAP) does.
func TestLoginThrottling(t *testing.T) {
	e := newDirEnv(t, store.DriverSQLite, directorytest.StartSlapd(t))
	pw := e.dir.Password("alice")

	// One user name, failures from many addresses.
	for i := range 5 {
		if r, _ := e.login(fmt.Sprintf("127.0.2.%d", i+1), "alice", "wrong"); r.code != 401 {
			t.Fatalf("failure %d = %d %s, want 401", i+1, r.code, r.body)
		}
	}
	r, _ := e.login("127.0.2.10", "alice", "wrong")
	if r.code != 401 {
		t.Fatalf("failure 6 = %d %s, want 401 (the 6th is still checked)", r.code, r.body)
	}
	r, _ = e.login("127.0.2.11", "alice", "wrong")
	if r.code != 429 {
		t.Fatalf("attempt after 6 failures = %d %s, want 429", r.code, r.body)
	}
	wait := retryAfter(t, r)
	r, _ = e.login("127.0.2.12", "ALICE", pw)
	if r.code != 429 {
		t.Fatalf("right password while throttled = %d %s, want 429", r.code, r.body)
	}
	retryAfter(t, r)
	e.clock.Add(wait)
	if r, _ := e.login("127.0.2.13", "alice", pw); r.code != 200 {
		t.Fatalf("right password after Retry-After = %d %s, want 200", r.code, r.body)
	}
	if evs := e.audit("action=login-failed"); !slices.ContainsFunc(evs, func(ev host.Record) bool { return ev.Reason == "throttled" && ev.ClientAddr == "127.0.2.12" }) {
		t.Errorf("the throttled attempt is not audited: %+v", evs)
	}

	// One address, failures over many user names.
	const addr = "127.0.3.1"
	for i := range 6 {
		if r, _ := e.login(addr, fmt.Sprintf("guess%d", i), "wrong"); r.code != 401 {
			t.Fatalf("guess %d = %d %s, want 401", i, r.code, r.body)
		}
	}
	r, _ = e.login(addr, "guess-next", "wrong")
	if r.code != 429 {
		t.Fatalf("7th name from one address = %d %s, want 429", r.code, r.body)
	}
	wait = retryAfter(t, r)
	if r, _ := e.login(addr, "bob", e.dir.Password("bob")); r.code != 429 {
		t.Fatalf("bob's right password from the throttled address = %d %s, want 429", r.code, r.body)
	}
	if r, _ := e.login("127.0.3.2", "bob", e.dir.Password("bob")); r.code != 200 {
		t.Errorf("bob from another address = %d %s, want 200", r.code, r.body)
	}
	e.clock.Add(wait)
	if r, _ := e.login(addr, "bob", e.dir.Password("bob")); r.code != 200 {
		t.Errorf("bob from the address after Retry-After = %d %s, want 200", r.code, r.body)
	}
}

// TestLoginDirectoryDown: with the directory stopped a login is 503 with a
// clear message, sessions and tokens already issued keep working (also
// past the re-check interval), and hosts still boot; after a restart
// logins work again.
func TestLoginDirectoryDown(t *testing.T) {
	forEachDirectory(t, func(t *testing.T, dir *directorytest.Dir) {
		e := newDirEnv(t, store.DriverSQLite, dir)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{}, nil)
		alice := e.mustLogin("alice", dir.Password("alice"))
		var pt struct{ Token string }
		if r := e.send(call{method: "POST", path: "/api/v1/tokens", body: map[string]string{"name": "laptop"}, bearer: alice.Token}); r.code != 201 {
			t.Fatalf("create token = %d %s", r.code, r.body)
		} else {
			json.Unmarshal([]byte(r.body), &pt)
		}

		dir.Stop()
		t.Cleanup(func() { dir.Restart(t) }) // the shared AD outlives this test
		r, _ := e.login("", "bob", dir.Password("bob"))
		if r.code != 503 || !strings.Contains(r.body, "directory cannot be reached") {
			t.Errorf("login with the directory down = %d %s, want 503 saying the directory cannot be reached", r.code, r.body)
		}
		if len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("login with the directory down set a cookie")
		}
		for _, step := range []time.Duration{0, recheckEvery + time.Minute} {
			e.clock.Add(step)
			for what, bearer := range map[string]string{"session": alice.Token, "personal token": pt.Token} {
				if r := e.send(call{method: "GET", path: "/api/v1/hosts", bearer: bearer}); r.code != 200 {
					t.Errorf("GET /hosts with alice's %s, directory down, %s later = %d %s, want 200", what, step, r.code, r.body)
				}
			}
		}
		if code, script := e.boot("node01", tok, mac1); code != 200 || !strings.Contains(script, "kernel") {
			t.Errorf("boot with the directory down = %d %q, want 200 with the install kernel", code, script)
		}
		if evs := e.audit("action=login-failed"); len(evs) != 1 || !strings.Contains(evs[0].Reason, "directory down") {
			t.Errorf("login-failed events = %+v, want one saying the directory is down", evs)
		}

		dir.Restart(t)
		if r, _ := e.login("", "bob", dir.Password("bob")); r.code != 200 {
			t.Errorf("login after restart = %d %s, want 200", r.code, r.body)
		}
	})
}

// TestSessionTokenExpiryAndRevocation: personal tokens made through the API
// stop working when they expire or are revoked, and a session when its
// time is up.
func TestSessionTokenExpiryAndRevocation(t *testing.T) {
	e := newDirEnv(t, store.DriverSQLite, directorytest.StartSlapd(t))
	alice := e.mustLogin("alice", e.dir.Password("alice"))
	mk := func(body map[string]string) (string, auth.Token) {
		t.Helper()
		r := e.send(call{method: "POST", path: "/api/v1/tokens", body: body, bearer: alice.Token})
		var out struct {
			Token string
			Info  auth.Token
		}
		if r.code != 201 || json.Unmarshal([]byte(r.body), &out) != nil || out.Token == "" {
			t.Fatalf("create token %v = %d %s, want 201", body, r.code, r.body)
		}
		return out.Token, out.Info
	}
	short, info := mk(map[string]string{"name": "short", "expires_in": "1h"})
	if want := e.clock.Now().Add(time.Hour); !info.ExpiresAt.Equal(want) {
		t.Errorf("expires_at = %v, want %v", info.ExpiresAt, want)
	}
	forever, finfo := mk(map[string]string{"name": "forever"})
	code, w := e.whoamiOf(short)
	if code != 200 || w.User != "alice" || w.TokenName != "short" || w.ExpiresAt == nil || !w.ExpiresAt.Equal(info.ExpiresAt) {
		t.Errorf("whoami with the token = %d %+v, want alice, token short, expiring %v", code, w, info.ExpiresAt)
	}
	e.clock.Add(59 * time.Minute)
	if code, _ := e.whoamiOf(short); code != 200 {
		t.Errorf("token a minute before expiry = %d, want 200", code)
	}
	e.clock.Add(time.Minute)
	if code, _ := e.whoamiOf(short); code != 401 {
		t.Errorf("token at its expiry = %d, want 401", code)
	}
	if code, _ := e.whoamiOf(forever); code != 200 {
		t.Errorf("token without expiry = %d, want 200", code)
	}
	if r := e.send(call{method: "DELETE", path: "/api/v1/tokens/" + strconv.FormatInt(finfo.ID, 10), bearer: alice.Token}); r.code != 204 {
		t.Fatalf("revoke = %d %s, want 204", r.code, r.body)
	}
	if code, _ := e.whoamiOf(forever); code != 401 {
		t.Errorf("revoked token = %d, want 401", code)
	}
	if code, _ := e.whoamiOf(alice.Token); code != 200 {
		t.Errorf("the session after revoking a token = %d, want 200", code)
	}
	e.clock.Add(auth.DefaultSessionTTL - time.Hour)
	if code, _ := e.whoamiOf(alice.Token); code != 401 {
		t.Errorf("the session after its %s = %d, want 401", auth.DefaultSessionTTL, code)
	}
}

// TestDirectoryTokenLosesGroup: a directory user's personal token follows
// the directory once the groups are re-read (RecheckEvery): losing one
// group takes that grant away (403), losing the last or being disabled
// ends the token (401).
func TestDirectoryTokenLosesGroup(t *testing.T) {
	forEachDirectory(t, func(t *testing.T, dir *directorytest.Dir) {
		e := newDirEnv(t, store.DriverSQLite, dir)
		e.addProfiles()
		e.ensureMatrixHosts(host.StateReady)
		name, pw := newDirUser(t, dir, "lg", "bp-editors", "lab-team")
		s := e.mustLogin(name, pw)
		want := []auth.Grant{{Role: auth.RoleEditor}, {Role: auth.RoleOperator, Hosts: "team=lab"}}
		if !sameGrants(s.Grants, want) {
			t.Fatalf("%s's grants = %v, want %v", name, s.Grants, want)
		}
		var pt struct{ Token string }
		r := e.send(call{method: "POST", path: "/api/v1/tokens", body: map[string]string{"name": "laptop"}, bearer: s.Token})
		if r.code != 201 || json.Unmarshal([]byte(r.body), &pt) != nil {
			t.Fatalf("create token = %d %s", r.code, r.body)
		}
		edit := func() int {
			return e.send(call{method: "PATCH", path: "/api/v1/hosts/" + infraHost, body: `{"domain":"example.org"}`, bearer: pt.Token}).code
		}
		operate := func() int {
			return e.send(call{method: "POST", path: "/api/v1/hosts/" + labHost + "/hold", body: `{}`, bearer: pt.Token}).code
		}
		if c := edit(); c != 200 {
			t.Fatalf("edit with the token = %d, want 200", c)
		}

		dir.RemoveFromGroup(t, name, "bp-editors")
		if c := edit(); c != 200 {
			t.Errorf("edit right after leaving bp-editors = %d, want 200 (groups are re-read every %s)", c, recheckEvery)
		}
		e.clock.Add(recheckEvery)
		if c := edit(); c != 403 {
			t.Errorf("edit after leaving bp-editors and the re-check = %d, want 403", c)
		}
		if c := operate(); c != 200 {
			t.Errorf("hold %s (operator@team=lab still held) = %d, want 200", labHost, c)
		}
		code, w := e.whoamiOf(pt.Token)
		if want := []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}}; code != 200 || !slices.Equal(w.Grants, want) {
			t.Errorf("whoami = %d %v, want %v", code, w.Grants, want)
		}

		dir.RemoveFromGroup(t, name, "lab-team")
		e.clock.Add(recheckEvery)
		for what, bearer := range map[string]string{"token": pt.Token, "session": s.Token} {
			if code, _ := e.whoamiOf(bearer); code != 401 {
				t.Errorf("%s without any group = %d, want 401", what, code)
			}
		}

		// Disabled in the directory: the token dies at the next re-check.
		name2, pw2 := newDirUser(t, dir, "ld", "bp-editors")
		s2 := e.mustLogin(name2, pw2)
		dir.Disable(t, name2)
		e.clock.Add(recheckEvery)
		if code, _ := e.whoamiOf(s2.Token); code != 401 {
			t.Errorf("session of a disabled user = %d, want 401", code)
		}
		if r, _ := e.login("", name2, pw2); r.code != 401 {
			t.Errorf("login of a disabled user = %d %s, want 401", r.code, r.body)
		}
	})
}

// sameGrants compares grant sets regardless of order.
func sameGrants(a, b []auth.Grant) bool {
	if len(a) != len(b) {
		return false
	}
	for _, g := range a {
		if !slices.Contains(b, g) {
			return false
		}
	}
	return true
}

// TestLoginLocalUsers: an admin makes a local user who logs in as local; a
// name both local and in the directory is the directory's; with the
// directory down a purely local user still logs in, a name the directory
// owns does not.
func TestLoginLocalUsers(t *testing.T) {
	e := newDirEnv(t, store.DriverSQLite, directorytest.StartSlapd(t))
	const localPW = "correct horse battery staple"
	e.mustDo(201, "POST", "/api/v1/users", map[string]any{"name": "zed", "password": localPW, "grants": []auth.Grant{{Role: auth.RoleViewer}}}, nil)
	r, z := e.login("", "zed", localPW)
	if r.code != 200 || z.User != "zed" || z.Source != auth.SourceLocal || !slices.Equal(z.Grants, []auth.Grant{{Role: auth.RoleViewer}}) {
		t.Errorf("login zed = %d %s, want 200 local viewer", r.code, r.body)
	}
	if code, w := e.whoamiOf(z.Token); code != 200 || w.Source != auth.SourceLocal {
		t.Errorf("whoami zed = %d %+v, want local", code, w)
	}

	// alice is local too: the directory wins.
	e.mustDo(201, "POST", "/api/v1/users", map[string]any{"name": "alice", "password": localPW, "grants": []auth.Grant{{Role: auth.RoleAdmin}}}, nil)
	r, a := e.login("", "alice", e.dir.Password("alice"))
	if r.code != 200 || a.Source != auth.SourceLDAP || !slices.Equal(a.Grants, []auth.Grant{{Role: auth.RoleEditor}}) {
		t.Errorf("login alice (directory password) = %d %s, want the directory's alice", r.code, r.body)
	}
	if r, _ := e.login("", "alice", localPW); r.code != 401 || strings.TrimSpace(r.body) != invalidCredentials {
		t.Errorf("login alice with the local password = %d %s, want 401", r.code, r.body)
	}

	e.dir.Stop()
	if r, _ := e.login("", "zed", localPW); r.code != 200 {
		t.Errorf("local zed with the directory down = %d %s, want 200", r.code, r.body)
	}
	if r, _ := e.login("", "alice", localPW); r.code != 503 {
		t.Errorf("local alice (a directory name) with the directory down = %d %s, want 503", r.code, r.body)
	}
}

// TestIdentityAudit: every identity change through the API is in GET
// /api/v1/audit with its actor, client address and request id, on every
// database; the CSV export has a header and defuses formula-looking cells.
func TestIdentityAudit(t *testing.T) {
	dir := directorytest.StartSlapd(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newDirEnv(t, driver, dir)
		e.addProfiles()
		e.ensureMatrixHosts(host.StateReady)
		const from = "127.0.4.7"
		rid := func(s string) map[string]string { return map[string]string{"X-Request-ID": driver + "-" + s} }
		do := func(want int, c call, rq string) string {
			t.Helper()
			c.from, c.header = from, rid(rq)
			r := e.send(c)
			if r.code != want {
				t.Fatalf("%s %s = %d %s, want %d", c.method, c.path, r.code, r.body, want)
			}
			return r.body
		}
		login := map[string]string{"username": "alice", "password": dir.Password("alice")}
		var s whoami
		json.Unmarshal([]byte(do(200, call{method: "POST", path: "/api/v1/login", body: login}, "login")), &s)
		do(401, call{method: "POST", path: "/api/v1/login", body: map[string]string{"username": "alice", "password": "nope"}}, "login-failed")
		var tk struct{ Info auth.Token }
		json.Unmarshal([]byte(do(201, call{method: "POST", path: "/api/v1/tokens", body: map[string]string{"name": "laptop"}, bearer: s.Token}, "token-create")), &tk)
		do(204, call{method: "DELETE", path: "/api/v1/tokens/" + strconv.FormatInt(tk.Info.ID, 10), bearer: s.Token}, "token-revoke")
		do(204, call{method: "POST", path: "/api/v1/logout", bearer: s.Token}, "logout")
		admin := newServiceToken(t, e.db, "audit-admin", []auth.Grant{{Role: auth.RoleAdmin}})
		do(201, call{method: "POST", path: "/api/v1/users", body: map[string]any{"name": "yves", "password": "correct horse battery staple",
			"grants": []auth.Grant{{Role: auth.RoleViewer}}}, bearer: admin}, "user-create")
		do(200, call{method: "PATCH", path: "/api/v1/users/local/yves", body: `{"disabled":true}`, bearer: admin}, "user-update")
		do(204, call{method: "DELETE", path: "/api/v1/users/local/yves", bearer: admin}, "user-delete")
		bob := e.mustLogin("bob", dir.Password("bob"))
		do(200, call{method: "POST", path: "/api/v1/hosts/" + labHost + "/hold", body: `{"reason":"=cmd|' /C calc'!A0"}`, bearer: bob.Token}, "hold")

		evs := e.audit("")
		for _, c := range []struct{ kind, actor, subject string }{
			{"login", "ldap:alice", "ldap:alice"},
			{"login-failed", "unknown:alice", "unknown:alice"},
			{"token-create", "ldap:alice", "token:ldap:alice/laptop"},
			{"token-revoke", "ldap:alice", "token:ldap:alice/laptop"},
			{"logout", "ldap:alice", "ldap:alice"},
			{"user-create", "token:audit-admin", "local:yves"},
			{"user-update", "token:audit-admin", "local:yves"},
			{"user-delete", "token:audit-admin", "local:yves"},
		} {
			want := driver + "-" + c.kind
			i := slices.IndexFunc(evs, func(ev host.Record) bool { return ev.RequestID == want })
			if i < 0 {
				t.Errorf("no audit event with request id %s", want)
				continue
			}
			ev := evs[i]
			if ev.Kind() != c.kind || ev.Actor != c.actor || ev.Subject != c.subject || ev.ClientAddr != from {
				t.Errorf("event %s = %s by %s on %s from %s, want %s by %s on %s from %s",
					want, ev.Kind(), ev.Actor, ev.Subject, ev.ClientAddr, c.kind, c.actor, c.subject, from)
			}
		}

		r := e.send(call{method: "GET", path: "/api/v1/audit?format=csv", bearer: admin})
		if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
			t.Fatalf("CSV export = %d %s", r.code, r.header.Get("Content-Type"))
		}
		rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
		if err != nil || len(rows) < 2 {
			t.Fatalf("CSV export: %d rows, %v", len(rows), err)
		}
		if want := []string{"id", "time", "actor", "client_addr", "request_id", "host", "subject", "event", "from", "to", "attempt", "fields", "reason"}; !slices.Equal(rows[0], want) {
			t.Errorf("CSV header = %v, want %v", rows[0], want)
		}
		var hold []string
		for _, row := range rows[1:] {
			if row[4] == driver+"-hold" {
				hold = row
			}
			for i, cell := range row {
				if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
					t.Errorf("CSV cell %s = %q starts like a formula", rows[0][i], cell)
				}
			}
		}
		if hold == nil || hold[12] != "'=cmd|' /C calc'!A0" || hold[2] != "ldap:bob" || hold[3] != from {
			t.Errorf("hold row = %q, want ldap:bob from %s with the reason defused as '=cmd…", hold, from)
		}
	})
}

// TestAuditCSVRequestIDFormula: a caller chooses the X-Request-ID the
// audit log keeps (even an unauthenticated login does); in the CSV export
// it must not start like a formula.
func TestAuditCSVRequestIDFormula(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	r := e.send(call{method: "POST", path: "/api/v1/login", body: map[string]string{"username": "x", "password": "y"},
		header: map[string]string{"X-Request-ID": "-2-3"}})
	if r.code != 401 {
		t.Fatalf("login = %d %s, want 401", r.code, r.body)
	}
	r = e.send(call{method: "GET", path: "/api/v1/audit?format=csv", bearer: e.admin})
	rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("CSV export = %q, %v; want a header and one row", r.body, err)
	}
	if got := rows[1][4]; got != "'-2-3" {
		t.Errorf("request_id cell = %q, want '-2-3", got)
	}
}

// TestLoginCrossOrigin: a login posted by another site's page is refused
// (login CSRF would put the victim's browser in the attacker's session);
// the CLI, which sends neither Sec-Fetch-Site nor Origin, and the console
// itself log in.
func TestLoginCrossOrigin(t *testing.T) {
	e := newEnv(t, store.DriverSQLite)
	const pw = "correct horse battery staple"
	e.mustDo(201, "POST", "/api/v1/users", map[string]any{"name": "mallory", "password": pw, "grants": []auth.Grant{{Role: auth.RoleViewer}}}, nil)
	body := `{"username":"mallory","password":"` + pw + `"}`
	for _, h := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}} {
		r := e.send(call{method: "POST", path: "/api/v1/login", body: body, header: h})
		if r.code != 403 || len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("cross-origin login %v = %d %s %v, want 403 and no cookie", h, r.code, r.body, r.header.Values("Set-Cookie"))
		}
	}
	for _, h := range []map[string]string{nil, {"Sec-Fetch-Site": "same-origin", "Origin": e.url}} {
		if r := e.send(call{method: "POST", path: "/api/v1/login", body: body, header: h}); r.code != 200 {
			t.Errorf("login %v = %d %s, want 200", h, r.code, r.body)
		}
	}
}

// TestLoginThrottlingSpellings: a directory matches many spellings of one
// account (OpenLDAP folds case, fullwidth forms and spaces; AD also takes
// the user principal name), so the per-user throttle must count them as one
// name, or each spelling would bring its own free attempts.
func TestLoginThrottlingSpellings(t *testing.T) {
	e := newDirEnv(t, store.DriverSQLite, directorytest.StartSlapd(t))
	pw := e.dir.Password("alice")
	spellings := []string{"ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ", " alice", "alice  ", "alice@example.test"}
	// The premise: this directory takes a fullwidth spelling as alice.
	if _, w := e.login("127.0.5.1", "ａｌｉｃｅ", pw); w.User != "alice" {
		t.Fatalf("login ａｌｉｃｅ: user %q, want alice (the directory folds fullwidth forms)", w.User)
	}
	for i := range 6 {
		if r, _ := e.login(fmt.Sprintf("127.0.5.%d", 10+i), "alice", "wrong"); r.code != 401 {
			t.Fatalf("failure %d = %d %s, want 401", i+1, r.code, r.body)
		}
	}
	for i, name := range spellings {
		if r, _ := e.login(fmt.Sprintf("127.0.5.%d", 20+i), name, "wrong"); r.code != 429 {
			t.Errorf("login %q after 6 failures of alice = %d %s, want 429", name, r.code, r.body)
		}
	}
}
