package attack_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/ipxescript"
)

// hostileValues are what an attacker (or a paste from the wrong window)
// puts in a field: iPXE terminators and comments, settings, quotes and
// escapes, line breaks, NUL, terminal escapes, shell, template, format and
// LDAP syntax, a bidi override, and sheer length.
var hostileValues = []struct{ name, v string }{
	{";", ";"},
	{"a ; b", "a ; b"},
	{"||", "||"},
	{"&&", "&&"},
	{"#x", "#x"},
	{"${net0/ip}", "${net0/ip}"},
	{`"`, `"`},
	{"'", "'"},
	{`\`, `\`},
	{`\n`, "a\nb"},
	{`\r`, "a\rb"},
	{"NUL", "a\x00b"},
	{"ESC", "\x1b[2J"},
	{"$(id)", "$(id)"},
	{"`id`", "`id`"},
	{"{{.}}", "{{.}}"},
	{"%s%n", "%s%n"},
	{"*)(uid=*", "*)(uid=*"},
	{"U+202E", "a\u202eb"},
	{"5000×A", strings.Repeat("A", 5000)},
}

// hostileField is one field an outsider or an admin can set that reaches
// a boot script, an installer config, a log line or a terminal.
type hostileField struct {
	name  string   // table row: "host.hostname"
	base  string   // a benign value; each hostile value is tried alone and appended to it
	field []string // JSON `field` names a refusal may give
	try   func(h *hostileRun, v string) outcome
}

// outcome is what happened to one (field, value).
type outcome struct {
	refused bool     // 4xx
	code    int      // the refusal's status
	named   bool     // the refusal named the field
	harm    []string // why an accepted value is harmful; empty = inert
}

// TestHostileInputs — findings 2 and 7, and the rule behind them ("treat
// every field as hostile"): every hostile value in every field that reaches
// a script, an installer config, a log line or a terminal is either refused
// (4xx naming the field) or accepted and inert: the host's boot script has
// the same iPXE commands (and arguments) as a benign host's, the installer
// config has no control bytes and no extra lines, the server's stderr and
// `bootpilot … show` print no terminal controls. The table of outcomes is
// logged; an accepted-but-harmful case fails the test.
func TestHostileInputs(t *testing.T) {
	t.Parallel() // mostly waiting; overlaps the other long test
	s := startServer(t, serverOptions{secretKey: true})
	h := newHostileRun(t, s)
	fields := []hostileField{
		{"host.name", "h", []string{"name"}, h.hostField("name")},
		{"host.mac", "52:54:00:aa:bb:cc", []string{"macs", "mac"}, h.hostField("macs")},
		{"host.ipv4", "10.0.9.9/16", []string{"ipv4"}, h.hostField("ipv4")},
		{"host.gateway", "10.0.0.1", []string{"gateway"}, h.hostField("gateway")},
		{"host.dns", "10.0.0.53", []string{"dns"}, h.hostField("dns")},
		{"host.hostname", "web01", []string{"hostname"}, h.hostField("hostname")},
		{"host.domain", "example.org", []string{"domain"}, h.hostField("domain")},
		{"profile.name", "p", []string{"name"}, h.profileField("name", false)},
		{"profile.kernel", benignKernel, []string{"kernel"}, h.profileField("kernel", false)},
		{"profile.initrds", benignInitrd, []string{"initrds"}, h.profileField("initrds", false)},
		{"profile.cmdline", "console=ttyS0 ", []string{"cmdline"}, h.profileField("cmdline", false)},
		{"profile.config", "# benign\n", []string{"config"}, h.profileField("config", false)},
		{"profile.image", h.imageURL, []string{"image", "image_sha256"}, h.profileField("image", true)},
		{"profile.target_disk", "/dev/vda", []string{"target_disk"}, h.profileField("target_disk", true)},
		{"bmc.url", "https://127.0.0.1:1/", []string{"url"}, h.bmcField("url")},
		{"bmc.username", "admin", []string{"username"}, h.bmcField("username")},
		{"boot.uuid", "4c4c4544-0000", []string{"uuid"}, h.inventoryField("uuid")},
		{"boot.serial", "SN", []string{"serial"}, h.inventoryField("serial")},
		{"boot.asset", "AT", []string{"asset"}, h.inventoryField("asset")},
		{"boot.arch", "x86_64", []string{"arch"}, h.inventoryField("arch")},
		{"boot.platform", "efi", []string{"platform"}, h.inventoryField("platform")},
		{"callback.detail", "step: ", []string{"detail"}, (*hostileRun).callbackDetail},
	}
	table := make(map[string][]string) // field → one cell per value
	parent := t
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			h.t, s.t = t, t // a Fatal inside ends this subtest, not its parent
			defer func() { h.t, s.t = parent, parent }()
			for _, hv := range hostileValues {
				cell := ""
				for _, v := range []string{hv.v, f.base + hv.v} {
					off := s.stderr.Len()
					o := f.try(h, v)
					if c := terminalControl(s.stderr.Since(off)); c != "" {
						o.harm = append(o.harm, "server stderr holds "+c)
					}
					cell += o.mark()
					switch {
					case len(o.harm) > 0:
						t.Errorf("%s = %s accepted and harmful:\n\t%s", f.name, quoteShort([]byte(v), 80), strings.Join(o.harm, "\n\t"))
					case o.refused && !o.named:
						t.Errorf("%s = %s refused (%d) without naming the field %v", f.name, quoteShort([]byte(v), 80), o.code, f.field)
					}
				}
				table[f.name] = append(table[f.name], cell)
			}
		})
	}
	t.Logf("outcomes (R refused 4xx naming the field, r refused without naming it, A accepted and inert, X accepted and HARMFUL;\n"+
		"first letter: the value alone, second: appended to a benign value):\n%s", formatTable(fields, table))
}

// mark is the table cell letter of o.
func (o outcome) mark() string {
	switch {
	case len(o.harm) > 0:
		return "X"
	case o.refused && o.named:
		return "R"
	case o.refused:
		return "r"
	}
	return "A"
}

func formatTable(fields []hostileField, table map[string][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s", "")
	for _, hv := range hostileValues {
		fmt.Fprintf(&b, " %-6.6s", hv.name)
	}
	b.WriteByte('\n')
	for _, f := range fields {
		fmt.Fprintf(&b, "%-20s", f.name)
		for _, c := range table[f.name] {
			fmt.Fprintf(&b, " %-6s", c)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// hostileRun holds the benign references the hostile cases are compared
// with, on one server.
type hostileRun struct {
	t        *testing.T
	s        *server
	n        int    // counter for names, MACs and addresses
	imageURL string // a benign image in the server's cache
	imageHex string
	script   map[string][]byte // benign install script by profile ("ks", "img"), and "local"
	config   []byte            // benign kickstart config
	invTok   string            // boot token of host "inv" (ready, no profile)
}

func newHostileRun(t *testing.T, s *server) *hostileRun {
	h := &hostileRun{t: t, s: s, n: 100, script: map[string][]byte{}}
	blob := []byte("benign disk image for the hostile-input table\n")
	var img struct {
		URL string `json:"url"`
	}
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/images", string(blob), &img)
	sum := sha256.Sum256(blob)
	h.imageURL, h.imageHex = img.URL, hex.EncodeToString(sum[:])
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/profiles", benignProfile("ks"), nil)
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/profiles", imageProfile("img", h.imageURL, h.imageHex), nil)
	for _, p := range []string{"ks", "img"} {
		n := h.next()
		name := "ref-" + p
		tok := s.addHost(name, n, p)
		h.script[p] = s.installing(name, tok, n)
		if p == "ks" {
			cfg, ok := h.fetchConfig(h.script[p])
			if !ok || cfg.code != http.StatusOK {
				t.Fatalf("benign kickstart config: %v %s", ok, cfg)
			}
			h.config = cfg.body
		}
	}
	h.invTok = s.addHost("inv", 1, "")
	a := s.boot("inv", h.invTok, "mac="+mac(1))
	if a.code != http.StatusOK {
		t.Fatalf("benign boot of a ready host: %s", a)
	}
	h.script["local"] = a.body
	return h
}

func (h *hostileRun) next() int { h.n++; return h.n }

// refusal returns the outcome of a 4xx answer, or ok=false.
func refusal(a answer, field []string) (outcome, bool) {
	if a.code < 400 || a.code > 499 {
		return outcome{}, false
	}
	return outcome{refused: true, code: a.code, named: slices.Contains(field, a.field())}, true
}

// hostField registers a host with v in JSON field key.
func (h *hostileRun) hostField(key string) func(*hostileRun, string) outcome {
	return func(h *hostileRun, v string) outcome {
		n := h.next()
		body := benignHost(fmt.Sprintf("h%d", n), n, "ks")
		switch key {
		case "macs", "dns":
			body[key] = []string{v}
		default:
			body[key] = v
		}
		a := h.s.api("POST", "/api/v1/hosts", body)
		if o, ok := refusal(a, []string{key, strings.TrimSuffix(key, "s")}); ok {
			return o
		}
		if a.code != http.StatusCreated {
			return outcome{harm: []string{"register: " + a.String()}}
		}
		var got struct {
			Name string   `json:"name"`
			MACs []string `json:"macs"`
		}
		json.Unmarshal(a.body, &got)
		var o outcome
		o.harm = h.installCheck(got.Name, got.MACs, "ks", false)
		o.harm = append(o.harm, h.cliCheck("host", "show", got.Name)...)
		return o
	}
}

// profileField saves a profile with v in JSON field key (an image profile
// when image is set), then installs a host with it.
func (h *hostileRun) profileField(key string, image bool) func(*hostileRun, string) outcome {
	return func(h *hostileRun, v string) outcome {
		n := h.next()
		name, kind := fmt.Sprintf("p%d", n), "ks"
		body := benignProfile(name)
		if image {
			body, kind = imageProfile(name, h.imageURL, h.imageHex), "img"
		}
		switch key {
		case "initrds":
			body[key] = []string{v}
		default:
			body[key] = v
		}
		a := h.s.api("POST", "/api/v1/profiles", body)
		field := []string{key}
		if image {
			field = append(field, "image_sha256")
		}
		if o, ok := refusal(a, field); ok {
			return o
		}
		if a.code != http.StatusCreated {
			return outcome{harm: []string{"save profile: " + a.String()}}
		}
		var got struct {
			Name string `json:"name"`
		}
		json.Unmarshal(a.body, &got)
		host := fmt.Sprintf("h%d", n)
		reg := h.s.api("POST", "/api/v1/hosts", benignHost(host, n, got.Name))
		if reg.code != http.StatusCreated {
			return outcome{harm: []string{"register a host with the profile: " + reg.String()}}
		}
		var o outcome
		o.harm = h.installCheck(host, []string{mac(n)}, kind, key == "cmdline" || key == "config")
		o.harm = append(o.harm, h.cliCheck("profile", "show", got.Name)...)
		o.harm = append(o.harm, h.cliCheck("host", "show", host)...)
		return o
	}
}

// installCheck reimages the host, boots it and compares its script and
// installer config with the benign ones of profile kind ("ks", "img").
// userText is true when the value is the admin's own text (cmdline adds
// kernel arguments, config adds config lines).
func (h *hostileRun) installCheck(name string, macs []string, kind string, userText bool) []string {
	s := h.s
	tok := s.rotateToken(name)
	if a := s.api("POST", "/api/v1/hosts/"+url.PathEscape(name)+"/reimage", map[string]any{"reason": "hostile"}); a.code != http.StatusOK {
		h.t.Logf("%s: reimage answered %s", name, a) // not an injection; reported in the log
		return nil
	}
	a := s.boot(name, tok, "mac="+url.QueryEscape(macs[0]))
	if a.code != http.StatusOK {
		// Fail safe: whatever broke, the host boots its disk. Not an
		// injection; reported in the log.
		h.t.Logf("%s: boot after reimage answered %s", name, a)
		return nil
	}
	harm := compareScripts(h.script[kind], a.body, !userText)
	if kind != "ks" {
		return harm
	}
	cfg, ok := h.fetchConfig(a.body)
	switch {
	case !ok:
		if !strings.Contains(string(a.body), "exit 1") {
			harm = append(harm, "install script without a config URL")
		}
	case cfg.code == http.StatusOK:
		// The config is read by an installer, not a terminal: CR and bidi
		// are its text; NUL, ESC and the other controls are not.
		if c := terminalControl(bytes.ReplaceAll(cfg.body, []byte("\r"), nil)); c != "" && !strings.HasPrefix(c, "bidi") {
			harm = append(harm, "installer config holds "+c)
		}
		if !userText && strings.Count(string(cfg.body), "\n") != strings.Count(string(h.config), "\n") {
			harm = append(harm, fmt.Sprintf("installer config has %d lines, a benign one %d: %s",
				strings.Count(string(cfg.body), "\n"), strings.Count(string(h.config), "\n"), quoteShort(cfg.body, 3000)))
		}
	case cfg.code >= 500:
		h.t.Logf("%s: installer config answered %s", name, cfg)
	}
	return harm
}

var configURLRE = regexp.MustCompile(`https://\S+/boot/v1/config/\S+`)

// fetchConfig GETs the installer config named in script.
func (h *hostileRun) fetchConfig(script []byte) (answer, bool) {
	u := configURLRE.Find(script)
	if u == nil {
		return answer{}, false
	}
	req, err := http.NewRequest("GET", string(u), nil)
	if err != nil {
		return answer{}, false
	}
	return h.s.do(req), true
}

// compareScripts reports how got runs differently from benign in iPXE:
// other commands, labels, terminators or comments, settings expanded,
// control bytes, and (if args) other argument counts.
func compareScripts(benign, got []byte, args bool) []string {
	var harm []string
	b, g := shape(benign, args), shape(got, args)
	if !slices.Equal(b, g) {
		harm = append(harm, fmt.Sprintf("the script runs %q, a benign one %q:\n%s", g, b, got))
	}
	if nb, ng := strings.Count(string(benign), "${"), strings.Count(string(got), "${"); ng > nb {
		harm = append(harm, fmt.Sprintf("the script expands %d settings (${…}), a benign one %d", ng, nb))
	}
	for i, c := range got {
		if (c < 0x20 && c != '\n') || c == 0x7f {
			harm = append(harm, fmt.Sprintf("the script holds control byte %#x at %d", c, i))
			break
		}
	}
	return harm
}

// shape is what iPXE runs of script: each label, each command's name and
// terminator (with its argument count if args), each comment.
func shape(script []byte, args bool) []string {
	var out []string
	for _, l := range ipxescript.Parse(string(script)) {
		if l.Label != "" {
			out = append(out, l.Label)
		}
		for _, c := range l.Commands {
			name := ""
			if len(c.Tokens) > 0 {
				name = c.Tokens[0].Text
			}
			if args {
				name += fmt.Sprintf("/%d", len(c.Tokens))
			}
			out = append(out, name+" "+c.Terminator)
		}
		if l.Comment != "" {
			out = append(out, "#")
		}
	}
	return out
}

// bmcField sets the BMC of the bmc host with v in key.
func (h *hostileRun) bmcField(key string) func(*hostileRun, string) outcome {
	return func(h *hostileRun, v string) outcome {
		body := map[string]any{"url": "https://127.0.0.1:1", "username": "admin", "password": "bmc-pw"}
		body[key] = v
		n := h.next()
		name := fmt.Sprintf("h%d", n) // a fresh host: its events show only this value
		h.s.addHost(name, n, "")
		a := h.s.api("PUT", "/api/v1/hosts/"+name+"/bmc", body)
		if o, ok := refusal(a, []string{key}); ok {
			return o
		}
		if a.code != http.StatusOK {
			return outcome{harm: []string{"set BMC: " + a.String()}}
		}
		return outcome{harm: append(h.cliCheck("bmc", "show", name), h.cliCheck("host", "show", name)...)}
	}
}

// inventoryField boots the ready host inv with v in query parameter key.
func (h *hostileRun) inventoryField(key string) func(*hostileRun, string) outcome {
	return func(h *hostileRun, v string) outcome {
		a := h.s.boot("inv", h.invTok, "mac="+mac(1)+"&"+key+"="+url.QueryEscape(v))
		if a.code >= 400 && a.code <= 499 {
			return outcome{refused: true, code: a.code, named: strings.Contains(string(a.body), key)}
		}
		if a.code != http.StatusOK {
			return outcome{harm: []string{"boot: " + a.String()}}
		}
		harm := compareScripts(h.script["local"], a.body, true)
		return outcome{harm: append(harm, h.cliCheck("host", "show", "inv")...)}
	}
}

// callbackDetail reports progress of host cb's live attempt with detail v.
func (h *hostileRun) callbackDetail(v string) outcome {
	body, _ := json.Marshal(map[string]string{"event": "progress", "detail": v})
	n := h.next()
	name := fmt.Sprintf("h%d", n) // a fresh host: its events show only this value
	tok := h.s.addHost(name, n, "ks")
	a := h.s.callback(callbackURL(h.t, h.s.installing(name, tok, n)), string(body))
	if o, ok := refusal(a, []string{"detail"}); ok {
		return o
	}
	if a.code != http.StatusOK {
		return outcome{harm: []string{"callback: " + a.String()}}
	}
	return outcome{harm: append(h.cliCheck("host", "show", name), h.cliCheck("host", "events", name)...)}
}

// cliCheck runs the CLI and reports terminal controls in what it prints.
func (h *hostileRun) cliCheck(args ...string) []string {
	out, errOut, err := h.s.cli(args...)
	var harm []string
	for what, b := range map[string][]byte{"stdout": out, "stderr": errOut} {
		if c := terminalControl(b); c != "" {
			harm = append(harm, fmt.Sprintf("bootpilot %s: %s holds %s: %s", strings.Join(args, " "), what, c, quoteShort(b, 600)))
		}
	}
	if err != nil && len(harm) == 0 {
		h.t.Logf("bootpilot %s: %v: %s", strings.Join(args, " "), err, quoteShort(errOut, 300))
	}
	return harm
}
