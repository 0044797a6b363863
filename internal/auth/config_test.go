package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// configFiles writes a CA certificate and a 0600 bind password file.
func configFiles(t *testing.T) (ca, pw string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca = writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	pw = writeFile(t, "bind.pw", "s3cret-bind-pw\n", 0o600)
	return ca, pw
}

// exampleConfig is the README's example with the files replaced.
const exampleConfig = `session_ttl: 8h
prefer_local: false
ldap:
  urls: [ldaps://dc1.example.test:636, ldaps://dc2.example.test:636]
  start_tls: false
  insecure_plaintext: false
  ca_file: {{ca}}
  server_name: ""
  bind_dn: CN=svc-bootpilot,CN=Users,DC=example,DC=test
  bind_password_file: {{pw}}
  user_base: DC=example,DC=test
  user_filter: (&(objectClass=user)(sAMAccountName={username}))
  username_attribute: sAMAccountName
  group_base: DC=example,DC=test
  group_filter: (&(objectClass=group)(member:1.2.840.113556.1.4.1941:={userdn}))
  timeout: 10s
grants:
  - group: CN=bp-editors,OU=Groups,DC=example,DC=test
    role: editor
  - group: CN=bp-lab-ops,OU=Groups,DC=example,DC=test
    role: operator
    hosts: team=lab
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	ca, pw := configFiles(t)
	text = strings.NewReplacer("{{ca}}", ca, "{{pw}}", pw).Replace(text)
	return writeFile(t, "auth.yaml", text, 0o600)
}

func TestLoadConfigExample(t *testing.T) {
	c, err := auth.LoadConfig(writeConfig(t, exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.SessionTTL != 8*time.Hour || c.PreferLocal {
		t.Errorf("SessionTTL, PreferLocal = %v, %v; want 8h, false", c.SessionTTL, c.PreferLocal)
	}
	if c.LDAP == nil || len(c.LDAP.URLs) != 2 || c.LDAP.Timeout != 10*time.Second || c.LDAP.UsernameAttribute != "sAMAccountName" {
		t.Fatalf("LDAP = %#v", c.LDAP)
	}
	want := []auth.GroupGrant{
		{Group: "CN=bp-editors,OU=Groups,DC=example,DC=test", Grant: auth.Grant{Role: auth.RoleEditor}},
		{Group: "CN=bp-lab-ops,OU=Groups,DC=example,DC=test", Grant: auth.Grant{Role: auth.RoleOperator, Hosts: "team=lab"}},
	}
	if fmt.Sprint(c.Grants) != fmt.Sprint(want) {
		t.Errorf("Grants = %v, want %v", c.Grants, want)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %v, want none", w)
	}
	for _, s := range []string{fmt.Sprint(c.LDAP), fmt.Sprintf("%#v", c.LDAP), fmt.Sprintf("%+v", *c)} {
		if strings.Contains(s, "s3cret-bind-pw") {
			t.Errorf("printed config holds the bind password: %s", s)
		}
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := auth.LoadConfig(writeFile(t, "auth.yaml", "prefer_local: true\n", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if c.SessionTTL != 8*time.Hour || !c.PreferLocal || c.LDAP != nil {
		t.Errorf("LoadConfig = %+v, want 8h, prefer_local, no LDAP", c)
	}
	if d := auth.DefaultConfig(); d.SessionTTL != 8*time.Hour || d.LDAP != nil {
		t.Errorf("DefaultConfig() = %+v", d)
	}
	c, err = auth.LoadConfig(writeConfig(t, strings.Replace(exampleConfig, "  timeout: 10s\n", "", 1)))
	if err != nil || c.LDAP.Timeout != 10*time.Second {
		t.Errorf("no timeout: %v, %v; want 10s", c.LDAP.Timeout, err)
	}
}

func TestLoadConfigPlaintext(t *testing.T) {
	plain := strings.Replace(exampleConfig, "urls: [ldaps://dc1.example.test:636, ldaps://dc2.example.test:636]", "urls: [ldap://dc1.example.test]", 1)
	if _, err := auth.LoadConfig(writeConfig(t, plain)); err == nil || !strings.Contains(err.Error(), "auth.yaml:4: ldap.urls[0]: ") || !strings.Contains(err.Error(), "start_tls") {
		t.Errorf("plain ldap:// = %v, want refused at line 4 naming start_tls", err)
	}
	c, err := auth.LoadConfig(writeConfig(t, strings.Replace(plain, "start_tls: false", "start_tls: true", 1)))
	if err != nil || len(c.Warnings()) != 0 {
		t.Errorf("ldap:// + start_tls = %v, warnings %v; want accepted, no warning", err, c.Warnings())
	}
	c, err = auth.LoadConfig(writeConfig(t, strings.Replace(plain, "insecure_plaintext: false", "insecure_plaintext: true", 1)))
	if err != nil {
		t.Fatalf("ldap:// + insecure_plaintext: %v", err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "ldap://dc1.example.test") {
		t.Errorf("Warnings() = %v, want one about ldap://dc1.example.test", w)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string // replaced in exampleConfig
		want     string // "LINE: text"
	}{
		{"unknown top key", "prefer_local: false", "prefer_locale: false", `2: prefer_locale: unknown key`},
		{"unknown ldap key", "  start_tls: false", "  starttls: false", `5: ldap.starttls: unknown key`},
		{"unknown grant key", "    role: editor", "    rol: editor", `19: grants[0].rol: unknown key`},
		{"duplicate key", "  timeout: 10s", "  timeout: 10s\n  timeout: 20s", `17: mapping key "timeout" already defined at line 16`},
		{"yaml syntax", "grants:", "grants: [", `17: did not find expected`},
		{"wrong type", "prefer_local: false", "prefer_local: maybe", `2: cannot unmarshal`},
		{"session_ttl short", "session_ttl: 8h", "session_ttl: 1m", `1: session_ttl: 1m0s is outside 5m..7d`},
		{"session_ttl long", "session_ttl: 8h", "session_ttl: 8d", `1: session_ttl: 192h0m0s is outside 5m..7d`},
		{"session_ttl junk", "session_ttl: 8h", "session_ttl: soon", `1: session_ttl: "soon" is not a duration`},
		{"bad scheme", "ldaps://dc2.example.test:636]", "https://dc2.example.test]", `4: ldap.urls[1]: "https://dc2.example.test": the scheme`},
		{"no urls", "  urls: [ldaps://dc1.example.test:636, ldaps://dc2.example.test:636]", "  urls: []", `4: ldap.urls: at least one`},
		{"missing ca", "  ca_file: {{ca}}", "  ca_file: /nonexistent/ca.pem", `7: ldap.ca_file: open /nonexistent/ca.pem`},
		{"ca not pem", "  ca_file: {{ca}}", "  ca_file: {{pw}}", `7: ldap.ca_file: `},
		{"missing ca key", "  ca_file: {{ca}}\n", "", `3: ldap.ca_file: required`},
		{"bad bind dn", "  bind_dn: CN=svc-bootpilot,CN=Users,DC=example,DC=test", "  bind_dn: svc-bootpilot", `9: ldap.bind_dn: "svc-bootpilot" is not a DN`},
		{"missing password file", "  bind_password_file: {{pw}}", "  bind_password_file: /nonexistent/pw", `10: ldap.bind_password_file: stat /nonexistent/pw`},
		{"user filter placeholder", "(sAMAccountName={username})", "(sAMAccountName=alice)", `12: ldap.user_filter: "(&(objectClass=user)(sAMAccountName=alice))" does not contain {username}`},
		{"user filter syntax", "(sAMAccountName={username}))", "(sAMAccountName={username})", `12: ldap.user_filter: `},
		{"group filter placeholder", "={userdn}", "=x", `15: ldap.group_filter: `},
		{"timeout", "  timeout: 10s", "  timeout: 5m", `16: ldap.timeout: 5m0s is outside 1s..2m`},
		{"timeout zero", "  timeout: 10s", "  timeout: 0s", `16: ldap.timeout: 0 is outside`},
		{"bad role", "    role: operator", "    role: root", `21: grants[1].role: unknown role "root"`},
		{"bad hosts", "    hosts: team=lab", "    hosts: team", `22: grants[1].hosts: "team" is not key=value`},
		{"bad group", "  - group: CN=bp-editors,OU=Groups,DC=example,DC=test", "  - group: bp-editors", `18: grants[0].group: "bp-editors" is not a DN`},
		{"missing group", "  - group: CN=bp-editors,OU=Groups,DC=example,DC=test\n    role: editor", "  - role: editor", `18: grants[0].group: required`},
		{"start_tls with ldaps", "  start_tls: false", "  start_tls: true", `5: ldap.start_tls: start_tls is for ldap:// URLs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(exampleConfig, tt.old, tt.new, 1)
			if text == exampleConfig {
				t.Fatalf("%q not in the example", tt.old)
			}
			path := writeConfig(t, text)
			_, err := auth.LoadConfig(path)
			if err == nil {
				t.Fatalf("LoadConfig = nil error, want %q", tt.want)
			}
			if want := path + ":" + tt.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("LoadConfig error\n got %q\nwant prefix %q", err, want)
			}
		})
	}
}

func TestLoadConfigPasswordFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"group readable", "pw\n", 0o640, "chmod 600"},
		{"world readable", "pw\n", 0o604, "chmod 600"},
		{"empty", "\n", 0o600, "is empty"},
		{"two lines", "pw\nmore\n", 0o600, "more than one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pw := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(pw, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(pw, tt.mode)
			path := writeConfig(t, strings.Replace(exampleConfig, "{{pw}}", pw, 1))
			_, err := auth.LoadConfig(path)
			if err == nil || !strings.HasPrefix(err.Error(), path+":10: ldap.bind_password_file: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadConfig = %v, want line 10 and %q", err, tt.want)
			}
		})
	}
}

// TestNewDirectoryRefusesPlaintext: the programmatic path validates too.
func TestNewDirectoryRefusesPlaintext(t *testing.T) {
	_, pw := configFiles(t)
	c := &auth.LDAPConfig{URLs: []string{"ldap://127.0.0.1:389"}, BindDN: "cn=svc,dc=example,dc=test", BindPasswordFile: pw,
		UserBase: "dc=example,dc=test", UserFilter: "(uid={username})"}
	if _, err := auth.NewDirectory(c, nil); err == nil || !strings.Contains(err.Error(), "plain LDAP") {
		t.Errorf("NewDirectory(ldap://) = %v, want refused as plain LDAP", err)
	}
	c.InsecurePlaintext = true
	if _, err := auth.NewDirectory(c, nil); err != nil {
		t.Errorf("NewDirectory(ldap://, insecure_plaintext) = %v, want accepted", err)
	}
}
