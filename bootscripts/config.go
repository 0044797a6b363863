package bootscripts

import (
	"crypto/x509"
	"encoding/pem"
	"strconv"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
)

// ConfigData is what installer config templates see, the built-in ones and
// a profile's own Config alike. Every value has been validated; strings that
// are not single words (CAPEM) must be quoted by the template ({{json .CAPEM}}
// in YAML, a quoted here-document in shell).
type ConfigData struct {
	Name      string   // "node01"
	Hostname  string   // "node01"
	Domain    string   // "example.org" or ""
	FQDN      string   // "node01.example.org", or Hostname without a domain
	MAC       string   // "52:54:00:12:34:56": the first (boot) NIC
	Interface string   // "bootnet": the name configs give the boot NIC where they can
	IPv4      string   // "10.0.2.15"
	Prefix    int      // 24
	Netmask   string   // "255.255.255.0"
	CIDR      string   // "10.0.2.15/24"
	Gateway   string   // "10.0.2.2"
	DNS       []string // ["10.0.2.3"]
	IPv6      string   // "2001:db8::15" or ""
	Prefix6   int      // 64 (0 without IPv6)
	CIDR6     string   // "2001:db8::15/64" or ""
	Gateway6  string   // "2001:db8::1" or ""
	VLAN      int      // 0: untagged

	Profile   string // "rocky9"
	Installer string // "kickstart"
	Attempt   int    // 1
	After     string // "reboot" or "poweroff"

	ServerURL     string // "https://10.0.2.100:8443"
	CallbackURL   string // "https://10.0.2.100:8443/boot/v1/callback/node01/<one-time-token>"
	ConfigURL     string // "https://10.0.2.100:8443/boot/v1/config/node01/<one-time-token>"
	CAPEM         string // "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n" (re-encoded)
	CAFingerprint string // hex SHA-256 of the CA certificate DER, or ""
	// CAFile is where iPXE put CAPEM in the installer's initramfs (preseed:
	// d-i runs from its initramfs, so its early_command can pin it).
	CAFile string // "/bootpilot-ca.pem"

	// CallbackStarted, CallbackInstalled and CallbackFailed are the JSON
	// bodies to POST to CallbackURL (Content-Type: application/json).
	CallbackStarted   string // `{"event":"progress","detail":"installer started"}`
	CallbackInstalled string // `{"event":"installed"}`
	CallbackFailed    string // `{"event":"failed"}`
}

const (
	bodyStarted   = `{"event":"progress","detail":"installer started"}`
	bodyInstalled = `{"event":"installed"}`
	bodyFailed    = `{"event":"failed"}`
)

// canonicalPEM parses one or more PEM certificates and re-encodes them, so
// nothing but base64 and the BEGIN/END lines reaches a config.
func canonicalPEM(s string) (string, error) {
	rest := []byte(s)
	var out strings.Builder
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return "", host.Invalid("ca_pem", "holds a %q block, want CERTIFICATE", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return "", host.Invalid("ca_pem", "bad certificate: %v", err)
		}
		out.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes}))
	}
	if out.Len() == 0 || strings.TrimSpace(string(rest)) != "" {
		return "", host.Invalid("ca_pem", "is not a PEM certificate")
	}
	return out.String(), nil
}

// newConfigData validates d and builds the data for config templates.
func newConfigData(d ScriptData) (*ConfigData, error) {
	n, err := checkNet(d.Host)
	if err != nil {
		return nil, err
	}
	if err := host.ValidName("profile", d.Profile.Name); err != nil {
		return nil, err
	}
	for _, f := range []struct{ field, url string }{
		{"server_url", d.ServerURL}, {"callback_url", d.CallbackURL}, {"config_url", d.ConfigURL},
	} {
		if err := host.CheckURL(f.field, f.url); err != nil {
			return nil, err
		}
	}
	ca, err := canonicalPEM(d.CAPEM)
	if err != nil {
		return nil, err
	}
	if d.CAFingerprint != "" && !hexFingerprint.MatchString(d.CAFingerprint) {
		return nil, host.Invalid("ca_fingerprint", "must be 64 lower-case hex digits")
	}
	after, err := checkAfter(d.After)
	if err != nil {
		return nil, err
	}
	if d.Attempt < 0 {
		return nil, host.Invalid("attempt", "%d is negative", d.Attempt)
	}
	return newConfigDataFrom(n, d, ca, after), nil
}

func newConfigDataFrom(n netView, d ScriptData, ca, after string) *ConfigData {
	c := &ConfigData{
		Name: d.Host.Name, Hostname: n.Hostname, Domain: n.Domain, FQDN: n.Hostname,
		MAC: n.MAC, Interface: bootnet,
		IPv4: n.IP, Prefix: n.Prefix, Netmask: n.Netmask, Gateway: n.Gateway, DNS: n.DNS,
		IPv6: n.IP6, Prefix6: n.Prefix6, Gateway6: n.Gateway6, VLAN: n.VLAN,
		Profile: d.Profile.Name, Installer: string(d.Profile.Installer), Attempt: d.Attempt, After: after,
		ServerURL: d.ServerURL, CallbackURL: d.CallbackURL, ConfigURL: d.ConfigURL,
		CAPEM: ca, CAFingerprint: d.CAFingerprint, CAFile: initrdCA,
		CallbackStarted: bodyStarted, CallbackInstalled: bodyInstalled, CallbackFailed: bodyFailed,
	}
	if n.Domain != "" {
		c.FQDN = n.Hostname + "." + n.Domain
	}
	c.CIDR = n.IP + "/" + strconv.Itoa(n.Prefix)
	if n.IP6 != "" {
		c.CIDR6 = n.IP6 + "/" + strconv.Itoa(n.Prefix6)
	}
	return c
}

// samplePEM is a syntactically valid stand-in certificate for
// CheckConfigTemplate (never parsed, never trusted).
const samplePEM = "-----BEGIN CERTIFICATE-----\nMIIBsample\n-----END CERTIFICATE-----\n"

// SampleConfigData returns the example data CheckConfigTemplate executes a
// user template against: every field set, IPv6 and a VLAN included.
func SampleConfigData() *ConfigData {
	n := netView{
		MAC: "52:54:00:12:34:56", IP: "10.0.2.15", Prefix: 24, Netmask: "255.255.255.0",
		Gateway: "10.0.2.2", DNS: []string{"10.0.2.3", "10.0.2.4"},
		IP6: "2001:db8::15", Prefix6: 64, Gateway6: "2001:db8::1", VLAN: 100,
		Hostname: "node01", Domain: "example.org",
	}
	d := ScriptData{
		Host:          host.Host{Name: "node01"},
		Profile:       host.Profile{Name: "sample", Installer: host.InstallerKickstart},
		Attempt:       1,
		ServerURL:     "https://10.0.2.100:8443",
		CallbackURL:   "https://10.0.2.100:8443/boot/v1/callback/node01/sampletoken",
		ConfigURL:     "https://10.0.2.100:8443/boot/v1/config/node01/sampletoken",
		CAFingerprint: strings.Repeat("0", 64),
	}
	return newConfigDataFrom(n, d, samplePEM, defaultAfter)
}
