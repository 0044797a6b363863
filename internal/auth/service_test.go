package auth_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

var ctx = context.Background()

// fakeDir is a directory in memory. The Service's rules (which user a name
// means, re-checks, what a refusal or an outage does) are the point here,
// not the LDAP protocol: the real directory client is tested against a real
// OpenLDAP/Samba AD in ldap_test.go.
type fakeDir struct {
	mu    sync.Mutex
	users map[string]fakeEntry
	down  bool
}

type fakeEntry struct {
	password string
	grants   []auth.Grant
}

func (d *fakeDir) set(name, pw string, grants ...auth.Grant) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.users == nil {
		d.users = map[string]fakeEntry{}
	}
	d.users[name] = fakeEntry{pw, grants}
}

func (d *fakeDir) Authenticate(_ context.Context, name, pw string) (auth.DirectoryUser, error) {
	u, err := d.Lookup(ctx, name)
	if err == nil && (pw == "" || d.users[name].password != pw) {
		return auth.DirectoryUser{}, fmt.Errorf("fake: bad password: %w", auth.ErrInvalidCredentials)
	}
	return u, err
}

func (d *fakeDir) Lookup(_ context.Context, name string) (auth.DirectoryUser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return auth.DirectoryUser{}, fmt.Errorf("fake: %w", auth.ErrDirectoryDown)
	}
	e, ok := d.users[name]
	if !ok {
		return auth.DirectoryUser{}, fmt.Errorf("fake: no such user: %w", auth.ErrInvalidCredentials)
	}
	return auth.DirectoryUser{Name: name, DN: "CN=" + name, Grants: e.grants}, nil
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	db    *store.DB
	s     *auth.Service
	clk   *clock
	dir   *fakeDir
	admin auth.Identity
}

const pw = "correct horse battery"

var meta = auth.Meta{ClientAddr: "192.0.2.7", RequestID: "req-1"}

// newEnv returns a Service over a real SQLite store, with a fake directory
// when dir is set, and a local admin "root".
func newEnv(t *testing.T, withDir bool, o auth.ServiceOptions) *env {
	t.Helper()
	e := &env{db: storetest.Open(t, store.DriverSQLite), clk: &clock{t: time.Now().UTC()}}
	o.Now = e.clk.now
	var dir auth.DirectoryService
	if withDir {
		e.dir = &fakeDir{}
		dir = e.dir
	}
	e.s = auth.NewService(e.db, dir, o)
	e.admin = auth.System
	if _, err := e.s.CreateUser(ctx, e.admin, auth.NewUser{Name: "root", Password: pw, Grants: []auth.Grant{{Role: auth.RoleAdmin}}}, meta); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) user(t *testing.T, name string, grants ...auth.Grant) auth.Identity {
	t.Helper()
	u, err := e.s.CreateUser(ctx, e.admin, auth.NewUser{Name: name, Password: pw, Grants: grants}, meta)
	if err != nil {
		t.Fatal(err)
	}
	return u.Identity()
}

func (e *env) login(t *testing.T, name string) auth.Session {
	t.Helper()
	s, err := e.s.Login(ctx, name, pw, meta)
	if err != nil {
		t.Fatalf("Login(%s): %v", name, err)
	}
	return s
}

func (e *env) events(t *testing.T, f auth.AuditFilter) []host.Record {
	t.Helper()
	evs, err := e.db.ListEvents(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func unauthorized(t *testing.T, e *env, what, bearer string) {
	t.Helper()
	if id, err := e.s.Authenticate(ctx, bearer); !errors.Is(err, host.ErrUnauthorized) {
		t.Errorf("Authenticate(%s) = %+v, %v; want ErrUnauthorized", what, id, err)
	}
}

// TestLoginSameError: a wrong password, an unknown user and a disabled user
// get the same error; the audit log has the true reasons, never passwords.
func TestLoginSameError(t *testing.T) {
	e := newEnv(t, false, auth.ServiceOptions{})
	e.user(t, "bob", auth.Grant{Role: auth.RoleViewer})
	e.user(t, "carol", auth.Grant{Role: auth.RoleViewer})
	yes := true
	if _, err := e.s.UpdateUser(ctx, e.admin, auth.SourceLocal, "carol", auth.UserUpdate{Disabled: &yes}, meta); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, tc := range []struct{ name, pw string }{{"bob", "wrong password!!"}, {"dave", pw}, {"carol", pw}, {"bob", ""}} {
		_, err := e.s.Login(ctx, tc.name, tc.pw, auth.Meta{ClientAddr: "192.0.2." + tc.name[:1]})
		if err != auth.ErrInvalidCredentials {
			t.Errorf("Login(%s) = %v, want exactly ErrInvalidCredentials", tc.name, err)
		}
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	evs := e.events(t, auth.AuditFilter{Action: "login-failed"})
	var got []string
	for _, r := range evs {
		got = append(got, r.Actor+" "+r.Reason)
		if r.Reason == pw || r.Reason == "wrong password!!" {
			t.Errorf("audit holds a password: %+v", r)
		}
	}
	want := []string{"local:bob wrong password", "unknown:dave unknown user", "local:carol user disabled", "local:bob wrong password"}
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("login-failed records = %q, want %q", got, want)
	}
	s := e.login(t, "bob")
	if s.Token == "" || s.User.PasswordHash != "" || !s.ExpiresAt.Equal(e.clk.now().Add(auth.DefaultSessionTTL)) {
		t.Errorf("session = %+v", s)
	}
	if evs := e.events(t, auth.AuditFilter{Action: "login"}); len(evs) != 1 || evs[0].Actor != "local:bob" || evs[0].ClientAddr != meta.ClientAddr || evs[0].RequestID != "req-1" {
		t.Errorf("login records = %+v", evs)
	}
}

// TestLoginThrottle: after the free failures a name must wait, even with
// the right password; a success clears it.
func TestLoginThrottle(t *testing.T) {
	e := newEnv(t, false, auth.ServiceOptions{})
	e.user(t, "bob", auth.Grant{Role: auth.RoleViewer})
	for i := range 5 {
		if _, err := e.s.Login(ctx, "bob", "wrong password!!", auth.Meta{ClientAddr: fmt.Sprintf("192.0.2.%d", i)}); err != auth.ErrInvalidCredentials {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	_, err := e.s.Login(ctx, "bob", "wrong password!!", auth.Meta{ClientAddr: "192.0.2.99"})
	if err != auth.ErrInvalidCredentials {
		t.Fatalf("6th failure: %v", err)
	}
	_, err = e.s.Login(ctx, "BOB", pw, auth.Meta{ClientAddr: "198.51.100.1"})
	var te *auth.ThrottledError
	if !errors.Is(err, auth.ErrThrottled) || !errors.As(err, &te) || te.Wait <= 0 || te.Wait > time.Second {
		t.Fatalf("Login while throttled = %v, want a ThrottledError of at most 1s", err)
	}
	e.clk.add(te.Wait)
	e.login(t, "bob")
	if _, err := e.s.Login(ctx, "bob", "wrong password!!", meta); err != auth.ErrInvalidCredentials {
		t.Errorf("failure after a success = %v, want not throttled", err)
	}
	if evs := e.events(t, auth.AuditFilter{Action: "login-failed"}); len(evs) != 8 || evs[1].Reason != "throttled" {
		t.Errorf("%d login-failed records, want 8 with the throttled one", len(evs))
	}
}

// TestSessionLifetime: a session works until it expires or logs out.
func TestSessionLifetime(t *testing.T) {
	e := newEnv(t, false, auth.ServiceOptions{SessionTTL: time.Hour})
	e.user(t, "bob", auth.Grant{Role: auth.RoleOperator, Hosts: "team=lab"})
	s := e.login(t, "bob")
	id, err := e.s.Authenticate(ctx, s.Token)
	if err != nil || id.Actor() != "local:bob" || id.Token != "" || !id.Can(auth.PermOperate, map[string]string{"team": "lab"}) {
		t.Fatalf("Authenticate(session) = %+v, %v", id, err)
	}
	e.clk.add(time.Hour)
	unauthorized(t, e, "expired session", s.Token)
	s2 := e.login(t, "bob")
	if err := e.s.Logout(ctx, s2.Token, meta); err != nil {
		t.Fatal(err)
	}
	unauthorized(t, e, "logged out session", s2.Token)
	if err := e.s.Logout(ctx, s2.Token, meta); !errors.Is(err, host.ErrUnauthorized) {
		t.Errorf("Logout(twice) = %v", err)
	}
	unauthorized(t, e, "garbage", "nope")
	unauthorized(t, e, "empty", "")
}

// TestTokens: personal tokens within the caller's grants, revocation,
// disabled owners, and no escalation.
func TestTokens(t *testing.T) {
	e := newEnv(t, false, auth.ServiceOptions{})
	lab := auth.Grant{Role: auth.RoleOperator, Hosts: "team=lab"}
	bob := e.user(t, "bob", lab)
	ed := e.user(t, "ed", auth.Grant{Role: auth.RoleEditor})
	bobID, err := e.s.Authenticate(ctx, e.login(t, "bob").Token)
	if err != nil {
		t.Fatal(err)
	}
	plain, tok, err := e.s.CreateToken(ctx, bobID, auth.TokenRequest{Name: "laptop"}, meta)
	if err != nil || plain == "" || tok.Kind != auth.TokenPersonal || tok.Owner != "local:bob" || !slices.Equal(tok.Grants, []auth.Grant{lab}) {
		t.Fatalf("CreateToken(personal) = %+v, %v", tok, err)
	}
	id, err := e.s.Authenticate(ctx, plain)
	if err != nil || id.Actor() != "local:bob" || id.Token != "laptop" {
		t.Errorf("Authenticate(personal) = %+v, %v", id, err)
	}
	// No escalation.
	for _, tc := range []struct {
		caller auth.Identity
		r      auth.TokenRequest
	}{
		{bob, auth.TokenRequest{Name: "x", Grants: []auth.Grant{{Role: auth.RoleAdmin}}}},
		{bob, auth.TokenRequest{Name: "x", Grants: []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=ops"}}}},
		{bob, auth.TokenRequest{Name: "x", Grants: []auth.Grant{{Role: auth.RoleOperator}}}},
		{bob, auth.TokenRequest{Name: "x", Grants: []auth.Grant{lab}, Service: true}},
		{ed, auth.TokenRequest{Name: "x", Grants: []auth.Grant{{Role: auth.RoleViewer}}, Service: true}},
	} {
		if _, _, err := e.s.CreateToken(ctx, tc.caller, tc.r, meta); !errors.Is(err, host.ErrForbidden) {
			t.Errorf("CreateToken(%s, %+v) = %v, want ErrForbidden", tc.caller.Actor(), tc.r, err)
		}
	}
	// A narrower personal token is fine.
	narrow := auth.Grant{Role: auth.RoleOperator, Hosts: "site=dc1,team=lab"}
	if _, _, err := e.s.CreateToken(ctx, bob, auth.TokenRequest{Name: "narrow", Grants: []auth.Grant{narrow}}, meta); err != nil {
		t.Errorf("CreateToken(narrower) = %v", err)
	}
	if _, _, err := e.s.CreateToken(ctx, bob, auth.TokenRequest{Name: "laptop"}, meta); !errors.Is(err, host.ErrConflict) {
		t.Errorf("CreateToken(same name) = %v, want ErrConflict", err)
	}
	if _, err := e.s.CreateUser(ctx, ed, auth.NewUser{Name: "eve", Password: pw}, meta); !errors.Is(err, host.ErrForbidden) {
		t.Errorf("CreateUser by an editor = %v, want ErrForbidden", err)
	}
	// Service tokens: admins only.
	splain, stok, err := e.s.CreateToken(ctx, e.admin, auth.TokenRequest{Name: "ci", Grants: []auth.Grant{lab}, Service: true}, meta)
	if err != nil {
		t.Fatal(err)
	}
	if sid, err := e.s.Authenticate(ctx, splain); err != nil || sid.Actor() != "token:ci" || !slices.Equal(sid.Grants, []auth.Grant{lab}) {
		t.Errorf("Authenticate(service) = %+v, %v", sid, err)
	}
	// Listing and revoking: own for users, all for admins.
	if ts, err := e.s.ListTokens(ctx, bob, false); err != nil || len(ts) != 2 {
		t.Errorf("ListTokens(bob) = %d, %v; want 2", len(ts), err)
	}
	if _, err := e.s.ListTokens(ctx, bob, true); !errors.Is(err, host.ErrForbidden) {
		t.Errorf("ListTokens(bob, all) = %v, want ErrForbidden", err)
	}
	if ts, err := e.s.ListTokens(ctx, e.admin, true); err != nil || len(ts) != 3 {
		t.Errorf("ListTokens(admin, all) = %d, %v; want 3", len(ts), err)
	}
	if err := e.s.RevokeToken(ctx, bob, stok.ID, meta); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("RevokeToken(bob, service) = %v, want ErrNotFound", err)
	}
	if err := e.s.RevokeToken(ctx, e.admin, stok.ID, meta); err != nil {
		t.Fatal(err)
	}
	unauthorized(t, e, "revoked service token", splain)
	// A disabled owner's session and tokens stop working.
	sess := e.login(t, "bob")
	yes := true
	if _, err := e.s.UpdateUser(ctx, e.admin, auth.SourceLocal, "bob", auth.UserUpdate{Disabled: &yes}, meta); err != nil {
		t.Fatal(err)
	}
	unauthorized(t, e, "disabled owner's token", plain)
	unauthorized(t, e, "disabled owner's session", sess.Token)
	no := false
	if _, err := e.s.UpdateUser(ctx, e.admin, auth.SourceLocal, "bob", auth.UserUpdate{Disabled: &no}, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Authenticate(ctx, plain); err != nil {
		t.Errorf("token after re-enabling: %v", err)
	}
	unauthorized(t, e, "session ended by disabling", sess.Token)
	// Losing the grant kills the personal token.
	none := []auth.Grant{{Role: auth.RoleViewer}}
	if _, err := e.s.UpdateUser(ctx, e.admin, auth.SourceLocal, "bob", auth.UserUpdate{Grants: &none}, meta); err != nil {
		t.Fatal(err)
	}
	unauthorized(t, e, "token whose owner lost the grant", plain)
	if err := e.s.RevokeToken(ctx, bob, tok.ID, meta); err != nil {
		t.Errorf("RevokeToken(own) = %v", err)
	}
	// Deleting the owner.
	if err := e.s.DeleteUser(ctx, e.admin, auth.SourceLocal, "bob", meta); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Login(ctx, "bob", pw, meta); err != auth.ErrInvalidCredentials {
		t.Errorf("Login(deleted) = %v", err)
	}
	// Every mutation was audited with the caller, address and subject.
	for _, tc := range []struct{ action, actor, subject string }{
		{"user-create", "system:bootpilot", "local:bob"},
		{"token-create", "local:bob", "token:local:bob/laptop"},
		{"token-create", "system:bootpilot", "token:ci"},
		{"token-revoke", "system:bootpilot", "token:ci"},
		{"token-revoke", "local:bob", "token:local:bob/laptop"},
		{"user-delete", "system:bootpilot", "local:bob"},
	} {
		found := false
		for _, r := range e.events(t, auth.AuditFilter{Action: tc.action, Actor: tc.actor}) {
			found = found || (r.Subject == tc.subject && r.ClientAddr == meta.ClientAddr && r.RequestID == meta.RequestID)
		}
		if !found {
			t.Errorf("no %s record by %s on %s", tc.action, tc.actor, tc.subject)
		}
	}
	var fields [][]string
	for _, r := range e.events(t, auth.AuditFilter{Action: "user-update"}) {
		fields = append(fields, r.Fields)
	}
	if want := [][]string{{"grants"}, {"disabled"}, {"disabled"}}; fmt.Sprint(fields) != fmt.Sprint(want) {
		t.Errorf("user-update fields = %v, want %v", fields, want)
	}
}

// TestDirectory: the directory wins a shared name, groups are re-read for
// tokens after RecheckEvery, an outage keeps the last grants.
func TestDirectory(t *testing.T) {
	e := newEnv(t, true, auth.ServiceOptions{})
	op := auth.Grant{Role: auth.RoleOperator}
	e.dir.set("alice", "alice's directory pw", op)
	s, err := e.s.Login(ctx, "alice", "alice's directory pw", meta)
	if err != nil || s.User.Source != auth.SourceLDAP || !slices.Equal(s.User.Grants, []auth.Grant{op}) {
		t.Fatalf("Login(directory) = %+v, %v", s, err)
	}
	alice, err := e.s.Authenticate(ctx, s.Token)
	if err != nil || alice.Actor() != "ldap:alice" {
		t.Fatalf("Authenticate = %+v, %v", alice, err)
	}
	plain, _, err := e.s.CreateToken(ctx, alice, auth.TokenRequest{Name: "ci"}, meta)
	if err != nil {
		t.Fatal(err)
	}
	// Outage: tokens keep the last known grants.
	e.dir.down = true
	e.clk.add(16 * time.Minute)
	if _, err := e.s.Authenticate(ctx, plain); err != nil {
		t.Errorf("token while the directory is down: %v", err)
	}
	if _, err := e.s.Login(ctx, "alice", "alice's directory pw", meta); !errors.Is(err, auth.ErrDirectoryDown) {
		t.Errorf("Login while down = %v, want ErrDirectoryDown", err)
	}
	// A local user never seen in the directory still logs in; root is one.
	e.login(t, "root")
	e.dir.down = false
	// Alice leaves the operators: her token dies at the next re-check.
	e.dir.set("alice", "alice's directory pw")
	if _, err := e.s.Authenticate(ctx, plain); !errors.Is(err, host.ErrUnauthorized) {
		t.Errorf("token after losing the group = %v, want ErrUnauthorized", err)
	}
	if u, _ := e.db.GetUser(ctx, auth.SourceLDAP, "alice"); u.Grants != nil || !u.CheckedAt.Equal(e.clk.now().Truncate(time.Microsecond)) {
		t.Errorf("alice after re-check = %+v", u)
	}
	// A name both local and in the directory is the directory's.
	e.user(t, "mallory", op)
	e.dir.set("mallory", "the directory's password", auth.Grant{Role: auth.RoleViewer})
	if _, err := e.s.Login(ctx, "mallory", pw, meta); err != auth.ErrInvalidCredentials {
		t.Errorf("Login(local password of a directory name) = %v, want ErrInvalidCredentials", err)
	}
	if s, err := e.s.Login(ctx, "mallory", "the directory's password", meta); err != nil || s.User.Source != auth.SourceLDAP {
		t.Errorf("Login(directory password) = %+v, %v", s.User, err)
	}
	// With PreferLocal, the local user.
	pl := auth.NewService(e.db, e.dir, auth.ServiceOptions{PreferLocal: true, Now: e.clk.now})
	if s, err := pl.Login(ctx, "mallory", pw, meta); err != nil || s.User.Source != auth.SourceLocal {
		t.Errorf("PreferLocal Login = %+v, %v", s.User, err)
	}
}
