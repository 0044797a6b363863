package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/auth/directorytest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	directorytest.StopShared()
	os.Exit(code)
}

// backends are the real directories every directory test runs against.
var backends = []struct {
	name  string
	start func(testing.TB) *directorytest.Dir
}{
	{"openldap", directorytest.StartSlapd},
	{"ad", directorytest.SharedSambaAD},
}

// eachDirectory runs f against a slapd of its own and the shared Samba AD.
func eachDirectory(t *testing.T, f func(t *testing.T, d *directorytest.Dir)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.start(t)) })
	}
}

// mustDirectory is NewDirectory for c with d's fixture grants.
func mustDirectory(tb testing.TB, d *directorytest.Dir, c *auth.LDAPConfig) *auth.Directory {
	tb.Helper()
	dir, err := auth.NewDirectory(c, d.Grants())
	if err != nil {
		tb.Fatalf("NewDirectory: %v", err)
	}
	return dir
}

// closedURL returns an ldaps URL on a loopback port nobody listens on.
func closedURL(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ldaps://" + addr
}

func grantStrings(gs []auth.Grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.String())
	}
	slices.Sort(out)
	return out
}

func TestAuthenticate(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		dir := mustDirectory(t, d, d.LDAPConfig())
		tests := []struct {
			login, user string // login name, fixture user (password)
			wantGrants  []string
		}{
			{"alice", "alice", []string{"editor"}},
			{"ALICE", "alice", []string{"editor"}},        // directories match names case-insensitively; the name is the stored one
			{"bob", "bob", []string{"operator@team=lab"}}, // bob → lab-team → bp-lab-ops: nested
			{"dave", "dave", []string{"auditor"}},
			{"erin", "erin", nil},
		}
		if d.Kind == directorytest.KindAD {
			tests = append(tests, struct {
				login, user string
				wantGrants  []string
			}{"alice@example.test", "alice", []string{"editor"}})
		}
		for _, tt := range tests {
			u, err := dir.Authenticate(context.Background(), tt.login, d.Password(tt.user))
			if err != nil {
				t.Errorf("Authenticate(%q) error: %v", tt.login, err)
				continue
			}
			if u.Name != tt.user {
				t.Errorf("Authenticate(%q).Name = %q, want %q", tt.login, u.Name, tt.user)
			}
			if !strings.EqualFold(u.DN, d.UserDN(tt.user)) {
				t.Errorf("Authenticate(%q).DN = %q, want %q", tt.login, u.DN, d.UserDN(tt.user))
			}
			if got := grantStrings(u.Grants); !slices.Equal(got, tt.wantGrants) {
				t.Errorf("Authenticate(%q).Grants = %v, want %v (groups %v)", tt.login, got, tt.wantGrants, u.Groups)
			}
		}
	})
}

// TestAuthenticateNestedGroups shows bob's groups hold both lab-team and,
// through it, bp-lab-ops.
func TestAuthenticateNestedGroups(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		u, err := mustDirectory(t, d, d.LDAPConfig()).Authenticate(context.Background(), "bob", d.Password("bob"))
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []string{"lab-team", "bp-lab-ops"} {
			if !slices.ContainsFunc(u.Groups, func(s string) bool { return strings.EqualFold(s, d.Group(g)) }) {
				t.Errorf("bob's groups %v lack %s", u.Groups, d.Group(g))
			}
		}
	})
}

// TestAuthenticateUPNFilter uses the documented AD filter naming both
// sAMAccountName and userPrincipalName: both logins are one identity.
func TestAuthenticateUPNFilter(t *testing.T) {
	d := directorytest.SharedSambaAD(t)
	c := d.LDAPConfig()
	c.UserFilter = "(&(objectClass=user)(|(sAMAccountName={username})(userPrincipalName={username})))"
	dir := mustDirectory(t, d, c)
	for _, login := range []string{"bob", "bob@example.test", "BOB@EXAMPLE.TEST"} {
		u, err := dir.Authenticate(context.Background(), login, d.Password("bob"))
		if err != nil {
			t.Errorf("Authenticate(%q): %v", login, err)
			continue
		}
		if u.Name != "bob" || !slices.Equal(grantStrings(u.Grants), []string{"operator@team=lab"}) {
			t.Errorf("Authenticate(%q) = %q %v, want bob [operator@team=lab]", login, u.Name, u.Grants)
		}
	}
}

func TestAuthenticateRefused(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		dir := mustDirectory(t, d, d.LDAPConfig())
		tests := []struct{ name, login, password string }{
			{"disabled", "carol", d.Password("carol")},
			{"wrong password", "alice", d.Password("bob")},
			{"unknown user", "mallory", d.Password("alice")},
			{"service account is not a login", "svc-bootpilot", d.Password("alice")},
			{"empty password", "alice", ""},
		}
		for _, tt := range tests {
			u, err := dir.Authenticate(context.Background(), tt.login, tt.password)
			if !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Errorf("%s: Authenticate(%q) = %+v, %v; want ErrInvalidCredentials", tt.name, tt.login, u, err)
			}
			if err != nil && tt.password != "" && strings.Contains(err.Error(), tt.password) {
				t.Errorf("%s: error %q holds the password", tt.name, err)
			}
		}
	})
}

// TestAuthenticateInjection sends filter metacharacters and malformed
// names with a real password: never anyone's identity.
func TestAuthenticateInjection(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		dir := mustDirectory(t, d, d.LDAPConfig())
		names := []string{
			"*", "a*", "*)(uid=*", "*)(sAMAccountName=*", "admin)(|(a=*", "alice)(objectClass=*",
			"alice)(|(objectClass=*)", "alice\x00", "\x00", "ali\x00ce", `\`, `alice\`, `\2a`, "(", ")",
			"alice\n", "alice\r\nbob", "ålice", "алиса", "alice\u200b", "\xff\xfe", strings.Repeat("a", 300),
		}
		for _, name := range names {
			for _, user := range []string{"alice", "bob"} {
				u, err := dir.Authenticate(context.Background(), name, d.Password(user))
				if !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Errorf("Authenticate(%q, %s's password) = %+v, %v; want ErrInvalidCredentials", name, user, u, err)
				}
			}
			if u, err := dir.Lookup(context.Background(), name); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Errorf("Lookup(%q) = %+v, %v; want ErrInvalidCredentials", name, u, err)
			}
		}
	})
}

// TestAuthenticateEmptyPasswordNoBind: an empty password is refused before
// any network call. The directory's URL is a closed port, so any attempt
// would be ErrDirectoryDown — as it is with a non-empty password.
func TestAuthenticateEmptyPasswordNoBind(t *testing.T) {
	d := directorytest.StartSlapd(t)
	c := d.LDAPConfig()
	c.URLs = []string{closedURL(t)}
	dir := mustDirectory(t, d, c)
	if _, err := dir.Authenticate(context.Background(), "alice", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Authenticate(alice, \"\") = %v, want ErrInvalidCredentials", err)
	}
	if _, err := dir.Authenticate(context.Background(), "", "x"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Authenticate(\"\", x) = %v, want ErrInvalidCredentials", err)
	}
	if _, err := dir.Authenticate(context.Background(), "alice", "x"); !errors.Is(err, auth.ErrDirectoryDown) {
		t.Errorf("Authenticate(alice, x) on a closed port = %v, want ErrDirectoryDown", err)
	}
}

func TestAuthenticateFailover(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		c := d.LDAPConfig()
		c.URLs = []string{closedURL(t), d.URL}
		u, err := mustDirectory(t, d, c).Authenticate(context.Background(), "alice", d.Password("alice"))
		if err != nil || u.Name != "alice" {
			t.Fatalf("Authenticate(alice) with the first URL closed = %+v, %v; want alice", u, err)
		}
	})
}

func TestAuthenticateStartTLS(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		c := d.LDAPConfig()
		c.URLs, c.StartTLS = []string{d.StartTLSURL}, true
		u, err := mustDirectory(t, d, c).Authenticate(context.Background(), "alice", d.Password("alice"))
		if err != nil || u.Name != "alice" {
			t.Fatalf("Authenticate(alice) over StartTLS = %+v, %v; want alice", u, err)
		}
	})
}

// TestAuthenticateUntrustedCA: the pinned CA is the only one trusted.
func TestAuthenticateUntrustedCA(t *testing.T) {
	d := directorytest.StartSlapd(t)
	other := directorytest.StartSlapd(t)
	c := d.LDAPConfig()
	c.CAFile = other.CAFile
	if _, err := mustDirectory(t, d, c).Authenticate(context.Background(), "alice", d.Password("alice")); !errors.Is(err, auth.ErrDirectoryDown) {
		t.Fatalf("Authenticate with another CA pinned = %v, want ErrDirectoryDown", err)
	}
}

func TestDirectoryDown(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		dir := mustDirectory(t, d, d.LDAPConfig())
		d.Stop()
		t.Cleanup(func() { d.Restart(t) })
		start := time.Now()
		_, err := dir.Authenticate(context.Background(), "alice", d.Password("alice"))
		if !errors.Is(err, auth.ErrDirectoryDown) {
			t.Errorf("Authenticate with the directory stopped = %v, want ErrDirectoryDown", err)
		}
		if _, err := dir.Lookup(context.Background(), "alice"); !errors.Is(err, auth.ErrDirectoryDown) {
			t.Errorf("Lookup with the directory stopped = %v, want ErrDirectoryDown", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %v, want within the 5s timeout", el)
		}
	})
}

// TestDirectoryHung: a server that accepts and never answers costs the
// timeout, not forever; a context deadline cuts it shorter.
func TestDirectoryHung(t *testing.T) {
	d := directorytest.StartSlapd(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	c := d.LDAPConfig()
	c.URLs = []string{"ldaps://" + l.Addr().String()}
	c.Timeout = time.Second
	dir := mustDirectory(t, d, c)
	start := time.Now()
	if _, err := dir.Authenticate(context.Background(), "alice", "x"); !errors.Is(err, auth.ErrDirectoryDown) {
		t.Errorf("Authenticate against a hung server = %v, want ErrDirectoryDown", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("hung server took %v, want about the 1s timeout", el)
	}
	c.Timeout = 10 * time.Second
	dir = mustDirectory(t, d, c)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := dir.Lookup(ctx, "alice"); !errors.Is(err, auth.ErrDirectoryDown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lookup with a 300ms context = %v, want ErrDirectoryDown and DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("context deadline ignored: took %v", el)
	}
}

// TestServiceBindFails: a wrong service password is the directory being
// unusable, not the user's fault.
func TestServiceBindFails(t *testing.T) {
	d := directorytest.StartSlapd(t)
	c := d.LDAPConfig()
	c.BindPasswordFile = writeFile(t, "wrong.pw", "not-the-password\n", 0o600)
	if _, err := mustDirectory(t, d, c).Authenticate(context.Background(), "alice", d.Password("alice")); !errors.Is(err, auth.ErrDirectoryDown) {
		t.Fatalf("Authenticate with a wrong service password = %v, want ErrDirectoryDown", err)
	}
}

func TestLookup(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		dir := mustDirectory(t, d, d.LDAPConfig())
		ctx := context.Background()
		if u, err := dir.Lookup(ctx, "bob"); err != nil || !slices.Equal(grantStrings(u.Grants), []string{"operator@team=lab"}) {
			t.Errorf("Lookup(bob) = %+v, %v; want operator@team=lab", u, err)
		}
		if _, err := dir.Lookup(ctx, "carol"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Lookup(carol) (disabled) = %v, want ErrInvalidCredentials", err)
		}
		if _, err := dir.Lookup(ctx, "mallory"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Lookup(mallory) (unknown) = %v, want ErrInvalidCredentials", err)
		}

		// A user of our own: removed from a group, then disabled.
		name := "frank-" + d.Kind
		pw := d.AddUser(t, name, "bp-editors", "lab-team")
		u, err := dir.Lookup(ctx, name)
		if got, want := grantStrings(u.Grants), []string{"editor", "operator@team=lab"}; err != nil || !slices.Equal(got, want) {
			t.Fatalf("Lookup(%s) = %v, %v; want %v", name, got, err, want)
		}
		d.RemoveFromGroup(t, name, "lab-team")
		u, err = dir.Lookup(ctx, name)
		if got, want := grantStrings(u.Grants), []string{"editor"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("Lookup(%s) after leaving lab-team = %v, %v; want %v", name, got, err, want)
		}
		if _, err := dir.Authenticate(ctx, name, pw); err != nil {
			t.Errorf("Authenticate(%s) before Disable: %v", name, err)
		}
		d.Disable(t, name)
		if _, err := dir.Lookup(ctx, name); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Lookup(%s) after Disable = %v, want ErrInvalidCredentials", name, err)
		}
		if _, err := dir.Authenticate(ctx, name, pw); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Authenticate(%s) after Disable = %v, want ErrInvalidCredentials", name, err)
		}
	})
}

// TestDirectoryFromConfigFile goes the way the server does: the
// directory's --auth-config file, LoadConfig, NewDirectory.
func TestDirectoryFromConfigFile(t *testing.T) {
	eachDirectory(t, func(t *testing.T, d *directorytest.Dir) {
		c, err := auth.LoadConfig(d.WriteConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		dir, err := auth.NewDirectory(c.LDAP, c.Grants)
		if err != nil {
			t.Fatal(err)
		}
		u, err := dir.Authenticate(context.Background(), "bob", d.Password("bob"))
		if err != nil || fmt.Sprint(grantStrings(u.Grants)) != "[operator@team=lab]" {
			t.Fatalf("Authenticate(bob) = %+v, %v; want operator@team=lab", u, err)
		}
	})
}

func writeFile(tb testing.TB, name, content string, mode os.FileMode) string {
	tb.Helper()
	path := tb.TempDir() + "/" + name
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatal(err)
	}
	return path
}
