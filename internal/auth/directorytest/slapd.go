package directorytest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/testenv"
)

// slapdSuffix is the OpenLDAP fixture's naming context.
const slapdSuffix = "dc=example,dc=test"

// slapdConf is the server configuration. Only authenticated users read;
// passwords are usable for binds only; dynlist computes memberOf, nested
// through groups of groups; ppolicy enforces pwdAccountLockedTime.
const slapdConf = `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/dyngroup.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload dynlist
moduleload ppolicy
pidfile {{dir}}/slapd.pid
TLSCACertificateFile {{ca}}
TLSCertificateFile {{cert}}
TLSCertificateKeyFile {{key}}
disallow bind_anon
require authc

database mdb
maxsize 16777216
suffix "` + slapdSuffix + `"
rootdn "cn=admin,` + slapdSuffix + `"
rootpw "{{adminpw}}"
directory {{dir}}/data
index objectClass,uid,member eq
access to attrs=userPassword
	by anonymous auth
	by * none
access to *
	by users read
	by * none
overlay ppolicy
ppolicy_default "cn=default,ou=Policies,` + slapdSuffix + `"
overlay dynlist
dynlist-attrset groupOfURLs memberURL member+memberOf@groupOfNames*
`

// StartSlapd starts an OpenLDAP slapd with the fixture, serving LDAPS on a
// free 127.0.0.1 port, stopped when tb ends.
func StartSlapd(tb testing.TB) *Dir {
	tb.Helper()
	slapd := testenv.Tool(tb, "slapd")
	slapadd := testenv.Tool(tb, "slapadd")
	testenv.File(tb, "/etc/ldap/schema/dyngroup.schema")
	dir := tb.TempDir()
	d, err := newSlapd(dir, slapd, slapadd)
	if err != nil {
		tb.Fatalf("directorytest: slapd: %v", err)
	}
	tb.Cleanup(d.Stop)
	if err := d.start(); err != nil {
		tb.Fatalf("directorytest: slapd: %v", err)
	}
	return d
}

func newSlapd(dir, slapd, slapadd string) (*Dir, error) {
	tf, err := writeTLS(dir)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	plainPort, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &Dir{
		Kind:              KindOpenLDAP,
		URL:               fmt.Sprintf("ldaps://127.0.0.1:%d", port),
		StartTLSURL:       fmt.Sprintf("ldap://127.0.0.1:%d", plainPort),
		CAFile:            tf.CA,
		BindDN:            "cn=svc-bootpilot,ou=Services," + slapdSuffix,
		BindPasswordFile:  filepath.Join(dir, "bind.pw"),
		UserBase:          "ou=People," + slapdSuffix,
		UserFilter:        "(&(objectClass=inetOrgPerson)(uid={username}))",
		UsernameAttribute: "uid",
		GroupBase:         "ou=Groups," + slapdSuffix,
		GroupFilter:       "(&(objectClass=groupOfNames)(member={userdn}))",
		dir:               dir,
		adminDN:           "cn=admin," + slapdSuffix,
		adminPW:           newPassword(),
		userDNs:           map[string]string{},
		groupDNs:          map[string]string{},
		passwords:         map[string]string{},
	}
	d.ready = d.probe
	conf := strings.NewReplacer("{{dir}}", dir, "{{ca}}", tf.CA, "{{cert}}", tf.Cert, "{{key}}", tf.Key, "{{adminpw}}", d.adminPW).Replace(slapdConf)
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	svcPW := newPassword()
	if err := os.WriteFile(d.BindPasswordFile, []byte(svcPW+"\n"), 0o600); err != nil {
		return nil, err
	}
	ldif := d.slapdFixture(svcPW)
	ldifFile := filepath.Join(dir, "fixture.ldif")
	if err := os.WriteFile(ldifFile, []byte(ldif), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command(slapadd, "-f", confFile, "-l", ldifFile).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("slapadd: %v: %s", err, out)
	}
	d.argv = []string{slapd, "-f", confFile, "-h", d.URL + "/ " + d.StartTLSURL + "/", "-d", "0"}
	return d, nil
}

// slapdFixture renders the fixture as LDIF and fills d's names.
func (d *Dir) slapdFixture(svcPW string) string {
	var b strings.Builder
	entry := func(dn string, lines ...string) {
		fmt.Fprintf(&b, "dn: %s\n%s\n\n", dn, strings.Join(lines, "\n"))
	}
	entry(slapdSuffix, "objectClass: dcObject", "objectClass: organization", "o: example", "dc: example")
	for _, ou := range []string{"People", "Groups", "Services", "Policies"} {
		entry("ou="+ou+","+slapdSuffix, "objectClass: organizationalUnit", "ou: "+ou)
	}
	// pwdLockout makes slapd itself refuse a locked account's bind.
	entry("cn=default,ou=Policies,"+slapdSuffix, "objectClass: organizationalRole", "objectClass: pwdPolicy",
		"cn: default", "pwdAttribute: userPassword", "pwdLockout: TRUE")
	entry(d.BindDN, "objectClass: organizationalRole", "objectClass: simpleSecurityObject", "cn: svc-bootpilot", "userPassword: "+svcPW)
	for _, u := range Users {
		pw := newPassword()
		dn := "uid=" + u + "," + d.UserBase
		d.userDNs[u], d.passwords[u] = dn, pw
		lines := []string{"objectClass: inetOrgPerson", "uid: " + u, "cn: " + u, "sn: " + u, "userPassword: " + pw}
		if u == disabledUser {
			lines = append(lines, "pwdAccountLockedTime: 000001010000Z")
		}
		entry(dn, lines...)
	}
	for _, g := range Groups {
		d.groupDNs[g] = "cn=" + g + "," + d.GroupBase
	}
	for _, g := range Groups {
		lines := []string{"objectClass: groupOfNames", "cn: " + g}
		for _, m := range fixtureMembers[g] {
			lines = append(lines, "member: "+d.memberDN(m))
		}
		entry(d.groupDNs[g], lines...)
	}
	return b.String()
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
