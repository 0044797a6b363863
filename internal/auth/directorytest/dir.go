// Package directorytest starts real, throwaway directories for tests: an
// OpenLDAP slapd (StartSlapd) and a Samba Active Directory domain controller
// (StartSambaAD, or the per-process shared SharedSambaAD), both serving LDAPS
// on loopback with a test CA, both holding the same logical fixture:
//
//	svc-bootpilot  the service account (Dir.BindDN, Dir.BindPasswordFile)
//	alice          member of bp-editors
//	bob            member of lab-team, which is a member of bp-lab-ops (nested)
//	carol          member of bp-editors, disabled: AD userAccountControl 514;
//	               OpenLDAP ppolicy pwdAccountLockedTime 000001010000Z
//	               (locked by an administrator: slapd refuses her bind)
//	dave           member of bp-auditors
//	erin           in no group
//
// Grants maps bp-editors → editor, bp-lab-ops → operator@team=lab,
// bp-auditors → auditor. A missing slapd or samba skips the test locally and
// fails it with CI=true (internal/testenv).
package directorytest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// The fixture's user and group names.
var (
	Users  = []string{"alice", "bob", "carol", "dave", "erin"}
	Groups = []string{"bp-editors", "bp-lab-ops", "bp-auditors", "lab-team"}
)

// fixtureMembers lists each group's members: users and groups.
var fixtureMembers = map[string][]string{
	"bp-editors":  {"alice", "carol"},
	"lab-team":    {"bob"},
	"bp-lab-ops":  {"lab-team"},
	"bp-auditors": {"dave"},
}

// disabledUser is the fixture's disabled account.
const disabledUser = "carol"

// Kinds of Dir.
const (
	KindOpenLDAP = "openldap"
	KindAD       = "ad"
)

// Dir is a running test directory and what a client needs to use it.
type Dir struct {
	Kind              string // KindOpenLDAP or KindAD
	URL               string // "ldaps://127.0.0.1:40123"
	StartTLSURL       string // "ldap://127.0.0.1:40124": the same server over plain LDAP, for StartTLS
	CAFile            string // the test CA (PEM)
	BindDN            string // the service account
	BindPasswordFile  string // its password, mode 0600
	UserBase          string // "dc=example,dc=test"
	UserFilter        string // "(&(objectClass=inetOrgPerson)(uid={username}))"
	UsernameAttribute string // "uid" or "sAMAccountName"
	GroupBase         string
	GroupFilter       string // "(&(objectClass=groupOfNames)(member={userdn}))"

	dir       string            // the server's files
	adminDN   string            // who edits the fixture
	adminPW   string            //
	userDNs   map[string]string // name → DN
	groupDNs  map[string]string // name → DN
	passwords map[string]string // name → password
	argv      []string          // the server command
	ready     func() error      // one readiness probe

	mu   sync.Mutex
	cmd  *exec.Cmd     // nil when stopped
	done chan struct{} // closed when cmd exits
}

// Group returns the DN of the fixture group name.
func (d *Dir) Group(name string) string {
	dn, ok := d.groupDNs[name]
	if !ok {
		panic("directorytest: no group " + name)
	}
	return dn
}

// UserDN returns the DN of user name.
func (d *Dir) UserDN(name string) string {
	dn, ok := d.userDNs[name]
	if !ok {
		panic("directorytest: no user " + name)
	}
	return dn
}

// Password returns user's password.
func (d *Dir) Password(user string) string {
	pw, ok := d.passwords[user]
	if !ok {
		panic("directorytest: no user " + user)
	}
	return pw
}

// Grants returns the fixture's group grants: bp-editors → editor,
// bp-lab-ops → operator@team=lab, bp-auditors → auditor.
func (d *Dir) Grants() []auth.GroupGrant {
	return []auth.GroupGrant{
		{Group: d.Group("bp-editors"), Grant: auth.Grant{Role: auth.RoleEditor}},
		{Group: d.Group("bp-lab-ops"), Grant: auth.Grant{Role: auth.RoleOperator, Hosts: "team=lab"}},
		{Group: d.Group("bp-auditors"), Grant: auth.Grant{Role: auth.RoleAuditor}},
	}
}

// LDAPConfig returns a fresh client configuration for d (timeout 5s).
func (d *Dir) LDAPConfig() *auth.LDAPConfig {
	return &auth.LDAPConfig{
		URLs:              []string{d.URL},
		CAFile:            d.CAFile,
		BindDN:            d.BindDN,
		BindPasswordFile:  d.BindPasswordFile,
		UserBase:          d.UserBase,
		UserFilter:        d.UserFilter,
		UsernameAttribute: d.UsernameAttribute,
		GroupBase:         d.GroupBase,
		GroupFilter:       d.GroupFilter,
		Timeout:           5 * time.Second,
	}
}

// WriteConfig writes an --auth-config file for d with the fixture grants
// (or grants, when given) into a temporary directory and returns its path.
func (d *Dir) WriteConfig(tb testing.TB, grants ...auth.GroupGrant) string {
	tb.Helper()
	if len(grants) == 0 {
		grants = d.Grants()
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	var b strings.Builder
	fmt.Fprintf(&b, "session_ttl: 8h\nldap:\n  urls: [%s]\n  ca_file: %s\n  bind_dn: %s\n  bind_password_file: %s\n",
		q(d.URL), q(d.CAFile), q(d.BindDN), q(d.BindPasswordFile))
	fmt.Fprintf(&b, "  user_base: %s\n  user_filter: %s\n  username_attribute: %s\n  group_base: %s\n  group_filter: %s\n  timeout: 5s\ngrants:\n",
		q(d.UserBase), q(d.UserFilter), q(d.UsernameAttribute), q(d.GroupBase), q(d.GroupFilter))
	for _, g := range grants {
		fmt.Fprintf(&b, "  - group: %s\n    role: %s\n", q(g.Group), g.Role)
		if g.Hosts != "" {
			fmt.Fprintf(&b, "    hosts: %s\n", q(g.Hosts))
		}
	}
	path := filepath.Join(tb.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// admin opens an LDAPS connection bound as the directory's administrator.
func (d *Dir) admin() (*ldap.Conn, error) {
	pem, err := os.ReadFile(d.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := ldap.DialURL(d.URL, ldap.DialWithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err != nil {
		return nil, err
	}
	conn.SetTimeout(10 * time.Second)
	if err := conn.Bind(d.adminDN, d.adminPW); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// modify applies one change to dn as the administrator.
func (d *Dir) modify(tb testing.TB, dn string, change func(*ldap.ModifyRequest)) {
	tb.Helper()
	conn, err := d.admin()
	if err != nil {
		tb.Fatalf("directorytest: admin bind: %v", err)
	}
	defer conn.Close()
	req := ldap.NewModifyRequest(dn, nil)
	change(req)
	if err := conn.Modify(req); err != nil {
		tb.Fatalf("directorytest: modify %s: %v", dn, err)
	}
}

// RemoveFromGroup removes user (or a group) from group.
func (d *Dir) RemoveFromGroup(tb testing.TB, user, group string) {
	tb.Helper()
	d.modify(tb, d.Group(group), func(r *ldap.ModifyRequest) { r.Delete("member", []string{d.memberDN(user)}) })
}

// AddToGroup adds user (or a group) to group.
func (d *Dir) AddToGroup(tb testing.TB, user, group string) {
	tb.Helper()
	d.modify(tb, d.Group(group), func(r *ldap.ModifyRequest) { r.Add("member", []string{d.memberDN(user)}) })
}

func (d *Dir) memberDN(name string) string {
	if dn, ok := d.groupDNs[name]; ok {
		return dn
	}
	return d.UserDN(name)
}

// Disable disables user's account: AD userAccountControl 514 (normal
// account + ACCOUNTDISABLE); OpenLDAP pwdAccountLockedTime 000001010000Z.
func (d *Dir) Disable(tb testing.TB, user string) {
	tb.Helper()
	d.modify(tb, d.UserDN(user), func(r *ldap.ModifyRequest) {
		if d.Kind == KindAD {
			r.Replace("userAccountControl", []string{"514"})
		} else {
			r.Replace("pwdAccountLockedTime", []string{"000001010000Z"})
		}
	})
}

// AddUser adds a new user (a name not in the fixture, e.g. the test's
// name) in groups and returns their password. Tests that change users use
// their own so a shared directory stays as described.
func (d *Dir) AddUser(tb testing.TB, name string, groups ...string) string {
	tb.Helper()
	if _, dup := d.userDNs[name]; dup {
		tb.Fatalf("directorytest: user %s exists", name)
	}
	conn, err := d.admin()
	if err != nil {
		tb.Fatalf("directorytest: admin bind: %v", err)
	}
	defer conn.Close()
	pw := newPassword()
	dn, req := d.userAdd(name, pw, false)
	if err := conn.Add(req); err != nil {
		tb.Fatalf("directorytest: add %s: %v", dn, err)
	}
	d.mu.Lock()
	d.userDNs[name], d.passwords[name] = dn, pw
	d.mu.Unlock()
	for _, g := range groups {
		d.AddToGroup(tb, name, g)
	}
	return pw
}

// userAdd returns the add request for a user.
func (d *Dir) userAdd(name, pw string, disabled bool) (string, *ldap.AddRequest) {
	if d.Kind == KindAD {
		dn := fmt.Sprintf("CN=%s,CN=Users,%s", name, d.UserBase)
		r := ldap.NewAddRequest(dn, nil)
		r.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
		r.Attribute("sAMAccountName", []string{name})
		r.Attribute("userPrincipalName", []string{name + "@example.test"})
		r.Attribute("unicodePwd", []string{adPassword(pw)})
		uac := "512" // NORMAL_ACCOUNT
		if disabled {
			uac = "514"
		}
		r.Attribute("userAccountControl", []string{uac})
		return dn, r
	}
	dn := fmt.Sprintf("uid=%s,%s", name, d.UserBase)
	r := ldap.NewAddRequest(dn, nil)
	r.Attribute("objectClass", []string{"inetOrgPerson"})
	r.Attribute("uid", []string{name})
	r.Attribute("cn", []string{name})
	r.Attribute("sn", []string{name})
	r.Attribute("userPassword", []string{pw})
	return dn, r
}

// adPassword encodes pw for AD's unicodePwd: quoted, UTF-16LE.
func adPassword(pw string) string {
	q := `"` + pw + `"`
	b := make([]byte, 0, 2*len(q))
	for _, r := range q {
		b = append(b, byte(r), byte(r>>8))
	}
	return string(b)
}

// newPassword returns a random password meeting AD complexity.
func newPassword() string {
	b := make([]byte, 9)
	rand.Read(b)
	return "Pw-" + hex.EncodeToString(b) + "-X9!"
}

// start runs the server command in its own process group and waits until a
// probe succeeds (or the process exits, or 30s pass).
func (d *Dir) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(d.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(d.argv[0], d.argv[1:]...)
	cmd.Dir = d.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	d.cmd, d.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := d.ready()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			d.cmd = nil
			return fmt.Errorf("%s exited: %s", filepath.Base(d.argv[0]), d.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stopLocked()
			return fmt.Errorf("%s not ready after 30s: %v; log: %s", filepath.Base(d.argv[0]), err, d.logTail())
		}
	}
}

// logTail returns the end of the server log for error messages.
func (d *Dir) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop stops the server (SIGTERM to its process group, SIGKILL after 10s):
// the directory is down until Restart. Stopping twice is fine.
func (d *Dir) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
}

func (d *Dir) stopLocked() {
	if d.cmd == nil {
		return
	}
	pgid := d.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-d.done
	}
	d.cmd = nil
}

// Restart starts a stopped server again with the same data.
func (d *Dir) Restart(tb testing.TB) {
	tb.Helper()
	if err := d.start(); err != nil {
		tb.Fatalf("directorytest: restart %s: %v", d.Kind, err)
	}
}

// probe binds as the administrator over LDAPS and reads the user base.
func (d *Dir) probe() error {
	conn, err := d.admin()
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Search(ldap.NewSearchRequest(d.UserBase, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 5, false, "(objectClass=*)", []string{"1.1"}, nil))
	return err
}
