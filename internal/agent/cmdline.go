package agent

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Task is what the agent was booted to do.
type Task string

// The tasks the agent performs.
const (
	TaskDeploy Task = "deploy" // write an image to the target disk
	TaskClean  Task = "clean"  // wipe every non-removable disk
)

// The clean methods (bootpilot.clean=).
const (
	CleanZero     = "zero"     // overwrite every byte with zeros
	CleanDiscard  = "discard"  // BLKDISCARD the whole disk, zero-fill where that does not read back as zeros
	CleanMetadata = "metadata" // partition tables (both GPT copies), first/last MiB, partition signatures
)

// The actions after the task (bootpilot.after=).
const (
	AfterReboot   = "reboot"
	AfterPoweroff = "poweroff"
)

// Network is the static network configuration from the dracut-style ip=
// and nameserver= parameters.
type Network struct {
	Addr        netip.Prefix     // 10.0.2.15/24
	Gateway     netip.Addr       // 10.0.2.2; invalid when none was given
	Hostname    string           // node01
	Interface   string           // eth0, or "" to pick the NIC by MAC
	Nameservers []netip.Addr     // 10.0.2.3
	MAC         net.HardwareAddr // 52:54:00:12:34:56 (bootpilot.mac)
	VLAN        int              // 0 = untagged (bootpilot.vlan)
}

// Config is everything the agent reads from the kernel command line.
type Config struct {
	Network       Network
	Task          Task   // deploy or clean (bootpilot.task)
	Callback      string // https://10.0.2.100:8443/boot/v1/callback/node01/TOKEN (bootpilot.callback)
	CAFingerprint []byte // SHA-256 of the CA certificate's DER, 32 bytes (bootpilot.ca)
	After         string // reboot (default) or poweroff (bootpilot.after)
	Image         string // https URL of the disk image (bootpilot.image, deploy)
	SHA256        string // lower-case hex SHA-256 of the image as downloaded (bootpilot.sha256, deploy)
	DiskHint      string // serial=X, size>=NG, /dev/vda or "" (bootpilot.disk, deploy)
	CleanMethod   string // zero, discard or metadata (bootpilot.clean, clean)
}

// ParseCmdline parses a kernel command line such as the contents of
// /proc/cmdline. It understands exactly the parameters the server emits:
//
//	ip=<ip>::<gw>:<netmask>:<hostname>:<iface>:none   (dracut syntax; iface may be empty)
//	nameserver=<ip>                                  (repeatable)
//	bootpilot.mac=<mac> bootpilot.vlan=<id>
//	bootpilot.task=deploy|clean bootpilot.after=reboot|poweroff
//	bootpilot.callback=<https URL> bootpilot.ca=<hex sha256 of the CA DER>
//	bootpilot.image=<https URL> bootpilot.sha256=<hex> bootpilot.disk=<hint>
//	bootpilot.clean=zero|discard|metadata
//
// Other parameters are ignored. The returned Config holds everything that
// could be parsed even when err is not nil, so the agent can still report
// the error when the network and callback parameters are good.
func ParseCmdline(s string) (Config, error) {
	c := Config{After: AfterReboot}
	var errs []error
	seen := map[string]bool{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		if k == "ip" || strings.HasPrefix(k, "bootpilot.") {
			if seen[k] {
				errs = append(errs, fmt.Errorf("%s given twice", k))
				continue
			}
			seen[k] = true
		}
		var err error
		switch k {
		case "ip":
			err = parseIP(v, &c.Network)
		case "nameserver":
			var a netip.Addr
			if a, err = netip.ParseAddr(v); err == nil {
				c.Network.Nameservers = append(c.Network.Nameservers, a)
			}
		case "bootpilot.mac":
			c.Network.MAC, err = net.ParseMAC(v)
		case "bootpilot.vlan":
			c.Network.VLAN, err = strconv.Atoi(v)
			if err == nil && (c.Network.VLAN < 1 || c.Network.VLAN > 4094) {
				err = errors.New("must be 1-4094")
			}
		case "bootpilot.task":
			c.Task = Task(v)
			if c.Task != TaskDeploy && c.Task != TaskClean {
				err = errors.New("must be deploy or clean")
			}
		case "bootpilot.callback":
			c.Callback, err = httpsURL(v)
		case "bootpilot.ca":
			c.CAFingerprint, err = hexDigest(v)
		case "bootpilot.after":
			c.After = v
			if v != AfterReboot && v != AfterPoweroff {
				err = errors.New("must be reboot or poweroff")
			}
		case "bootpilot.image":
			c.Image, err = httpsURL(v)
		case "bootpilot.sha256":
			var d []byte
			if d, err = hexDigest(v); err == nil {
				c.SHA256 = hex.EncodeToString(d)
			}
		case "bootpilot.disk":
			c.DiskHint = v
			_, err = ParseDiskHint(v)
		case "bootpilot.clean":
			c.CleanMethod = v
			if v != CleanZero && v != CleanDiscard && v != CleanMetadata {
				err = errors.New("must be zero, discard or metadata")
			}
		}
		if err != nil {
			if k == "bootpilot.callback" {
				v = "…" // holds the callback token: never echo it
			}
			errs = append(errs, fmt.Errorf("%s=%q: %w", k, v, err))
		}
	}
	if !seen["ip"] {
		errs = append(errs, errors.New("ip= missing"))
	}
	if c.Network.MAC == nil && c.Network.Interface == "" {
		errs = append(errs, errors.New("bootpilot.mac missing (and ip= names no interface)"))
	}
	for _, k := range []string{"bootpilot.task", "bootpilot.callback", "bootpilot.ca"} {
		if !seen[k] {
			errs = append(errs, fmt.Errorf("%s missing", k))
		}
	}
	switch c.Task {
	case TaskDeploy:
		for _, k := range []string{"bootpilot.image", "bootpilot.sha256"} {
			if !seen[k] {
				errs = append(errs, fmt.Errorf("%s missing for deploy", k))
			}
		}
	case TaskClean:
		if !seen["bootpilot.clean"] {
			errs = append(errs, errors.New("bootpilot.clean missing for clean"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("agent: kernel command line: %w", err)
	}
	return c, nil
}

// parseIP parses dracut's
// ip=<client-IP>:[<peer>]:<gateway-IP>:<netmask>:<client_hostname>:<interface>:{none|off}
// IPv6 addresses are written in brackets.
func parseIP(v string, n *Network) error {
	parts := splitColons(v)
	if len(parts) < 7 {
		return errors.New("want <ip>::<gw>:<netmask>:<hostname>:<iface>:none")
	}
	if p := parts[6]; p != "none" && p != "off" {
		return fmt.Errorf("autoconf %q: only static configuration (none) is supported", p)
	}
	ip, err := netip.ParseAddr(parts[0])
	if err != nil {
		return fmt.Errorf("client address: %w", err)
	}
	bits, err := maskBits(parts[3], ip)
	if err != nil {
		return err
	}
	n.Addr = netip.PrefixFrom(ip, bits)
	if parts[2] != "" {
		if n.Gateway, err = netip.ParseAddr(parts[2]); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if n.Gateway.Is4() != ip.Is4() {
			return errors.New("gateway and address families differ")
		}
	}
	n.Hostname = parts[4]
	n.Interface = parts[5]
	return nil
}

// splitColons splits on ':' outside of [brackets] and strips the brackets.
func splitColons(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				out = append(out, strings.Trim(s[start:i], "[]"))
				start = i + 1
			}
		}
	}
	return append(out, strings.Trim(s[start:], "[]"))
}

func maskBits(m string, ip netip.Addr) (int, error) {
	if n, err := strconv.Atoi(m); err == nil {
		if n < 0 || n > ip.BitLen() {
			return 0, fmt.Errorf("prefix length %d out of range", n)
		}
		return n, nil
	}
	a, err := netip.ParseAddr(m)
	if err != nil || !a.Is4() || !ip.Is4() {
		return 0, fmt.Errorf("netmask %q: want a dotted IPv4 mask or a prefix length", m)
	}
	b := a.As4()
	ones, bits := net.IPv4Mask(b[0], b[1], b[2], b[3]).Size()
	if bits == 0 {
		return 0, fmt.Errorf("netmask %q is not contiguous", m)
	}
	return ones, nil
}

func httpsURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", errors.New("must be an https:// URL")
	}
	return v, nil
}

func hexDigest(v string) ([]byte, error) {
	d, err := hex.DecodeString(strings.ToLower(v))
	if err != nil || len(d) != 32 {
		return nil, errors.New("must be 64 hex digits")
	}
	return d, nil
}

// Cmdline renders c as the kernel parameters ParseCmdline reads, in a fixed
// order (ip, nameservers, then bootpilot.* parameters). Servers that boot the
// agent can use it so both sides share one contract; empty optional values
// are left out.
func (c Config) Cmdline() string {
	n := c.Network
	var p []string
	gw := ""
	if n.Gateway.IsValid() {
		gw = bracket(n.Gateway)
	}
	mask := strconv.Itoa(n.Addr.Bits())
	if n.Addr.Addr().Is4() {
		m := net.CIDRMask(n.Addr.Bits(), 32)
		mask = net.IP(m).String()
	}
	p = append(p, fmt.Sprintf("ip=%s::%s:%s:%s:%s:none", bracket(n.Addr.Addr()), gw, mask, n.Hostname, n.Interface))
	for _, ns := range n.Nameservers {
		p = append(p, "nameserver="+ns.String())
	}
	add := func(k, v string) {
		if v != "" {
			p = append(p, "bootpilot."+k+"="+v)
		}
	}
	if n.MAC != nil {
		add("mac", n.MAC.String())
	}
	if n.VLAN != 0 {
		add("vlan", strconv.Itoa(n.VLAN))
	}
	add("task", string(c.Task))
	add("callback", c.Callback)
	add("ca", hex.EncodeToString(c.CAFingerprint))
	add("after", c.After)
	add("image", c.Image)
	add("sha256", c.SHA256)
	add("disk", c.DiskHint)
	add("clean", c.CleanMethod)
	return strings.Join(p, " ")
}

func bracket(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}
