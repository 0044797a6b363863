package directorytest_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/bootpilot/bootpilot/internal/auth/directorytest"
)

// dial opens an LDAPS connection to d trusting its CA.
func dial(t *testing.T, d *directorytest.Dir) *ldap.Conn {
	t.Helper()
	pem, err := os.ReadFile(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := ldap.DialURL(d.URL, ldap.DialWithTLSConfig(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// checkFixture checks what the auth tests rely on from the server itself:
// alice binds, the disabled carol does not, anonymous search is refused.
func checkFixture(t *testing.T, d *directorytest.Dir, disabledDetail string) {
	conn := dial(t, d)
	if _, err := conn.Search(ldap.NewSearchRequest(d.UserBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil)); err == nil {
		t.Errorf("anonymous search succeeded, want refused")
	}
	if err := conn.Bind(d.UserDN("alice"), d.Password("alice")); err != nil {
		t.Errorf("bind alice: %v", err)
	}
	err := conn.Bind(d.UserDN("carol"), d.Password("carol"))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) || !strings.Contains(err.Error(), disabledDetail) {
		t.Errorf("bind carol (disabled) = %v, want result 49 with %q", err, disabledDetail)
	}
}

func TestSlapdFixture(t *testing.T) {
	d := directorytest.StartSlapd(t)
	checkFixture(t, d, "")
	d.Stop()
	d.Stop() // idempotent
	d.Restart(t)
	checkFixture(t, d, "")
}

func TestSambaADFixture(t *testing.T) {
	d := directorytest.StartSambaAD(t)
	checkFixture(t, d, "data 533")
	d.Stop()
	d.Restart(t)
	checkFixture(t, d, "data 533")
}
