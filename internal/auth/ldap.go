package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// The directory client's errors. Callers see only these two (errors.Is);
// the wrapped text is for logs and never holds a password.
var (
	// ErrInvalidCredentials is a wrong password, an unknown, ambiguous,
	// disabled, locked or expired account, an empty password or a malformed
	// user name: all the same to callers.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrDirectoryDown is no URL answering, a timeout, or the service
	// account's bind failing.
	ErrDirectoryDown = errors.New("directory unavailable")
)

// MaxUsernameLen bounds a login name in bytes.
const MaxUsernameLen = 256

// maxPasswordLen bounds a password in bytes (AD allows 256 characters).
const maxPasswordLen = 1024

// DirectoryUser is a user as the directory sees them now.
type DirectoryUser struct {
	Name   string   // "alice": the username_attribute value, the one identity for "alice" and "alice@example.test"
	DN     string   // "CN=alice,CN=Users,DC=example,DC=test"
	Groups []string // group DNs, nested membership included
	Grants []Grant  // the configured grants of those groups
}

// Directory authenticates users against an LDAP directory or Active
// Directory and maps their groups to grants. It keeps no connection: every
// call dials (URLs in order), binds and closes. Safe for concurrent use.
type Directory struct {
	c          *LDAPConfig
	grants     []GroupGrant
	grantDNs   []*ldap.DN // parsed grants[i].Group
	userFilter string     // c.UserFilter, widened to userPrincipalName for AD
	tlsConfig  *tls.Config
}

// NewDirectory validates c (reading its bind password and CA) and returns
// a client giving grants by group.
func NewDirectory(c *LDAPConfig, grants []GroupGrant) (*Directory, error) {
	if c == nil {
		return nil, errors.New("ldap: no configuration")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("ldap: %w", err)
	}
	d := &Directory{c: c, grants: grants, userFilter: upnFilter(c.UserFilter)}
	for i, g := range grants {
		dn, err := ldap.ParseDN(g.Group)
		if err != nil || g.Group == "" {
			return nil, fmt.Errorf("ldap: grants[%d].group %q is not a DN", i, g.Group)
		}
		if err := g.Grant.Check(); err != nil {
			return nil, fmt.Errorf("ldap: grants[%d]: %w", i, err)
		}
		d.grantDNs = append(d.grantDNs, dn)
	}
	if c.rootCAs != nil {
		d.tlsConfig = &tls.Config{RootCAs: c.rootCAs, MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	}
	return d, nil
}

// samTerm is the sAMAccountName equality of an AD user filter.
var samTerm = regexp.MustCompile(`(?i)\(sAMAccountName=\{username\}\)`)

// upnFilter lets an AD filter that matches (sAMAccountName={username}) also
// match the user principal name, so "alice@example.test" logs in as alice.
// A filter that already names userPrincipalName is left alone.
func upnFilter(f string) string {
	if strings.Contains(strings.ToLower(f), "userprincipalname") {
		return f
	}
	return samTerm.ReplaceAllLiteralString(f, "(|(sAMAccountName={username})(userPrincipalName={username}))")
}

// CheckUsername reports whether s may be sent to a directory as a login
// name: 1..256 bytes of valid UTF-8 without control characters.
func CheckUsername(s string) error {
	switch {
	case s == "":
		return errors.New("empty user name")
	case len(s) > MaxUsernameLen:
		return fmt.Errorf("user name longer than %d bytes", MaxUsernameLen)
	case !utf8.ValidString(s):
		return errors.New("user name is not UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("user name holds a control character")
	}
	return nil
}

// Authenticate checks username and password against the directory (a bind
// as the user's DN) and returns the user with the grants of their groups.
// It returns ErrInvalidCredentials (wrapped) for any refusal and
// ErrDirectoryDown (wrapped) when the directory cannot be asked. An empty
// password is refused before any network call: an LDAP bind with a DN and
// no password is an "unauthenticated bind" that many servers accept.
func (d *Directory) Authenticate(ctx context.Context, username, password string) (DirectoryUser, error) {
	if err := CheckUsername(username); err != nil {
		return DirectoryUser{}, fmt.Errorf("ldap: %v: %w", err, ErrInvalidCredentials)
	}
	if password == "" || len(password) > maxPasswordLen {
		return DirectoryUser{}, fmt.Errorf("ldap: empty or oversized password: %w", ErrInvalidCredentials)
	}
	return d.do(ctx, username, func(conn *ldap.Conn, u DirectoryUser) error {
		if err := conn.Bind(u.DN, password); err != nil {
			return d.failure(ctx, "bind as "+u.DN, err)
		}
		return nil
	})
}

// Lookup reads username's entry and groups with the service account only
// (no password): the periodic re-check of a directory user's personal
// tokens. A user who is gone, ambiguous, disabled, locked or expired is
// ErrInvalidCredentials.
func (d *Directory) Lookup(ctx context.Context, username string) (DirectoryUser, error) {
	if err := CheckUsername(username); err != nil {
		return DirectoryUser{}, fmt.Errorf("ldap: %v: %w", err, ErrInvalidCredentials)
	}
	return d.do(ctx, username, nil)
}

// do connects, finds the user, reads their groups and then runs check (the
// user's bind) on the same connection.
func (d *Directory) do(ctx context.Context, username string, check func(*ldap.Conn, DirectoryUser) error) (DirectoryUser, error) {
	conn, stop, err := d.connect(ctx)
	if err != nil {
		return DirectoryUser{}, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, d.c.Timeout)
	defer cancel()
	context.AfterFunc(ctx, func() { conn.Close() }) // ends any pending request
	d.setTimeout(ctx, conn)

	entry, err := d.findUser(ctx, conn, username)
	if err != nil {
		return DirectoryUser{}, err
	}
	if why := accountRefusal(entry, time.Now()); why != "" {
		return DirectoryUser{}, fmt.Errorf("ldap: %s: %s: %w", entry.DN, why, ErrInvalidCredentials)
	}
	name := d.canonicalName(entry)
	if CheckUsername(name) != nil {
		return DirectoryUser{}, fmt.Errorf("ldap: %s: no usable user name attribute: %w", entry.DN, ErrInvalidCredentials)
	}
	u := DirectoryUser{Name: name, DN: entry.DN}
	groups, err := d.groups(ctx, conn, entry)
	if err != nil {
		return DirectoryUser{}, err
	}
	u.Groups = groups
	u.Grants = d.grantsOf(groups)
	if check != nil {
		if err := check(conn, u); err != nil {
			return DirectoryUser{}, err
		}
	}
	return u, nil
}

// connect dials the URLs in order and binds as the service account on the
// first that answers. stop closes the connection.
func (d *Directory) connect(ctx context.Context) (*ldap.Conn, func(), error) {
	var errs []error
	for _, raw := range d.c.URLs {
		if ctx.Err() != nil {
			break
		}
		conn, stop, err := d.connectOne(ctx, raw)
		if err == nil {
			return conn, stop, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", raw, err))
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("ldap: %w: %w", ErrDirectoryDown, errors.Join(errs...))
}

func (d *Directory) connectOne(ctx context.Context, raw string) (*ldap.Conn, func(), error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	ldaps := strings.EqualFold(u.Scheme, "ldaps")
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[bool]string{true: "636", false: "389"}[ldaps])
	}
	ctx, cancel := context.WithTimeout(ctx, d.c.Timeout)
	defer cancel()
	nc, err := (&net.Dialer{Timeout: d.c.Timeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	tlsConfig := d.tlsConfig.Clone()
	if tlsConfig != nil && tlsConfig.ServerName == "" {
		tlsConfig.ServerName = u.Hostname()
	}
	if ldaps {
		tc := tls.Client(nc, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, nil, err
		}
		nc = tc
	}
	conn := ldap.NewConn(nc, ldaps)
	conn.Start()
	// A cancelled ctx closes the connection, which ends any pending request.
	unwatch := context.AfterFunc(ctx, func() { conn.Close() })
	d.setTimeout(ctx, conn)
	if !ldaps && d.c.StartTLS {
		if err := conn.StartTLS(tlsConfig); err != nil {
			unwatch()
			conn.Close()
			return nil, nil, fmt.Errorf("starttls: %w", err)
		}
	}
	if err := conn.Bind(d.c.BindDN, d.c.bindPassword); err != nil {
		unwatch()
		conn.Close()
		return nil, nil, fmt.Errorf("service bind as %s: %w", d.c.BindDN, err)
	}
	if !unwatch() { // ctx ended during the bind
		conn.Close()
		return nil, nil, context.Cause(ctx)
	}
	return conn, func() { conn.Close() }, nil
}

// setTimeout bounds each request by the configured timeout and ctx's
// deadline.
func (d *Directory) setTimeout(ctx context.Context, conn *ldap.Conn) {
	t := d.c.Timeout
	if dl, ok := ctx.Deadline(); ok {
		t = min(t, max(time.Until(dl), time.Millisecond))
	}
	conn.SetTimeout(t)
}

// userAttributes are read from the user's entry; servers ignore the ones
// they do not know.
var userAttributes = []string{
	"sAMAccountName", "uid", "memberOf",
	"userAccountControl", "msDS-User-Account-Control-Computed", "accountExpires", // AD
	"pwdAccountLockedTime", // OpenLDAP ppolicy
}

func (d *Directory) findUser(ctx context.Context, conn *ldap.Conn, username string) (*ldap.Entry, error) {
	attrs := userAttributes
	if a := d.c.UsernameAttribute; a != "" {
		attrs = append(slices.Clone(attrs), a)
	}
	res, err := conn.Search(&ldap.SearchRequest{
		BaseDN:       d.c.UserBase,
		Scope:        ldap.ScopeWholeSubtree,
		DerefAliases: ldap.NeverDerefAliases,
		SizeLimit:    2,
		TimeLimit:    int(d.c.Timeout / time.Second),
		Filter:       substitute(d.userFilter, "{username}", username),
		Attributes:   attrs,
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return nil, fmt.Errorf("ldap: user name matches several entries: %w", ErrInvalidCredentials)
	}
	if err != nil {
		return nil, d.failure(ctx, "search user", err)
	}
	switch len(res.Entries) {
	case 0:
		return nil, fmt.Errorf("ldap: no such user: %w", ErrInvalidCredentials)
	case 1:
		return res.Entries[0], nil
	default:
		return nil, fmt.Errorf("ldap: user name matches several entries: %w", ErrInvalidCredentials)
	}
}

// canonicalName is the username_attribute value (default sAMAccountName,
// else uid): the same for every way of naming the user at login.
func (d *Directory) canonicalName(e *ldap.Entry) string {
	if a := d.c.UsernameAttribute; a != "" {
		return e.GetAttributeValue(a)
	}
	if v := e.GetAttributeValue("sAMAccountName"); v != "" {
		return v
	}
	return e.GetAttributeValue("uid")
}

// AD userAccountControl and msDS-User-Account-Control-Computed bits.
const (
	uacAccountDisable  = 0x2
	uacLockout         = 0x10
	uacPasswordExpired = 0x800000
)

// ppolicyAdminLock is the pwdAccountLockedTime value of an account an
// administrator locked for good (OpenLDAP ppolicy, draft-behera).
const ppolicyAdminLock = "000001010000Z"

// accountRefusal says why a found account may not log in, or "".
func accountRefusal(e *ldap.Entry, now time.Time) string {
	if v, err := strconv.ParseInt(e.GetAttributeValue("userAccountControl"), 10, 64); err == nil && v&uacAccountDisable != 0 {
		return "account disabled"
	}
	if v, err := strconv.ParseInt(e.GetAttributeValue("msDS-User-Account-Control-Computed"), 10, 64); err == nil {
		if v&uacLockout != 0 {
			return "account locked out"
		}
		if v&uacPasswordExpired != 0 {
			return "password expired"
		}
	}
	// accountExpires: 100 ns intervals since 1601; 0 and 2^63-1 mean never.
	if v, err := strconv.ParseInt(e.GetAttributeValue("accountExpires"), 10, 64); err == nil && v > 0 && v < 1<<63-1 {
		const epochDiff = 116444736000000000 // 1601-01-01 to 1970-01-01 in 100 ns
		if time.Unix(0, (v-epochDiff)*100).Before(now) {
			return "account expired"
		}
	}
	if e.GetAttributeValue("pwdAccountLockedTime") == ppolicyAdminLock {
		return "account locked by an administrator"
	}
	return ""
}

// groups returns the DNs of the user's groups: the group search (nested
// with AD's in-chain rule) and the entry's memberOf (nested with OpenLDAP's
// dynlist), without duplicates.
func (d *Directory) groups(ctx context.Context, conn *ldap.Conn, e *ldap.Entry) ([]string, error) {
	dns := e.GetAttributeValues("memberOf")
	if d.c.GroupFilter != "" {
		res, err := conn.SearchWithPaging(&ldap.SearchRequest{
			BaseDN:       d.c.GroupBase,
			Scope:        ldap.ScopeWholeSubtree,
			DerefAliases: ldap.NeverDerefAliases,
			TimeLimit:    int(d.c.Timeout / time.Second),
			Filter:       substitute(d.c.GroupFilter, "{userdn}", e.DN),
			Attributes:   []string{"1.1"}, // DNs only
		}, 500)
		if err != nil {
			return nil, d.failure(ctx, "search groups", err)
		}
		for _, g := range res.Entries {
			dns = append(dns, g.DN)
		}
	}
	var out []string
	var seen []*ldap.DN
	for _, s := range dns {
		dn, err := ldap.ParseDN(s)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(seen, dn.EqualFold) {
			continue
		}
		seen = append(seen, dn)
		out = append(out, s)
	}
	return out, nil
}

// grantsOf returns the configured grants of these groups.
func (d *Directory) grantsOf(groups []string) []Grant {
	var out []Grant
	for _, s := range groups {
		dn, err := ldap.ParseDN(s)
		if err != nil {
			continue
		}
		for i, g := range d.grantDNs {
			if g.EqualFold(dn) && !slices.Contains(out, d.grants[i].Grant) {
				out = append(out, d.grants[i].Grant)
			}
		}
	}
	return out
}

// failure classifies an error of a request after the service bind:
// refusals are ErrInvalidCredentials, the rest ErrDirectoryDown.
func (d *Directory) failure(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("ldap: %s: %w: %w", what, ErrDirectoryDown, context.Cause(ctx))
	}
	if ldap.IsErrorAnyOf(err,
		ldap.LDAPResultInvalidCredentials,          // 49; AD adds "data 52e/525/530/531/532/533/701/773/775"
		ldap.LDAPResultInappropriateAuthentication, // 48
		ldap.LDAPResultUnwillingToPerform,          // 53: e.g. slapd refusing an unauthenticated bind
		ldap.LDAPResultConstraintViolation,         // 19: AD password policy on bind
		ldap.LDAPResultInsufficientAccessRights,    // 50
		ldap.LDAPResultNoSuchObject,                // 32: the user vanished between search and bind
	) {
		return fmt.Errorf("ldap: %s: %s: %w", what, adReason(err), ErrInvalidCredentials)
	}
	return fmt.Errorf("ldap: %s: %w: %w", what, ErrDirectoryDown, err)
}

// adReasons names the AD sub-codes of result 49 ("…, data 533, …").
var adReasons = map[string]string{
	"525": "no such user", "52e": "wrong password", "530": "logon time restriction",
	"531": "workstation restriction", "532": "password expired", "533": "account disabled",
	"701": "account expired", "773": "password must be changed", "775": "account locked out",
}

var adData = regexp.MustCompile(`data ([0-9a-f]{3})`)

// adReason renders an LDAP refusal for logs: the result code and, for AD,
// what the "data" sub-code means. Never the request, so never a password.
func adReason(err error) string {
	var le *ldap.Error
	if !errors.As(err, &le) || le.Err == nil {
		return "refused"
	}
	s := ldap.LDAPResultCodeMap[le.ResultCode]
	if m := adData.FindStringSubmatch(le.Err.Error()); m != nil {
		if r, ok := adReasons[m[1]]; ok {
			return s + " (" + r + ")"
		}
		return s + " (data " + m[1] + ")"
	}
	return s
}
