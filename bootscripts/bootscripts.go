package bootscripts

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Localboot is the fail-safe stage-1 script: it makes iPXE return to the
// firmware with an error, so the firmware goes on to the next boot entry (the
// local disk). It is a constant, not a template, and is served whenever
// anything else fails. Plain "exit" would stop in the firmware menu.
const Localboot = "#!ipxe\necho bootpilot: booting the local disk\nexit 1\n"

// HoldURLSetting is the iPXE setting the stage-0 script fills with the full
// URL (including the host's boot credentials) it chained to. A hold script
// sleeps and then chains to ${bootpilot/url} again, so the server never has to
// put the boot token into a script. It is the only "${" a stage-1 script
// contains.
const HoldURLSetting = "${bootpilot/url}"

// maxCmdline is the x86 Linux COMMAND_LINE_SIZE; a longer command line would
// be cut silently (and with it the callback URL).
const maxCmdline = 2048

// maxConfig bounds a rendered installer config, so a user template cannot
// make the server build an unbounded response.
const maxConfig = 1 << 20

//go:embed templates
var templatesFS embed.FS

// Template paths inside templatesFS.
const (
	tmplBoot        = "templates/script/boot.ipxe"
	tmplHold        = "templates/script/hold.ipxe"
	tmplKickstart   = "templates/config/kickstart/ks.cfg"
	tmplPreseed     = "templates/config/preseed/preseed.cfg"
	tmplUserData    = "templates/config/autoinstall/user-data"
	tmplMetaData    = "templates/config/autoinstall/meta-data"
	configTemplate  = "config" // name of a user-supplied config template
	bootnet         = "bootnet"
	defaultAfter    = "reboot"
	defaultClean    = "metadata"
	maxTimeoutMS    = 3600000
	maxHoldSeconds  = 86400
	callbackMediaTy = "application/json"
)

// ScriptData is everything a stage-1 script or installer config may use.
// Host and Profile have been validated with Normalize by the caller; the
// renderer re-checks every value it puts into a script anyway.
type ScriptData struct {
	Action  host.Action  // host.ActionInstall
	Host    host.Host    // validated (host.Host.Normalize)
	Profile host.Profile // validated (host.Profile.Normalize); for clean: the agent's clean profile
	Attempt int          // 1

	ServerURL     string // "https://10.0.2.100:8443" (no trailing slash)
	CallbackURL   string // "https://10.0.2.100:8443/boot/v1/callback/node01/<one-time-token>"
	ConfigURL     string // "https://10.0.2.100:8443/boot/v1/config/node01/<one-time-token>"
	CAPEM         string // the organisation CA certificate (PEM), pinned by installer callbacks
	CAFingerprint string // hex SHA-256 of the CA certificate DER, for the agent
	HoldSeconds   int    // hold: sleep this long, then chain again (60)
	Timeout       int    // ms for every kernel/initrd/chain --timeout (30000)
	After         string // "reboot" or "poweroff": what the agent or installer does when done; "" means reboot
}

// Renderer renders stage-1 scripts and installer configs from the embedded
// templates. It is safe for concurrent use.
type Renderer struct {
	t   *template.Template
	now func() time.Time // the clock of user-template deadlines; nil: time.Now
}

// funcs are the functions of the built-in templates. User-supplied
// installer configs get the same json, join and lines, charged to their
// render budget, and bounded print, printf and println (userFuncs).
var funcs = template.FuncMap{
	// json encodes a value as JSON (a valid YAML flow scalar too), without
	// HTML escaping: {{json .CAPEM}}.
	"json": jsonString,
	// join joins strings: {{join .DNS ","}}.
	"join": strings.Join,
	// lines splits text into lines without line ends: {{range lines .CAPEM}}.
	"lines": splitLines,
}

func jsonString(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func splitLines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// New parses every embedded template once.
func New() (*Renderer, error) {
	root := template.New("bootscripts").Option("missingkey=error").Funcs(funcs)
	err := fs.WalkDir(templatesFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := templatesFS.ReadFile(path)
		if err != nil {
			return err
		}
		if _, err := root.New(path).Parse(string(src)); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bootscripts: parse templates: %w", err)
	}
	return &Renderer{t: root}, nil
}

// ConfigFiles lists the config files installer i fetches from the config
// URL, in the order it fetches them; nil for installers without a config.
func ConfigFiles(i host.Installer) []string {
	switch i {
	case host.InstallerKickstart:
		return []string{"ks.cfg"}
	case host.InstallerPreseed:
		return []string{"preseed.cfg"}
	case host.InstallerAutoinstall:
		return []string{"user-data", "meta-data"}
	}
	return nil
}

// configTemplateFor returns the built-in template for file of installer i,
// and whether a profile's own config replaces it.
func configTemplateFor(i host.Installer, file string) (name string, replaceable bool, ok bool) {
	switch {
	case i == host.InstallerKickstart && file == "ks.cfg":
		return tmplKickstart, true, true
	case i == host.InstallerPreseed && file == "preseed.cfg":
		return tmplPreseed, true, true
	case i == host.InstallerAutoinstall && file == "user-data":
		return tmplUserData, true, true
	case i == host.InstallerAutoinstall && file == "meta-data":
		return tmplMetaData, false, true
	}
	return "", false, false
}

// scriptTemplateFor returns the template that renders action a ("" for
// localboot, which is the Localboot constant).
func scriptTemplateFor(a host.Action) (string, error) {
	switch a {
	case host.ActionInstall, host.ActionClean:
		return tmplBoot, nil
	case host.ActionHold:
		return tmplHold, nil
	case host.ActionLocalboot:
		return "", nil
	}
	return "", fmt.Errorf("bootscripts: unknown action %q: %w", a, host.ErrNotFound)
}

// Script renders the stage-1 iPXE script for d.Action. On error nothing is
// written; the caller serves Localboot instead.
func (r *Renderer) Script(w io.Writer, d ScriptData) error {
	name, err := scriptTemplateFor(d.Action)
	if err != nil {
		return err
	}
	if name == "" {
		_, err := io.WriteString(w, Localboot)
		return err
	}
	v, err := newScriptView(d)
	if err != nil {
		return fmt.Errorf("bootscripts: %s script for %s: %w", d.Action, d.Host.Name, err)
	}
	b, err := r.render(name, v)
	if err != nil {
		return fmt.Errorf("bootscripts: %s script for %s: %w", d.Action, d.Host.Name, err)
	}
	_, err = w.Write(b)
	return err
}

// Config renders the installer config named file for d.Profile.Installer
// (ConfigContext without a context).
func (r *Renderer) Config(w io.Writer, file string, d ScriptData) error {
	return r.ConfigContext(context.Background(), w, file, d)
}

// ConfigContext renders the installer config named file for
// d.Profile.Installer; file CAFile is the organisation CA (PEM) for every
// installer that has configs. A profile's own Config template replaces the built-in
// one (for autoinstall: user-data; meta-data stays built in) and renders
// within the user-template bounds (budget.go): an error wrapping a
// *BudgetError when it exceeds one, ErrBusy when no render slot freed up,
// ctx's error when ctx ends first. An unknown file, or an installer without
// configs, is an error wrapping host.ErrNotFound. On error nothing is
// written.
func (r *Renderer) ConfigContext(ctx context.Context, w io.Writer, file string, d ScriptData) error {
	if file == CAFile && ConfigFiles(d.Profile.Installer) != nil {
		ca, err := canonicalPEM(d.CAPEM)
		if err != nil {
			return fmt.Errorf("bootscripts: config %s for %s: %w", file, d.Host.Name, err)
		}
		_, err = io.WriteString(w, ca)
		return err
	}
	name, replaceable, ok := configTemplateFor(d.Profile.Installer, file)
	if !ok {
		return fmt.Errorf("bootscripts: config %q for installer %q: %w", file, d.Profile.Installer, host.ErrNotFound)
	}
	cd, err := newConfigData(d)
	if err != nil {
		return fmt.Errorf("bootscripts: config %s for %s: %w", file, d.Host.Name, err)
	}
	var out []byte
	if replaceable && d.Profile.Config != "" {
		now := r.now
		if now == nil {
			now = time.Now
		}
		if out, err = renderUser(ctx, now, d.Profile.Config, cd); err != nil {
			return fmt.Errorf("bootscripts: render config %s for %s from profile %s: %w", file, d.Host.Name, d.Profile.Name, err)
		}
	} else {
		b := &limitedBuffer{max: maxConfig}
		if err := r.t.ExecuteTemplate(b, name, cd); err != nil {
			return fmt.Errorf("bootscripts: render config %s for %s: %w", file, d.Host.Name, err)
		}
		out = b.Bytes()
	}
	_, err = w.Write(out)
	return err
}

// CheckProfileConfig renders d.Profile's own config template for d within
// the user-template bounds and discards the result, so a boot can fall back
// to the local disk before it starts an installer whose config cannot be
// served. It returns nil when the profile has no config of its own, and
// ConfigContext's errors otherwise.
func (r *Renderer) CheckProfileConfig(ctx context.Context, d ScriptData) error {
	if d.Profile.Config == "" {
		return nil
	}
	for _, f := range ConfigFiles(d.Profile.Installer) {
		if _, replaceable, _ := configTemplateFor(d.Profile.Installer, f); replaceable {
			return r.ConfigContext(ctx, io.Discard, f, d)
		}
	}
	return nil
}

// CheckConfigTemplate parses a user-supplied installer config template and
// executes it against sample data within the user-template bounds, so a bad
// or unbounded template is refused when the profile is saved rather than
// when a host boots. It returns a *host.ValidationError for field "config",
// or ErrBusy.
func CheckConfigTemplate(src string) error {
	_, err := renderUser(context.Background(), time.Now, src, SampleConfigData())
	var be *BudgetError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBusy):
		return err
	case errors.As(err, &be):
		return host.Invalid("config", "%v", be) // not text/template's view of our rewritten tree
	}
	return host.Invalid("config", "%v", err)
}

// renderUser renders a user template src for data within the bounds of
// budget.go, on one of maxRenders slots.
func renderUser(ctx context.Context, now func() time.Time, src string, data *ConfigData) ([]byte, error) {
	release, err := acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	b := newBudget(ctx, now)
	t, err := parseConfig(src, b)
	if err != nil {
		return nil, err
	}
	out := &limitedBuffer{max: maxConfig, budget: b}
	if err := t.Execute(out, data); err != nil {
		return nil, err
	}
	if err := checkConfigText(out.Bytes()); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// checkConfigText refuses a rendered user config that is not text: invalid
// UTF-8, or a control, format or bidi character other than tab, newline
// and carriage return. A NUL would cut the file short for C-string readers
// and an escape sequence would reach whoever views the config in a
// terminal; the template's source cannot show this ({{printf "%c" 27}}), so
// the output is checked.
func checkConfigText(b []byte) error {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return fmt.Errorf("rendered config is not valid UTF-8 at byte %d", i)
		case r != '\t' && r != '\n' && r != '\r' && host.UnsafeRune(r):
			return fmt.Errorf("rendered config contains control character %U at byte %d", r, i)
		}
		i += n
	}
	return nil
}

// parseConfig parses a user template with the functions charged to b and
// prepares it (budget.go: refuses what cannot be bounded, makes loops pay).
func parseConfig(src string, b *budget) (*template.Template, error) {
	if len(src) > maxSource {
		return nil, overBudget("the template is larger than %d KiB", maxSource>>10)
	}
	t, err := template.New(configTemplate).Option("missingkey=error").Funcs(userFuncs(b)).Parse(src)
	if err != nil {
		return nil, err
	}
	if err := prepare(t); err != nil {
		return nil, err
	}
	return t, nil
}

// limitedBuffer is a bytes.Buffer that refuses to grow past max bytes and,
// for a user template, stops the render once its budget's context ends or
// deadline passes.
type limitedBuffer struct {
	bytes.Buffer
	max    int
	budget *budget // nil for built-in templates
}

var errTooLarge = &BudgetError{Reason: "the rendered config is larger than 1 MiB"}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errTooLarge
	}
	if b.budget != nil {
		if err := b.budget.check(); err != nil {
			return 0, err
		}
	}
	return b.Buffer.Write(p)
}

// initrdView is one initrd line of a boot script.
type initrdView struct {
	Name string // "initrd0": the image name, also passed as initrd=initrd0
	URL  string // "https://mirror.example/rocky9/initrd.img"
}

// fileView is one file iPXE fetches and hands to the kernel inside the
// initramfs: given a path as its command line, an image gets a newc cpio
// header built by iPXE (src/core/cpio.c), so the file appears at Path in
// the installer's root file system. On EFI the kernel loads every image
// (headers included) through iPXE's LoadFile2 initrd (efi_file.c); no
// initrd= names it, because a kernel that used initrd= instead would get
// the bare file without its header.
type fileView struct {
	Name string // "cfg0"
	URL  string // "https://10.0.2.100:8443/boot/v1/config/node01/<one-time-token>/preseed.cfg"
	Path string // "/preseed.cfg"
}

// scriptView is what the iPXE templates see. Every string in it has passed
// host.CheckWord (Cmdline: host.CheckCmdline) in newScriptView, and render
// proves that each reaches iPXE as one plain token (Cmdline: its words),
// replacing it by a placeholder (placeholders, which must cover every
// string field). Templates must not branch on strings: the placeholder
// render would differ and every script would be refused.
type scriptView struct {
	Task        string       // "install", "deploy" or "clean"
	Name        string       // "node01"
	Profile     string       // "rocky9"
	Installer   string       // "kickstart"
	Attempt     int          // 1
	Timeout     int          // 30000 (ms)
	HoldSeconds int          // 60
	Kernel      string       // "https://mirror.example/rocky9/vmlinuz"
	Initrds     []initrdView // [{initrd0 https://mirror.example/rocky9/initrd.img}]
	Files       []fileView   // [{cfg0 https://…/config/node01/<token>/preseed.cfg /preseed.cfg}]
	Cmdline     string       // "initrd=initrd0 inst.repo=… ip=… bootpilot.callback=…"
}

var hexFingerprint = regexp.MustCompile(`^[0-9a-f]{64}$`)

// net is the host's network, re-validated and split into the pieces kernel
// command lines and configs need.
type netView struct {
	MAC      string   // "52:54:00:12:34:56"
	IP       string   // "10.0.2.15"
	Prefix   int      // 24
	Netmask  string   // "255.255.255.0"
	Gateway  string   // "10.0.2.2"
	DNS      []string // ["10.0.2.3"]
	IP6      string   // "2001:db8::15" or ""
	Prefix6  int      // 64
	Gateway6 string   // "2001:db8::1" or ""
	VLAN     int      // 0
	Hostname string   // "node01"
	Domain   string   // "example.org" or ""
}

// checkNet re-validates the network fields of h (which Normalize already
// checked) and returns them in canonical form.
func checkNet(h host.Host) (netView, error) {
	var n netView
	if err := host.ValidName("name", h.Name); err != nil {
		return n, err
	}
	if len(h.MACs) == 0 {
		return n, host.Invalid("macs", "no MAC address")
	}
	mac, err := host.NormalizeMAC(h.MACs[0])
	if err != nil {
		return n, err
	}
	n.MAC = mac
	pfx, err := netip.ParsePrefix(h.IPv4)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() < 1 {
		return n, host.Invalid("ipv4", "%q is not an IPv4 prefix", h.IPv4)
	}
	n.IP, n.Prefix = pfx.Addr().String(), pfx.Bits()
	n.Netmask = net.IP(net.CIDRMask(pfx.Bits(), 32)).String()
	gw, err := netip.ParseAddr(h.Gateway)
	if err != nil || !gw.Is4() {
		return n, host.Invalid("gateway", "%q is not an IPv4 address", h.Gateway)
	}
	n.Gateway = gw.String()
	if len(h.DNS) == 0 {
		return n, host.Invalid("dns", "no DNS server")
	}
	for _, d := range h.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil || a.Zone() != "" {
			return n, host.Invalid("dns", "%q is not an IP address", d)
		}
		n.DNS = append(n.DNS, a.String())
	}
	if h.IPv6 != "" {
		p6, err := netip.ParsePrefix(h.IPv6)
		if err != nil || !p6.Addr().Is6() || p6.Addr().Is4In6() || p6.Addr().Zone() != "" {
			return n, host.Invalid("ipv6", "%q is not an IPv6 prefix", h.IPv6)
		}
		n.IP6, n.Prefix6 = p6.Addr().String(), p6.Bits()
		if h.Gateway6 != "" {
			g6, err := netip.ParseAddr(h.Gateway6)
			if err != nil || !g6.Is6() || g6.Zone() != "" {
				return n, host.Invalid("gateway6", "%q is not an IPv6 address", h.Gateway6)
			}
			n.Gateway6 = g6.String()
		}
	}
	if h.VLAN < 0 || h.VLAN > 4094 {
		return n, host.Invalid("vlan", "%d is not a VLAN id", h.VLAN)
	}
	n.VLAN = h.VLAN
	n.Hostname = h.Hostname
	if n.Hostname == "" {
		n.Hostname = h.Name
	}
	if err := host.ValidName("hostname", n.Hostname); err != nil {
		return n, err
	}
	if h.Domain != "" {
		if err := host.CheckWord("domain", h.Domain); err != nil {
			return n, err
		}
		for _, l := range strings.Split(h.Domain, ".") {
			if err := host.ValidName("domain", l); err != nil {
				return n, err
			}
		}
		n.Domain = h.Domain
	}
	return n, nil
}

// checkAfter returns the normalized After value.
func checkAfter(s string) (string, error) {
	switch s {
	case "":
		return defaultAfter, nil
	case "reboot", "poweroff":
		return s, nil
	}
	return "", host.Invalid("after", "%q is not reboot or poweroff", s)
}

func checkTimeout(ms int) error {
	if ms <= 0 || ms > maxTimeoutMS {
		return host.Invalid("timeout", "%d ms is not between 1 and %d", ms, maxTimeoutMS)
	}
	return nil
}

// newScriptView validates d for its action and builds the template data.
func newScriptView(d ScriptData) (*scriptView, error) {
	n, err := checkNet(d.Host)
	if err != nil {
		return nil, err
	}
	if err := checkTimeout(d.Timeout); err != nil {
		return nil, err
	}
	if d.Attempt < 0 {
		return nil, host.Invalid("attempt", "%d is negative", d.Attempt)
	}
	v := &scriptView{Name: d.Host.Name, Attempt: d.Attempt, Timeout: d.Timeout}
	if d.Action == host.ActionHold {
		if d.HoldSeconds <= 0 || d.HoldSeconds > maxHoldSeconds {
			return nil, host.Invalid("hold_seconds", "%d is not between 1 and %d", d.HoldSeconds, maxHoldSeconds)
		}
		v.HoldSeconds = d.HoldSeconds
		return v, nil
	}

	p := d.Profile
	if err := host.ValidName("profile", p.Name); err != nil {
		return nil, err
	}
	v.Profile, v.Installer = p.Name, string(p.Installer)
	if err := host.CheckURL("kernel", p.Kernel); err != nil {
		return nil, err
	}
	v.Kernel = p.Kernel
	var args []string
	for i, u := range p.Initrds {
		if err := host.CheckURL("initrds", u); err != nil {
			return nil, err
		}
		name := "initrd" + strconv.Itoa(i)
		v.Initrds = append(v.Initrds, initrdView{Name: name, URL: u})
		args = append(args, "initrd="+name)
	}
	if err := host.CheckCmdline("cmdline", p.Cmdline); err != nil {
		return nil, err
	}
	args = append(args, strings.Fields(p.Cmdline)...)
	if err := host.CheckURL("callback_url", d.CallbackURL); err != nil {
		return nil, err
	}

	switch {
	case d.Action == host.ActionClean:
		v.Task = "clean"
		a, err := agentArgs(d, n, "clean")
		if err != nil {
			return nil, err
		}
		args = append(args, a...)
	case p.Installer == host.InstallerImage:
		v.Task = "deploy"
		a, err := agentArgs(d, n, "deploy")
		if err != nil {
			return nil, err
		}
		args = append(args, a...)
	default:
		v.Task = "install"
		a, files, err := installerArgs(d, n)
		if err != nil {
			return nil, err
		}
		args = append(args, a...)
		v.Files = files
		args = append(args, "bootpilot.callback="+d.CallbackURL)
	}
	v.Cmdline = strings.Join(args, " ")
	if err := host.CheckCmdline("cmdline", v.Cmdline); err != nil {
		return nil, err
	}
	if len(v.Cmdline) >= maxCmdline {
		return nil, host.Invalid("cmdline", "the kernel command line is %d bytes, the limit is %d", len(v.Cmdline), maxCmdline-1)
	}
	return v, nil
}

// kernelIP is the kernel/klibc/dracut static form ip=<ip>::<gw>:<mask>:<hostname>:<iface>:none.
func kernelIP(n netView, iface string) string {
	return fmt.Sprintf("ip=%s::%s:%s:%s:%s:none", n.IP, n.Gateway, n.Netmask, n.Hostname, iface)
}

// CAFile is the config file name under the config URL that serves the
// organisation CA (PEM), for installers that pin it from their initramfs.
const CAFile = "ca.pem"

// Paths of the files iPXE puts into an installer's initramfs (fileView).
const (
	initrdPreseed = "/preseed.cfg"      // d-i loads it by itself (initrd-preseed)
	initrdKS      = "/ks.cfg"           // inst.ks=file:/ks.cfg
	initrdCA      = "/bootpilot-ca.pem" // ConfigData.CAFile
)

// ownConfigArgs are the kernel arguments by which an installer is told
// where its config is. A profile whose Cmdline sets one names its own config
// location: bootpilot then adds neither its config URL nor the initramfs
// files, and the profile's own argument is the only one.
var ownConfigArgs = map[host.Installer][]string{
	host.InstallerKickstart:   {"inst.ks=", "ks="},
	host.InstallerPreseed:     {"url=", "preseed/url=", "file=", "preseed/file="},
	host.InstallerAutoinstall: {"ds="},
}

// ownConfig reports whether p's command line names p's config location.
func ownConfig(p host.Profile) bool {
	for _, w := range strings.Fields(p.Cmdline) {
		for _, k := range ownConfigArgs[p.Installer] {
			if strings.HasPrefix(w, k) {
				return true
			}
		}
	}
	return false
}

// configFiles returns the files iPXE fetches from the config URL into the
// initramfs, for file -> path pairs.
func configFiles(configURL string, pairs ...string) []fileView {
	var fs []fileView
	for i := 0; i+1 < len(pairs); i += 2 {
		fs = append(fs, fileView{Name: "cfg" + strconv.Itoa(i/2), URL: configURL + "/" + pairs[i], Path: pairs[i+1]})
	}
	return fs
}

// installerArgs returns the kernel arguments that hand the static network
// to the installer and point it at its config, and the files iPXE puts into
// its initramfs. The installer never fetches its config over TLS itself: its
// trust store does not hold the organisation CA, iPXE's does (kickstart:
// ks.cfg; preseed: preseed.cfg and the CA for its early_command). Ubuntu's
// installer is the exception (autoinstallArgs).
func installerArgs(d ScriptData, n netView) ([]string, []fileView, error) {
	if d.Profile.Installer != host.InstallerNone {
		if err := host.CheckURL("config_url", d.ConfigURL); err != nil {
			return nil, nil, err
		}
	}
	own := ownConfig(d.Profile)
	switch d.Profile.Installer {
	case host.InstallerKickstart:
		args := kickstartArgs(n)
		if own {
			return args, nil, nil
		}
		return append(args, "inst.ks=file:"+initrdKS), configFiles(d.ConfigURL, "ks.cfg", initrdKS), nil
	case host.InstallerPreseed:
		args := preseedArgs(n)
		if own {
			return args, nil, nil
		}
		// d-i loads /preseed.cfg from its initrd by itself (no url=).
		return args, configFiles(d.ConfigURL, "preseed.cfg", initrdPreseed, CAFile, initrdCA), nil
	case host.InstallerAutoinstall:
		args, err := autoinstallArgs(n)
		if err != nil || own {
			return args, nil, err
		}
		return append(args, "ds=nocloud-net;s="+d.ConfigURL+"/"), nil, nil
	case host.InstallerNone:
		args := []string{kernelIP(n, "")}
		for _, s := range n.DNS {
			args = append(args, "nameserver="+s)
		}
		return args, nil, nil
	}
	return nil, nil, host.Invalid("installer", "%q has no install script", d.Profile.Installer)
}

// kickstartArgs: dracut's static network, the boot NIC named by MAC so ip=
// works with several NICs.
func kickstartArgs(n netView) []string {
	iface := bootnet
	args := []string{"ifname=" + bootnet + ":" + n.MAC}
	if n.VLAN != 0 {
		iface = fmt.Sprintf("%s.%d", bootnet, n.VLAN)
		args = append(args, "vlan="+iface+":"+bootnet)
	}
	args = append(args, kernelIP(n, iface))
	if n.IP6 != "" {
		gw6 := ""
		if n.Gateway6 != "" {
			gw6 = "[" + n.Gateway6 + "]"
		}
		args = append(args, fmt.Sprintf("ip=[%s]::%s:%d:%s:%s:none", n.IP6, gw6, n.Prefix6, n.Hostname, iface))
	}
	for _, s := range n.DNS {
		args = append(args, "nameserver="+s)
	}
	return append(args, "rd.neednet=1")
}

// preseedArgs: the Debian installer's static network. netcfg takes one name
// server on the command line; preseed.cfg lists them all.
func preseedArgs(n netView) []string {
	args := []string{"auto=true", "priority=critical",
		"interface=" + n.MAC,
		"netcfg/disable_autoconfig=true",
		"netcfg/get_ipaddress=" + n.IP,
		"netcfg/get_netmask=" + n.Netmask,
		"netcfg/get_gateway=" + n.Gateway,
		"netcfg/get_nameservers=" + firstDNS(n.DNS),
		"netcfg/confirm_static=true",
		"netcfg/get_hostname=" + n.Hostname}
	if n.Domain != "" {
		args = append(args, "netcfg/get_domain="+n.Domain)
	}
	if n.VLAN != 0 {
		args = append(args, "netcfg/vlan_id="+strconv.Itoa(n.VLAN))
	}
	return args
}

// autoinstallArgs: Ubuntu (casper/initramfs-tools, klibc ipconfig): BOOTIF
// picks the NIC by MAC; up to two IPv4 DNS servers go in ip='s dns0/dns1
// fields (':'-separated, so no IPv6 there). initramfs-tools cannot tag a
// VLAN for a NIC it knows only by MAC: refuse rather than boot an installer
// that cannot reach its config.
//
// The config stays on the network (ds=nocloud-net;s=<ConfigURL>/): casper
// switches to the live root file system and drops the initramfs (its /run
// is a fresh tmpfs), and cloud-init and subiquity look for their seed only
// there or on the install media, so a file iPXE adds to the initramfs never
// reaches them. Cloud-init's fetch needs the installer's trust store to hold
// the organisation CA.
func autoinstallArgs(n netView) ([]string, error) {
	if n.VLAN != 0 {
		return nil, host.Invalid("vlan", "autoinstall cannot fetch its config over a VLAN (initramfs-tools has no VLAN support by MAC)")
	}
	ip, dns := kernelIP(n, ""), 0
	for _, s := range n.DNS {
		if a := netip.MustParseAddr(s); a.Is4() && dns < 2 {
			ip += ":" + s
			dns++
		}
	}
	return []string{ip, "BOOTIF=01-" + strings.ReplaceAll(n.MAC, ":", "-"), "autoinstall"}, nil
}

// agentArgs returns the bootpilot-agent's kernel arguments for task
// ("deploy" or "clean").
func agentArgs(d ScriptData, n netView, task string) ([]string, error) {
	if !hexFingerprint.MatchString(d.CAFingerprint) {
		return nil, host.Invalid("ca_fingerprint", "must be 64 lower-case hex digits")
	}
	after, err := checkAfter(d.After)
	if err != nil {
		return nil, err
	}
	// quiet: the kernel would otherwise print its command line, callback
	// token included, on the console (the agent itself never prints it).
	args := []string{"quiet", kernelIP(n, "")}
	for _, s := range n.DNS {
		args = append(args, "nameserver="+s)
	}
	args = append(args,
		"bootpilot.mac="+n.MAC,
		"bootpilot.task="+task,
		"bootpilot.callback="+d.CallbackURL,
		"bootpilot.ca="+d.CAFingerprint,
		"bootpilot.after="+after)
	p := d.Profile
	switch task {
	case "deploy":
		img, err := imageURL(p.Image)
		if err != nil {
			return nil, err
		}
		if !hexFingerprint.MatchString(p.ImageSHA256) {
			return nil, host.Invalid("image_sha256", "must be 64 lower-case hex digits")
		}
		args = append(args, "bootpilot.image="+img, "bootpilot.sha256="+p.ImageSHA256)
		if p.TargetDisk != "" {
			if err := host.CheckWord("target_disk", p.TargetDisk); err != nil {
				return nil, err
			}
			args = append(args, "bootpilot.disk="+p.TargetDisk)
		}
	case "clean":
		m := p.CleanMethod
		switch m {
		case "":
			m = defaultClean
		case "zero", "discard", "metadata":
		default:
			return nil, host.Invalid("clean_method", "%q is not one of zero, discard, metadata", m)
		}
		args = append(args, "bootpilot.clean="+m)
	}
	if n.VLAN != 0 {
		args = append(args, "bootpilot.vlan="+strconv.Itoa(n.VLAN))
	}
	return args, nil
}

// imageURL returns a profile's image as a URL: http(s) URLs as they are,
// OCI references ("registry/repo@sha256:…") as "oci://registry/repo@sha256:…".
func imageURL(s string) (string, error) {
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		if err := host.CheckURL("image", s); err != nil {
			return "", err
		}
		return s, nil
	}
	if strings.Contains(s, "://") {
		return "", host.Invalid("image", "%q is neither an http(s) URL nor an OCI reference", s)
	}
	u := "oci://" + s
	if err := host.CheckWord("image", u); err != nil {
		return "", err
	}
	return u, nil
}

// firstDNS returns the first IPv4 DNS server, or the first one when there
// is none (the Debian installer takes one on the command line).
func firstDNS(dns []string) string {
	for _, s := range dns {
		if netip.MustParseAddr(s).Is4() {
			return s
		}
	}
	return dns[0]
}
