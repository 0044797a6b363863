package host

import (
	"encoding/json"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Host is one bare-metal server.
type Host struct {
	Name     string   `json:"name"`               // "node01"
	MACs     []string `json:"macs"`               // ["52:54:00:12:34:56"], lower case
	IPv4     string   `json:"ipv4"`               // "10.0.2.15/24"
	Gateway  string   `json:"gateway"`            // "10.0.2.2"
	DNS      []string `json:"dns"`                // ["10.0.2.3"]
	IPv6     string   `json:"ipv6,omitempty"`     // "2001:db8::15/64"
	Gateway6 string   `json:"gateway6,omitempty"` // "2001:db8::1"
	VLAN     int      `json:"vlan,omitempty"`     // 0: untagged
	Hostname string   `json:"hostname,omitempty"` // "node01"; defaults to Name
	Domain   string   `json:"domain,omitempty"`   // "example.org"
	Profile  string   `json:"profile,omitempty"`  // "rocky9"
	Labels   Labels   `json:"labels,omitempty"`   // {"team":"lab","site":"dc1"}: grants select hosts by them

	// CleanThenInstall makes a successful clean continue with a reimage.
	CleanThenInstall bool `json:"clean_then_install,omitempty"`

	State     State     `json:"state"`              // "ready"
	Attempt   int       `json:"attempt"`            // 1
	Deadline  time.Time `json:"deadline,omitzero"`  // end of the current attempt
	Version   int64     `json:"version"`            // bumped on every change
	Inventory Inventory `json:"inventory,omitzero"` // what the host said at its last boot

	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`

	// TokenHash is the SHA-256 (hex) of the host's boot token. Never rendered.
	TokenHash string `json:"-"`
	// CallbackHash is the SHA-256 (hex) of the current attempt's one-time
	// callback token. Never rendered.
	CallbackHash string `json:"-"`
	// LastCallback is the event the current attempt's callback applied ("" if
	// none yet); a repeated identical callback is then a no-op.
	LastCallback Event `json:"last_callback,omitempty"`
	// LastError says why the last boot could not be served what the state
	// asks for and booted the disk instead (a missing profile, a template
	// that does not render); cleared when a boot is served. No secrets.
	LastError string `json:"last_error,omitempty"`
}

// Record is one audit event: a state change or an admin action on a host.
// On the wire (MarshalJSON) it has one "event" field naming what happened,
// whichever of Event and Action holds it.
type Record struct {
	ID        int64    `json:"id"`
	Host      string   `json:"host"`                 // "node01"
	Actor     string   `json:"actor"`                // "admin", "boot", "callback", "system"
	Event     Event    `json:"event"`                // a lifecycle event: "reimage"; "" for other records
	Action    string   `json:"action,omitempty"`     // any other record: "create", "update", "delete", "token-rotate"
	From      State    `json:"from,omitempty"`       // "ready"
	To        State    `json:"to,omitempty"`         // "reimage"
	Attempt   int      `json:"attempt,omitempty"`    // 1
	Fields    []string `json:"fields,omitempty"`     // update: the fields that changed, ["ipv4", "dns"]; never values
	Reason    string   `json:"reason,omitempty"`     // free text, no secrets
	RequestID string   `json:"request_id,omitempty"` // X-Request-ID of the call
	// ClientAddr is the caller's address, "192.0.2.7" ("" for the server itself).
	ClientAddr string `json:"client_addr,omitempty"`
	// Subject names what a non-host record is about: a user ("local:bob"),
	// a token ("token:ci-builder"), a profile ("profile:rocky9"). "" for host records.
	Subject string    `json:"subject,omitempty"`
	Time    time.Time `json:"time"`
}

// Kind names what r records: its lifecycle event, else its action.
func (r Record) Kind() string {
	if r.Event != "" {
		return string(r.Event)
	}
	return r.Action
}

// IsZero reports whether r records nothing.
func (r Record) IsZero() bool {
	return r.ID == 0 && r.Host == "" && r.Actor == "" && r.Event == "" && r.Action == "" &&
		r.From == "" && r.To == "" && r.Attempt == 0 && len(r.Fields) == 0 && r.Reason == "" &&
		r.RequestID == "" && r.ClientAddr == "" && r.Subject == "" && r.Time.IsZero()
}

// recordJSON is a Record on the wire.
type recordJSON struct {
	ID         int64     `json:"id"`
	Host       string    `json:"host"`
	Actor      string    `json:"actor"`
	Event      string    `json:"event"`            // lifecycle event or action: "reimage", "update"
	Action     string    `json:"action,omitempty"` // read only: servers before the one "event" field
	From       State     `json:"from,omitempty"`
	To         State     `json:"to,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	Fields     []string  `json:"fields,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`
	ClientAddr string    `json:"client_addr,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	Time       time.Time `json:"time"`
}

// MarshalJSON renders r with one "event" field, its Kind:
//
//	{"id":7,"host":"node01","actor":"admin","event":"update","fields":["dns","ipv4"],"time":"…"}
//	{"id":8,"host":"node01","actor":"admin","event":"reimage","from":"ready","to":"reimage","time":"…"}
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(recordJSON{ID: r.ID, Host: r.Host, Actor: r.Actor, Event: r.Kind(), From: r.From,
		To: r.To, Attempt: r.Attempt, Fields: r.Fields, Reason: r.Reason, RequestID: r.RequestID, ClientAddr: r.ClientAddr, Subject: r.Subject, Time: r.Time})
}

// UnmarshalJSON reads what MarshalJSON writes, and the older shape with
// "event" for lifecycle events and "action" for the rest.
func (r *Record) UnmarshalJSON(b []byte) error {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Record{ID: j.ID, Host: j.Host, Actor: j.Actor, From: j.From, To: j.To, Attempt: j.Attempt,
		Fields: j.Fields, Reason: j.Reason, RequestID: j.RequestID, ClientAddr: j.ClientAddr, Subject: j.Subject, Time: j.Time}
	kind := j.Event
	if kind == "" {
		kind = j.Action
	}
	if Event(kind).Valid() {
		r.Event = Event(kind)
	} else {
		r.Action = kind
	}
	return nil
}

// APIToken is an admin API credential. Only its hash is stored.
type APIToken struct {
	Name      string    `json:"name"` // "admin"
	Hash      string    `json:"-"`    // SHA-256 hex
	Role      string    `json:"role"` // "admin"
	CreatedAt time.Time `json:"created_at"`
}

// Inventory is what a host reported about itself when it booted.
type Inventory struct {
	MAC      string    `json:"mac,omitempty"`      // "52:54:00:12:34:56"
	UUID     string    `json:"uuid,omitempty"`     // SMBIOS system UUID
	Serial   string    `json:"serial,omitempty"`   // SMBIOS serial number
	Asset    string    `json:"asset,omitempty"`    // SMBIOS asset tag
	Arch     string    `json:"arch,omitempty"`     // "x86_64"
	Platform string    `json:"platform,omitempty"` // "efi"
	SeenAt   time.Time `json:"seen_at,omitzero"`
}

// Installer is the kind of installer a profile boots.
type Installer string

// The installers.
const (
	InstallerKickstart   Installer = "kickstart"   // Anaconda (RHEL, Rocky, Alma, Fedora)
	InstallerPreseed     Installer = "preseed"     // Debian installer
	InstallerAutoinstall Installer = "autoinstall" // Ubuntu subiquity
	InstallerNone        Installer = "none"        // kernel + initrd only
	InstallerImage       Installer = "image"       // bootpilot-agent image deploy
)

// Profile says what "install" means for the hosts that use it.
type Profile struct {
	Name      string    `json:"name"`              // "rocky9"
	Kernel    string    `json:"kernel"`            // "https://mirror.example/rocky9/vmlinuz"
	Initrds   []string  `json:"initrds"`           // ["https://mirror.example/rocky9/initrd.img"]
	Cmdline   string    `json:"cmdline,omitempty"` // "inst.repo=https://mirror.example/rocky9 console=ttyS0"
	Installer Installer `json:"installer"`         // "kickstart"
	// Config replaces the built-in installer config template (Go text/template).
	Config string `json:"config,omitempty"`
	// FlipOnServe marks the install done when it is served, for installers
	// that cannot call back.
	FlipOnServe bool `json:"flip_on_serve,omitempty"`

	// Image deploys (Installer "image").
	Image       string `json:"image,omitempty"`        // "https://…/disk.raw.zst" or "registry/repo@sha256:…"
	ImageSHA256 string `json:"image_sha256,omitempty"` // hex digest of the image as served
	TargetDisk  string `json:"target_disk,omitempty"`  // hint: "serial=…", "size>=100G", "/dev/vda"
	// CleanMethod is used when this profile is the clean profile: zero, discard or metadata.
	CleanMethod string `json:"clean_method,omitempty"`

	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	domainRE   = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hexRE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	diskHintRE = regexp.MustCompile(`^[A-Za-z0-9_./:=<>+-]{1,128}$`)
)

// ValidName checks a host or profile name: a DNS label (lower case letters,
// digits and '-', at most 63 characters).
func ValidName(field, s string) error {
	if !nameRE.MatchString(s) {
		return Invalid(field, "%q is not a valid name (lower-case letters, digits and '-', 1-63 characters, no leading or trailing '-')", s)
	}
	return nil
}

// NormalizeMAC parses a MAC address in any common notation and returns it as
// lower-case colon-separated hex.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", Invalid("mac", "%q is not a 48-bit MAC address", s)
	}
	return hw.String(), nil
}

// Normalize canonicalizes h's fields (MAC notation, defaults) in place and
// validates every field that can reach a script or a config. It returns a
// *ValidationError naming the first bad field.
func (h *Host) Normalize() error {
	if err := ValidName("name", h.Name); err != nil {
		return err
	}
	if err := CheckLabels(h.Labels); err != nil {
		return err
	}
	if len(h.MACs) == 0 {
		return Invalid("macs", "at least one MAC address is required")
	}
	seen := map[string]bool{}
	for i, m := range h.MACs {
		n, err := NormalizeMAC(m)
		if err != nil {
			return Invalid("macs", "%q is not a 48-bit MAC address", m)
		}
		if seen[n] {
			return Invalid("macs", "%s is listed twice", n)
		}
		seen[n] = true
		h.MACs[i] = n
	}
	pfx, err := netip.ParsePrefix(h.IPv4)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() < 1 || pfx.Bits() > 32 {
		return Invalid("ipv4", "%q is not an IPv4 address with prefix length, like 10.0.2.15/24", h.IPv4)
	}
	if pfx.Addr() == pfx.Masked().Addr() && pfx.Bits() < 31 {
		return Invalid("ipv4", "%s is the network address of its subnet", h.IPv4)
	}
	h.IPv4 = pfx.String()
	gw, err := netip.ParseAddr(h.Gateway)
	if err != nil || !gw.Is4() {
		return Invalid("gateway", "%q is not an IPv4 address", h.Gateway)
	}
	if !pfx.Masked().Contains(gw) {
		return Invalid("gateway", "%s is outside the subnet %s", gw, pfx.Masked())
	}
	if gw == pfx.Addr() {
		return Invalid("gateway", "%s is the host's own address", gw)
	}
	h.Gateway = gw.String()
	if len(h.DNS) == 0 {
		return Invalid("dns", "at least one DNS server is required")
	}
	for i, d := range h.DNS {
		a, err := netip.ParseAddr(strings.TrimSpace(d))
		if err != nil || a.Zone() != "" {
			return Invalid("dns", "%q is not an IP address", d)
		}
		h.DNS[i] = a.String()
	}
	if h.IPv6 != "" {
		p6, err := netip.ParsePrefix(h.IPv6)
		if err != nil || !p6.Addr().Is6() || p6.Addr().Is4In6() || p6.Addr().Zone() != "" {
			return Invalid("ipv6", "%q is not an IPv6 address with prefix length, like 2001:db8::15/64", h.IPv6)
		}
		h.IPv6 = p6.String()
		if h.Gateway6 != "" {
			g6, err := netip.ParseAddr(h.Gateway6)
			if err != nil || !g6.Is6() || g6.Zone() != "" {
				return Invalid("gateway6", "%q is not an IPv6 address", h.Gateway6)
			}
			h.Gateway6 = g6.String()
		}
	} else if h.Gateway6 != "" {
		return Invalid("gateway6", "an IPv6 gateway needs an ipv6 address")
	}
	if h.VLAN < 0 || h.VLAN > 4094 {
		return Invalid("vlan", "%d is not a VLAN id (1-4094, or 0 for none)", h.VLAN)
	}
	if h.Hostname == "" {
		h.Hostname = h.Name
	}
	if err := ValidName("hostname", h.Hostname); err != nil {
		return err
	}
	if h.Domain != "" && (len(h.Domain) > 253 || !domainRE.MatchString(h.Domain)) {
		return Invalid("domain", "%q is not a valid DNS domain", h.Domain)
	}
	if h.Profile != "" {
		if err := ValidName("profile", h.Profile); err != nil {
			return err
		}
	}
	if h.State == "" {
		h.State = StateReady
	}
	if !h.State.Valid() {
		return Invalid("state", "%q is not a state", h.State)
	}
	return nil
}

// Normalize validates p's fields in place. It returns a *ValidationError
// naming the first bad field.
func (p *Profile) Normalize() error {
	if err := ValidName("name", p.Name); err != nil {
		return err
	}
	if p.Installer == "" {
		p.Installer = InstallerNone
	}
	switch p.Installer {
	case InstallerKickstart, InstallerPreseed, InstallerAutoinstall, InstallerNone, InstallerImage:
	default:
		return Invalid("installer", "%q is not one of kickstart, preseed, autoinstall, image, none", p.Installer)
	}
	if err := CheckURL("kernel", p.Kernel); err != nil {
		return err
	}
	for _, u := range p.Initrds {
		if err := CheckURL("initrds", u); err != nil {
			return err
		}
	}
	if err := CheckCmdline("cmdline", p.Cmdline); err != nil {
		return err
	}
	if p.Installer == InstallerImage {
		if p.Image == "" {
			return Invalid("image", "an image profile needs an image")
		}
		if !hexRE.MatchString(p.ImageSHA256) {
			return Invalid("image_sha256", "must be 64 lower-case hex digits")
		}
	}
	if p.Image != "" {
		if err := CheckWord("image", p.Image); err != nil {
			return err
		}
	}
	if p.TargetDisk != "" && !diskHintRE.MatchString(p.TargetDisk) {
		return Invalid("target_disk", "%q is not a disk hint like serial=ABC, size>=100G or /dev/sda", p.TargetDisk)
	}
	switch p.CleanMethod {
	case "", "zero", "discard", "metadata":
	default:
		return Invalid("clean_method", "%q is not one of zero, discard, metadata", p.CleanMethod)
	}
	return nil
}
