package ipxe

import (
	"bytes"
	_ "embed"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"text/template"

	"github.com/bootpilot/bootpilot/internal/host"
)

// MaxScript is the size of the embedded-script slot in the stock binaries.
const MaxScript = 1713

// Stage0Config is what a stage-0 script needs. Host is normalized and
// validated by Stage0; nothing in it can inject iPXE syntax.
type Stage0Config struct {
	Host      host.Host // the host; Normalize is called on a copy
	Token     string    // the host's boot token, lower-case hex
	ServerURL string    // "https://10.0.2.100:8443" or "https://boot.example.org"
	Tries     int       // fetch attempts before exit 1; default 4
	Sleep     int       // first back-off in seconds, doubled each retry; default 2
	TimeoutMS int       // chain --timeout in milliseconds; default 20000
	NICs      int       // interfaces net0..net(NICs-1) searched for the MACs; default 4
}

//go:embed stage0.ipxe.tmpl
var stage0Text string

var stage0Tmpl = template.Must(template.New("stage0").Option("missingkey=error").Parse(stage0Text))

var (
	tokenRE   = regexp.MustCompile(`^[0-9a-f]{16,128}$`)
	dnsNameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// stage0Data is the template's input; every string was validated.
type stage0Data struct {
	Name                          string
	MACs                          []string
	VLAN                          int
	IP, Netmask, Gateway, DNS     string
	IP6                           string
	Len6                          int
	Gateway6                      string
	URL                           string
	NICs, Tries, Sleep, TimeoutMS int
}

// ServerBase validates a server URL of the form https://HOST[:PORT] (HOST an
// IP address or DNS name, no path, user or query) and returns it as
// "HOST[:PORT]" for use after the credentials.
func ServerBase(serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", host.Invalid("server_url", "%q is not https://HOST[:PORT]", serverURL)
	}
	h := u.Hostname()
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", host.Invalid("server_url", "%q has a zoned address", serverURL)
		}
	} else if len(h) > 253 || !dnsNameRE.MatchString(h) {
		return "", host.Invalid("server_url", "%q is not an IP address or DNS name", h)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", host.Invalid("server_url", "%q is not a port", p)
		}
	}
	return u.Host, nil
}

// Stage0 renders the per-host stage-0 script: find the NIC by MAC, set the
// static addresses, and chain the server's boot script with the host's name
// and token as HTTP Basic credentials, with bounded retries and back-off, and
// exit 1 (next boot device) on every failure path. The URL is stored in the
// setting bootpilot/url, which stage-1 scripts re-chain.
func Stage0(c Stage0Config) ([]byte, error) {
	h := c.Host
	h.MACs = append([]string(nil), c.Host.MACs...)
	h.DNS = append([]string(nil), c.Host.DNS...)
	if err := h.Normalize(); err != nil {
		return nil, err
	}
	if !tokenRE.MatchString(c.Token) {
		return nil, host.Invalid("token", "must be 16-128 lower-case hex digits")
	}
	base, err := ServerBase(c.ServerURL)
	if err != nil {
		return nil, err
	}
	pfx := netip.MustParsePrefix(h.IPv4)
	d := stage0Data{
		Name: h.Name, MACs: h.MACs, VLAN: h.VLAN,
		IP: pfx.Addr().String(), Netmask: net.IP(net.CIDRMask(pfx.Bits(), 32)).String(),
		Gateway: h.Gateway, URL: "https://" + h.Name + ":" + c.Token + "@" + base,
		NICs: def(c.NICs, 4), Tries: def(c.Tries, 4), Sleep: def(c.Sleep, 2), TimeoutMS: def(c.TimeoutMS, 20000),
	}
	for _, s := range h.DNS {
		if a := netip.MustParseAddr(s); a.Is4() {
			d.DNS = s
			break
		}
	}
	if d.DNS == "" {
		return nil, host.Invalid("dns", "iPXE needs an IPv4 DNS server")
	}
	if h.IPv6 != "" {
		p6 := netip.MustParsePrefix(h.IPv6)
		d.IP6, d.Len6, d.Gateway6 = p6.Addr().String(), p6.Bits(), h.Gateway6
	}
	var buf bytes.Buffer
	if err := stage0Tmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("ipxe: render stage 0: %w", err)
	}
	if buf.Len() > MaxScript {
		return nil, host.Invalid("script", "stage-0 script is %d bytes, %d over the %d-byte slot (fewer MACs?)", buf.Len(), buf.Len()-MaxScript, MaxScript)
	}
	return buf.Bytes(), nil
}

func def(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}
