package directorytest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/bootpilot/bootpilot/internal/testenv"
)

// adBase is the Samba fixture's domain (realm EXAMPLE.TEST).
const adBase = "DC=example,DC=test"

// The AD fixture's user filter matches sAMAccountName; the client widens it
// to userPrincipalName for "alice@example.test" logins.
const (
	ADUserFilter  = "(&(objectClass=user)(sAMAccountName={username}))"
	ADGroupFilter = "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={userdn}))"
)

// StartSambaAD provisions a Samba AD domain controller (realm EXAMPLE.TEST)
// in a temporary directory, starts its LDAP server on port 636 of a random
// 127.x.y.z address (Samba's LDAP ports are fixed; the address keeps
// concurrent test processes apart) and adds the fixture. It takes ~10 s;
// tests in one package should share SharedSambaAD instead. Stopped and
// removed when tb ends.
func StartSambaAD(tb testing.TB) *Dir {
	tb.Helper()
	tools := sambaTools(tb)
	d, err := startSambaAD(tools)
	if d != nil {
		tb.Cleanup(d.Close)
	}
	if err != nil {
		tb.Fatalf("directorytest: samba: %v", err)
	}
	return d
}

var shared struct {
	sync.Mutex
	d   *Dir
	err error
}

// SharedSambaAD returns the process's one Samba AD, starting it on first
// use. Call StopShared from TestMain after m.Run. Tests that change it use
// AddUser for their own users, and a test that Stops it Restarts it.
func SharedSambaAD(tb testing.TB) *Dir {
	tb.Helper()
	tools := sambaTools(tb)
	shared.Lock()
	defer shared.Unlock()
	if shared.d == nil && shared.err == nil {
		shared.d, shared.err = startSambaAD(tools)
	}
	if shared.err != nil {
		tb.Fatalf("directorytest: samba: %v", shared.err)
	}
	return shared.d
}

// StopShared stops and removes the shared Samba AD, if one was started.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.d != nil {
		shared.d.Close()
	}
	shared.d, shared.err = nil, errors.New("shared Samba AD already stopped")
}

// Close stops the server and removes its files.
func (d *Dir) Close() {
	d.Stop()
	os.RemoveAll(d.dir)
}

type sambaPaths struct{ samba, sambaTool string }

func sambaTools(tb testing.TB) sambaPaths {
	tb.Helper()
	return sambaPaths{samba: testenv.Tool(tb, "samba"), sambaTool: testenv.Tool(tb, "samba-tool")}
}

// startSambaAD does StartSambaAD's work; d is non-nil when there is
// something to Close.
func startSambaAD(tools sambaPaths) (*Dir, error) {
	dir, err := os.MkdirTemp("", "bootpilot-samba-")
	if err != nil {
		return nil, err
	}
	ip, err := freeLoopback()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d := &Dir{
		Kind:              KindAD,
		URL:               "ldaps://" + ip.String() + ":636",
		StartTLSURL:       "ldap://" + ip.String() + ":389",
		BindDN:            "CN=svc-bootpilot,CN=Users," + adBase,
		BindPasswordFile:  filepath.Join(dir, "bind.pw"),
		UserBase:          adBase,
		UserFilter:        ADUserFilter,
		UsernameAttribute: "sAMAccountName",
		GroupBase:         adBase,
		GroupFilter:       ADGroupFilter,
		dir:               dir,
		adminDN:           "Administrator@example.test",
		adminPW:           newPassword(),
		userDNs:           map[string]string{},
		groupDNs:          map[string]string{},
		passwords:         map[string]string{},
	}
	d.ready = d.probe
	tf, err := writeTLS(dir, ip)
	if err != nil {
		return d, err
	}
	d.CAFile = tf.CA
	conf := filepath.Join(dir, "etc", "smb.conf")
	prov := exec.Command(tools.sambaTool, "domain", "provision",
		"--realm=EXAMPLE.TEST", "--domain=EXAMPLE", "--server-role=dc", "--dns-backend=NONE",
		"--adminpass="+d.adminPW, "--targetdir="+dir, "--host-name=dc1", "--host-ip="+ip.String(),
		"--option=interfaces="+ip.String()+"/8", "--option=bind interfaces only=yes",
		"--option=pid directory="+dir, "--option=log file="+filepath.Join(dir, "samba.log"))
	prov.Dir = dir
	if out, err := prov.CombinedOutput(); err != nil {
		return d, fmt.Errorf("samba-tool domain provision: %v: %s", err, tail(out))
	}
	d.argv = []string{tools.samba, "-i", "-M", "single", "-s", conf,
		"--option=server services=ldap",
		"--option=interfaces=" + ip.String() + "/8", "--option=bind interfaces only=yes",
		"--option=pid directory=" + dir,
		"--option=log file=" + filepath.Join(dir, "samba.log"),
		"--option=tls enabled=yes",
		"--option=tls keyfile=" + tf.Key, "--option=tls certfile=" + tf.Cert, "--option=tls cafile=" + tf.CA}
	if err := d.start(); err != nil {
		return d, err
	}
	if err := d.adFixture(); err != nil {
		return d, fmt.Errorf("fixture: %v", err)
	}
	return d, nil
}

// adFixture adds the service account, users and groups over LDAPS as the
// Administrator (much faster than one samba-tool run per object).
func (d *Dir) adFixture() error {
	conn, err := d.admin()
	if err != nil {
		return err
	}
	defer conn.Close()
	ou := ldap.NewAddRequest("OU=Groups,"+adBase, nil)
	ou.Attribute("objectClass", []string{"top", "organizationalUnit"})
	if err := conn.Add(ou); err != nil {
		return err
	}
	svcPW := newPassword()
	_, svc := d.userAdd("svc-bootpilot", svcPW, false)
	if err := conn.Add(svc); err != nil {
		return fmt.Errorf("add service account: %w", err)
	}
	if err := os.WriteFile(d.BindPasswordFile, []byte(svcPW+"\n"), 0o600); err != nil {
		return err
	}
	for _, u := range Users {
		pw := newPassword()
		dn, req := d.userAdd(u, pw, u == disabledUser)
		if err := conn.Add(req); err != nil {
			return fmt.Errorf("add %s: %w", dn, err)
		}
		d.userDNs[u], d.passwords[u] = dn, pw
	}
	for _, g := range Groups {
		dn := "CN=" + g + ",OU=Groups," + adBase
		req := ldap.NewAddRequest(dn, nil)
		req.Attribute("objectClass", []string{"top", "group"})
		req.Attribute("sAMAccountName", []string{g})
		if err := conn.Add(req); err != nil {
			return fmt.Errorf("add %s: %w", dn, err)
		}
		d.groupDNs[g] = dn
	}
	for _, g := range Groups {
		if len(fixtureMembers[g]) == 0 {
			continue
		}
		req := ldap.NewModifyRequest(d.groupDNs[g], nil)
		var members []string
		for _, m := range fixtureMembers[g] {
			members = append(members, d.memberDN(m))
		}
		req.Add("member", members)
		if err := conn.Modify(req); err != nil {
			return fmt.Errorf("members of %s: %w", g, err)
		}
	}
	return nil
}

// freeLoopback picks a 127.x.y.z address whose LDAP ports are free.
func freeLoopback() (net.IP, error) {
	for range 20 {
		ip := net.IPv4(127, byte(1+rand.IntN(250)), byte(rand.IntN(256)), byte(2+rand.IntN(250)))
		free := true
		for _, port := range []string{"389", "636"} {
			l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return ip, nil
		}
	}
	return nil, errors.New("no free loopback address for ports 389/636")
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}
