package images

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/bootpilot/bootpilot/internal/host"
)

// origin is one entry of Cache.Origins: a scheme (or both, for a bare
// registry host), a host name or address and a port.
type origin struct {
	schemes []string // "https"; "http"; or both for a registry host
	host    string   // lower case, IPv6 without brackets
	port    string   // "" for a registry host without a port: the scheme's default
}

// CheckOrigins reports whether every entry of list is a valid origin for
// Cache.Origins: "https://HOST[:PORT]", "http://HOST[:PORT]" or a registry
// "HOST[:PORT]", with no credentials, path, query or fragment.
func CheckOrigins(list []string) error {
	_, err := parseOrigins(list)
	return err
}

func parseOrigins(list []string) ([]origin, error) {
	out := make([]origin, 0, len(list))
	for _, s := range list {
		o, err := parseOrigin(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func parseOrigin(s string) (origin, error) {
	bad := host.Invalid("image-origin", "%q: want https://HOST[:PORT] or a registry HOST[:PORT], with no credentials, path or query", Redact(s))
	raw, schemes := s, []string{"https", "http"}
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		if scheme != "https" && scheme != "http" {
			return origin{}, bad
		}
		schemes = []string{scheme}
	} else {
		raw = "https://" + s
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") || u.Hostname() == "" {
		return origin{}, bad
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return origin{}, bad
		}
	}
	return origin{schemes: schemes, host: strings.ToLower(u.Hostname()), port: u.Port()}, nil
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

// allows reports whether u is on o: same scheme, host and port.
func (o origin) allows(u *url.URL) bool {
	scheme := strings.ToLower(u.Scheme)
	ok := false
	for _, s := range o.schemes {
		ok = ok || s == scheme
	}
	if !ok || !strings.EqualFold(u.Hostname(), o.host) {
		return false
	}
	port, want := u.Port(), o.port
	if port == "" {
		port = defaultPort(scheme)
	}
	if want == "" {
		want = defaultPort(scheme)
	}
	return port == want
}

// allowedURL reports whether u is on one of c's origins.
func (c *Cache) allowedURL(u *url.URL) bool {
	for _, o := range c.origins {
		if o.allows(u) {
			return true
		}
	}
	return false
}

// originOf is u's scheme, host and port: what an origin check is about, and
// safe to show (no credentials, path or query).
func originOf(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + u.Host
}

// errRemoteDisabled is the answer to a remote source when no origin is configured.
var errRemoteDisabled = host.Invalid("ref",
	"remote image sources are disabled on this server; allow an origin with serve --image-origin https://HOST[:PORT] (or a registry HOST[:PORT])")

// checkRemote refuses u unless it is on an allowed origin.
func (c *Cache) checkRemote(u *url.URL) error {
	if len(c.origins) == 0 {
		return errRemoteDisabled
	}
	if !c.allowedURL(u) {
		return host.Invalid("ref", "%s is not an allowed image origin (serve --image-origin)", originOf(u))
	}
	return nil
}

// checkHop checks one request of a fetch, redirects included: the target
// must be on an allowed origin, and a redirect must not leave https.
func (c *Cache) checkHop(from, to *url.URL) error {
	if from != nil && strings.EqualFold(from.Scheme, "https") && !strings.EqualFold(to.Scheme, "https") {
		return fmt.Errorf("redirect from %s to %s refused: it leaves https", originOf(from), originOf(to))
	}
	if !c.allowedURL(to) {
		if from != nil {
			return fmt.Errorf("redirect to %s refused: not an allowed image origin (serve --image-origin)", originOf(to))
		}
		return fmt.Errorf("%s is not an allowed image origin (serve --image-origin)", originOf(to))
	}
	return nil
}

// checkRedirect is the http.Client's CheckRedirect for URL sources.
func (c *Cache) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return c.checkHop(via[len(via)-1].URL, req.URL)
}

// guardedTransport checks every request against the origins before it is
// sent. It covers what CheckRedirect cannot: the OCI client's own requests
// (token realm, blob redirects to storage) go through it too.
type guardedTransport struct {
	c    *Cache
	base http.RoundTripper
}

func (t guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var from *url.URL
	if req.Response != nil && req.Response.Request != nil {
		from = req.Response.Request.URL // this request follows a redirect
	}
	if err := t.c.checkHop(from, req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return t.base.RoundTrip(req)
}

// BlockedAddressError is a connection refused because its destination is
// not a public address and the cache does not allow private ones.
type BlockedAddressError struct {
	Addr   string // "127.0.0.1:443"
	Reason string // "loopback"
}

func (e *BlockedAddressError) Error() string {
	return fmt.Sprintf("connection to %s refused: %s address (serve --image-allow-private allows it)", e.Addr, e.Reason)
}

// controlDial runs for every connection attempt with the address actually
// dialled, after DNS resolution, so a name that resolves (or rebinds) to an
// internal address is refused.
func (c *Cache) controlDial(_, address string, _ syscall.RawConn) error {
	if c.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedAddressError{Addr: address, Reason: "unparsable"}
	}
	if why := blockedReason(ap.Addr()); why != "" {
		return &BlockedAddressError{Addr: address, Reason: why}
	}
	return nil
}

var blockedPrefixes = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local NAT64"},
}

// Prefixes that embed an IPv4 address, which decides.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
	compat = netip.MustParsePrefix("::/96")
)

// blockedReason says why a is not a public unicast address, or "".
func blockedReason(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private" // 10/8, 172.16/12, 192.168/16, fc00::/7 (ULA)
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	}
	for _, b := range blockedPrefixes {
		if b.p.Contains(a) {
			return b.why
		}
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a), compat.Contains(a):
			return blockedReason(netip.AddrFrom4([4]byte(b[12:16])))
		case sixTo4.Contains(a):
			return blockedReason(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	return ""
}

// dialer is the one dialer of a Cache: every connection goes through
// controlDial.
func (c *Cache) dialer() *net.Dialer {
	return &net.Dialer{Timeout: dialTimeout, KeepAlive: keepAlive, Control: c.controlDial}
}
