package auth

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"gopkg.in/yaml.v3"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Config is the --auth-config file: session lifetime, the directory and
// the group → role grants. The YAML layout (README "Authentication") is a
// contract; LoadConfig reads it strictly.
type Config struct {
	SessionTTL  time.Duration // session_ttl: 8h
	PreferLocal bool          // prefer_local: a name both local and in the directory is the local user when true
	LDAP        *LDAPConfig   // ldap: nil when there is no directory
	Grants      []GroupGrant  // grants: directory group → role on hosts
}

// GroupGrant gives the members of a directory group (nested membership
// counts) a grant.
type GroupGrant struct {
	Group string // "CN=bp-lab-ops,OU=Groups,DC=example,DC=test"
	Grant        // {Role: operator, Hosts: "team=lab"}
}

// LDAPConfig says how to reach and query an LDAP directory or Active
// Directory. Call Validate (NewDirectory does) before use: it reads the
// bind password and the CA file.
type LDAPConfig struct {
	URLs              []string      // ["ldaps://dc1.example.test:636", "ldaps://dc2.example.test:636"]: tried in order
	StartTLS          bool          // StartTLS on ldap:// URLs
	InsecurePlaintext bool          // allow ldap:// without TLS (warned at every start)
	CAFile            string        // "/etc/bootpilot/ldap-ca.pem": the only CA trusted for the directory
	ServerName        string        // TLS server name override; "" = the URL's host
	BindDN            string        // "CN=svc-bootpilot,CN=Users,DC=example,DC=test"
	BindPasswordFile  string        // "/etc/bootpilot/ldap-bind.pw", mode 0600
	UserBase          string        // "DC=example,DC=test"
	UserFilter        string        // "(&(objectClass=user)(sAMAccountName={username}))"
	UsernameAttribute string        // "sAMAccountName"; "": sAMAccountName if present, else uid
	GroupBase         string        // "DC=example,DC=test"; "": UserBase
	GroupFilter       string        // "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={userdn}))"; "": memberOf only
	Timeout           time.Duration // dial and request timeout; 0: 10s

	bindPassword string         // read from BindPasswordFile by Validate; never printed
	rootCAs      *x509.CertPool // read from CAFile by Validate
}

// Limits of the configuration values.
const (
	DefaultSessionTTL  = 8 * time.Hour
	MinSessionTTL      = 5 * time.Minute
	MaxSessionTTL      = 7 * 24 * time.Hour
	DefaultLDAPTimeout = 10 * time.Second
	MinLDAPTimeout     = time.Second
	MaxLDAPTimeout     = 2 * time.Minute
)

// DefaultConfig is the configuration without --auth-config: 8h sessions,
// local users only.
func DefaultConfig() *Config { return &Config{SessionTTL: DefaultSessionTTL} }

// String renders c without secrets (the bind password is never printed).
func (c *LDAPConfig) String() string {
	return fmt.Sprintf("ldap %s bind %q user_base %q", strings.Join(c.URLs, ","), c.BindDN, c.UserBase)
}

// GoString keeps %#v from printing the bind password.
func (c *LDAPConfig) GoString() string { return c.String() }

// Warnings lists what the server logs at every start: insecure settings
// that are allowed but should not stay.
func (c *Config) Warnings() []string {
	var out []string
	if c.LDAP != nil && c.LDAP.InsecurePlaintext && !c.LDAP.StartTLS {
		for _, u := range c.LDAP.URLs {
			if strings.HasPrefix(strings.ToLower(u), "ldap://") {
				out = append(out, fmt.Sprintf("ldap: %s is plain LDAP without TLS (insecure_plaintext: true): directory passwords cross the network in clear text", u))
			}
		}
	}
	return out
}

// keyError is a validation error for one configuration key; LoadConfig
// turns the key into the FILE:LINE where it was written.
type keyError struct {
	Key    string // "ldap.ca_file", "grants[1].role"
	Reason string
}

func (e *keyError) Error() string { return e.Key + ": " + e.Reason }

func keyErr(key, format string, args ...any) error {
	return &keyError{Key: key, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks c, fills defaults, and reads the bind password and the CA
// file. Errors name the configuration key ("ldap.ca_file: …").
func (c *LDAPConfig) Validate() error {
	if c.Timeout == 0 {
		c.Timeout = DefaultLDAPTimeout
	}
	if c.Timeout < MinLDAPTimeout || c.Timeout > MaxLDAPTimeout {
		return keyErr("ldap.timeout", "%s is outside 1s..2m", c.Timeout)
	}
	if len(c.URLs) == 0 {
		return keyErr("ldap.urls", "at least one ldaps:// or ldap:// URL is required")
	}
	tlsUsed := false
	for i, raw := range c.URLs {
		key := fmt.Sprintf("ldap.urls[%d]", i)
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return keyErr(key, "%q is not a URL like ldaps://dc1.example.test:636", raw)
		}
		switch strings.ToLower(u.Scheme) {
		case "ldaps":
			if c.StartTLS {
				return keyErr("ldap.start_tls", "start_tls is for ldap:// URLs; %s is already TLS", raw)
			}
			tlsUsed = true
		case "ldap":
			if c.StartTLS {
				tlsUsed = true
			} else if !c.InsecurePlaintext {
				return keyErr(key, "%s is plain LDAP: set start_tls: true (or use ldaps://); insecure_plaintext: true allows clear text", raw)
			}
		default:
			return keyErr(key, "%q: the scheme must be ldaps:// or ldap://", raw)
		}
	}
	if tlsUsed {
		if c.CAFile == "" {
			return keyErr("ldap.ca_file", "required with ldaps:// or start_tls: the PEM file of the CA that signed the directory's certificate")
		}
		pool, err := readCAFile(c.CAFile)
		if err != nil {
			return keyErr("ldap.ca_file", "%v", err)
		}
		c.rootCAs = pool
	}
	if c.BindDN == "" {
		return keyErr("ldap.bind_dn", "required: the service account that searches users and groups")
	}
	if _, err := ldap.ParseDN(c.BindDN); err != nil {
		return keyErr("ldap.bind_dn", "%q is not a DN: %v", c.BindDN, err)
	}
	pw, err := readSecretFile(c.BindPasswordFile)
	if err != nil {
		return keyErr("ldap.bind_password_file", "%v", err)
	}
	c.bindPassword = pw
	if err := checkBase("ldap.user_base", c.UserBase); err != nil {
		return err
	}
	if err := checkFilter("ldap.user_filter", c.UserFilter, "{username}", "alice"); err != nil {
		return err
	}
	if c.UsernameAttribute != "" && !validAttr(c.UsernameAttribute) {
		return keyErr("ldap.username_attribute", "%q is not an attribute name", c.UsernameAttribute)
	}
	if c.GroupBase == "" {
		c.GroupBase = c.UserBase
	}
	if err := checkBase("ldap.group_base", c.GroupBase); err != nil {
		return err
	}
	if c.GroupFilter != "" {
		if err := checkFilter("ldap.group_filter", c.GroupFilter, "{userdn}", "CN=alice,DC=example,DC=test"); err != nil {
			return err
		}
	}
	return nil
}

func checkBase(key, dn string) error {
	if dn == "" {
		return keyErr(key, "required: the DN searched, e.g. DC=example,DC=test")
	}
	if _, err := ldap.ParseDN(dn); err != nil {
		return keyErr(key, "%q is not a DN: %v", dn, err)
	}
	return nil
}

func checkFilter(key, filter, placeholder, example string) error {
	if filter == "" {
		return keyErr(key, "required")
	}
	if !strings.Contains(filter, placeholder) {
		return keyErr(key, "%q does not contain %s", filter, placeholder)
	}
	if _, err := ldap.CompileFilter(substitute(filter, placeholder, example)); err != nil {
		return keyErr(key, "%q is not an LDAP filter: %v", filter, err)
	}
	return nil
}

// substitute replaces placeholder in filter with v, escaped for a filter.
func substitute(filter, placeholder, v string) string {
	return strings.ReplaceAll(filter, placeholder, ldap.EscapeFilter(v))
}

func validAttr(s string) bool {
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			return false
		}
	}
	return s != ""
}

func readCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func readSecretFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("required: a file holding the service account's password (mode 0600)")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(pw, "\r\n\x00") {
		return "", fmt.Errorf("%s holds more than one line", path)
	}
	return pw, nil
}

// The keys of the file, per mapping; "" is the top level.
var configKeys = map[string][]string{
	"":       {"session_ttl", "prefer_local", "ldap", "grants"},
	"ldap":   {"urls", "start_tls", "insecure_plaintext", "ca_file", "server_name", "bind_dn", "bind_password_file", "user_base", "user_filter", "username_attribute", "group_base", "group_filter", "timeout"},
	"grants": {"group", "role", "hosts"},
}

// fileConfig is the YAML shape.
type fileConfig struct {
	SessionTTL  string `yaml:"session_ttl"`
	PreferLocal bool   `yaml:"prefer_local"`
	LDAP        *struct {
		URLs              []string `yaml:"urls"`
		StartTLS          bool     `yaml:"start_tls"`
		InsecurePlaintext bool     `yaml:"insecure_plaintext"`
		CAFile            string   `yaml:"ca_file"`
		ServerName        string   `yaml:"server_name"`
		BindDN            string   `yaml:"bind_dn"`
		BindPasswordFile  string   `yaml:"bind_password_file"`
		UserBase          string   `yaml:"user_base"`
		UserFilter        string   `yaml:"user_filter"`
		UsernameAttribute string   `yaml:"username_attribute"`
		GroupBase         string   `yaml:"group_base"`
		GroupFilter       string   `yaml:"group_filter"`
		Timeout           string   `yaml:"timeout"`
	} `yaml:"ldap"`
	Grants []struct {
		Group string `yaml:"group"`
		Role  string `yaml:"role"`
		Hosts string `yaml:"hosts"`
	} `yaml:"grants"`
}

// LoadConfig reads and validates an --auth-config file. Unknown keys are
// errors; every error reads "FILE:LINE: key: reason".
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth config: %w", err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s:%s", path, yamlErrorText(err))
	}
	if len(doc.Content) == 0 { // empty file: the defaults
		return DefaultConfig(), nil
	}
	lines := map[string]int{}
	if err := walkKeys(doc.Content[0], "", "", lines); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			return nil, fmt.Errorf("%s:%d: %s: %s", path, lineOf(lines, ke.Key), ke.Key, ke.Reason)
		}
		return nil, err
	}
	var fc fileConfig
	if err := doc.Decode(&fc); err != nil {
		return nil, fmt.Errorf("%s:%s", path, yamlErrorText(err))
	}
	c, err := fc.config()
	if err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			return nil, fmt.Errorf("%s:%d: %s: %s", path, lineOf(lines, ke.Key), ke.Key, ke.Reason)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// yamlErrorText turns yaml.v3's "yaml: line 3: …" into "3: …".
func yamlErrorText(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:\n  "); ok {
		msg = rest
	}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if _, err := strconv.Atoi(n); err == nil {
				return n + ": " + tail
			}
		}
	}
	return "1: " + msg
}

// lineOf finds the line of key, or of its nearest written parent
// ("ldap.ca_file" missing: the line of "ldap").
func lineOf(lines map[string]int, key string) int {
	for k := key; k != ""; {
		if n, ok := lines[k]; ok {
			return n
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 1
}

// walkKeys records the line of every key (value lines for list items) and
// rejects unknown keys. kind selects the key set; path is the key prefix.
func walkKeys(n *yaml.Node, kind, path string, lines map[string]int) error {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		lines[path] = n.Line
		return keyErr(path, "want a mapping of keys (%s)", strings.Join(configKeys[kind], ", "))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if path != "" {
			key = path + "." + k.Value
		}
		lines[key] = k.Line
		if !slices.Contains(configKeys[kind], k.Value) {
			return keyErr(key, "unknown key %q (known: %s)", k.Value, strings.Join(configKeys[kind], ", "))
		}
		switch {
		case kind == "" && k.Value == "ldap" && v.Kind != yaml.ScalarNode:
			if err := walkKeys(v, "ldap", "ldap", lines); err != nil {
				return err
			}
		case kind == "ldap" && k.Value == "urls" && v.Kind == yaml.SequenceNode:
			for j, item := range v.Content {
				lines[fmt.Sprintf("%s[%d]", key, j)] = item.Line
			}
		case kind == "" && k.Value == "grants" && v.Kind == yaml.SequenceNode:
			for j, item := range v.Content {
				p := fmt.Sprintf("grants[%d]", j)
				lines[p] = item.Line
				if err := walkKeys(item, "grants", p, lines); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// config validates fc and converts it; errors are *keyError.
func (fc *fileConfig) config() (*Config, error) {
	c := DefaultConfig()
	c.PreferLocal = fc.PreferLocal
	if fc.SessionTTL != "" {
		d, err := parseDuration(fc.SessionTTL)
		if err != nil {
			return nil, keyErr("session_ttl", "%v", err)
		}
		c.SessionTTL = d
	}
	if c.SessionTTL < MinSessionTTL || c.SessionTTL > MaxSessionTTL {
		return nil, keyErr("session_ttl", "%s is outside 5m..7d", c.SessionTTL)
	}
	if l := fc.LDAP; l != nil {
		c.LDAP = &LDAPConfig{
			URLs: l.URLs, StartTLS: l.StartTLS, InsecurePlaintext: l.InsecurePlaintext,
			CAFile: l.CAFile, ServerName: l.ServerName, BindDN: l.BindDN, BindPasswordFile: l.BindPasswordFile,
			UserBase: l.UserBase, UserFilter: l.UserFilter, UsernameAttribute: l.UsernameAttribute,
			GroupBase: l.GroupBase, GroupFilter: l.GroupFilter,
		}
		if l.Timeout != "" {
			d, err := parseDuration(l.Timeout)
			if err != nil {
				return nil, keyErr("ldap.timeout", "%v", err)
			}
			if d == 0 {
				return nil, keyErr("ldap.timeout", "0 is outside 1s..2m")
			}
			c.LDAP.Timeout = d
		}
		if err := c.LDAP.Validate(); err != nil {
			return nil, err
		}
	}
	for i, g := range fc.Grants {
		key := fmt.Sprintf("grants[%d]", i)
		if g.Group == "" {
			return nil, keyErr(key+".group", "required: the group's DN")
		}
		if _, err := ldap.ParseDN(g.Group); err != nil {
			return nil, keyErr(key+".group", "%q is not a DN: %v", g.Group, err)
		}
		role, err := ParseRole(g.Role)
		if err != nil {
			return nil, keyErr(key+".role", "%s", reason(err))
		}
		sel, err := ParseSelector(g.Hosts)
		if err != nil {
			return nil, keyErr(key+".hosts", "%s", reason(err))
		}
		c.Grants = append(c.Grants, GroupGrant{Group: g.Group, Grant: Grant{Role: role, Hosts: sel.String()}})
	}
	if len(c.Grants) > 0 && c.LDAP == nil {
		return nil, keyErr("grants", "group grants need an ldap: section")
	}
	return c, nil
}

// reason is a validation error's text without its field name.
func reason(err error) string {
	var ve *host.ValidationError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return err.Error()
}

// parseDuration reads a Go duration ("90m", "8h") or whole days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("%q is not a duration like 8h, 90m or 7d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration like 8h, 90m or 7d", s)
	}
	return d, nil
}
