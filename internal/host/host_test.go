package host_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

func validHost() host.Host {
	return host.Host{Name: "node01", MACs: []string{"52-54-00-12-34-56"}, IPv4: "10.0.2.15/24",
		Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
}

func TestHostNormalize(t *testing.T) {
	h := validHost()
	h.IPv6, h.Gateway6, h.Domain = "2001:DB8::15/64", "2001:db8::1", "example.org"
	if err := h.Normalize(); err != nil {
		t.Fatalf("Normalize(valid) = %v", err)
	}
	if h.MACs[0] != "52:54:00:12:34:56" || h.Hostname != "node01" || h.State != host.StateReady || h.IPv6 != "2001:db8::15/64" {
		t.Errorf("normalized = %+v", h)
	}
	tests := []struct {
		field string
		mut   func(h *host.Host)
	}{
		{"name", func(h *host.Host) { h.Name = "-bad" }},
		{"name", func(h *host.Host) { h.Name = "UPPER" }},
		{"name", func(h *host.Host) { h.Name = strings.Repeat("a", 64) }},
		{"macs", func(h *host.Host) { h.MACs = nil }},
		{"macs", func(h *host.Host) { h.MACs = []string{"52:54:00:12:34:56", "52-54-00-12-34-56"} }},
		{"macs", func(h *host.Host) { h.MACs = []string{"00:00:00:00:00:00:00:01"} }},
		{"ipv4", func(h *host.Host) { h.IPv4 = "10.0.2.15" }},
		{"ipv4", func(h *host.Host) { h.IPv4 = "10.0.2.0/24" }},
		{"ipv4", func(h *host.Host) { h.IPv4 = "2001:db8::1/64" }},
		{"gateway", func(h *host.Host) { h.Gateway = "10.0.3.1" }},
		{"gateway", func(h *host.Host) { h.Gateway = "10.0.2.15" }},
		{"dns", func(h *host.Host) { h.DNS = []string{"ns1"} }},
		{"dns", func(h *host.Host) { h.DNS = nil }},
		{"ipv6", func(h *host.Host) { h.IPv6 = "2001:db8::15" }},
		{"gateway6", func(h *host.Host) { h.Gateway6 = "2001:db8::1" }},
		{"vlan", func(h *host.Host) { h.VLAN = 4095 }},
		{"domain", func(h *host.Host) { h.Domain = "a b" }},
		{"profile", func(h *host.Host) { h.Profile = "x y" }},
		{"state", func(h *host.Host) { h.State = "bogus" }},
	}
	for _, tt := range tests {
		h := validHost()
		tt.mut(&h)
		err := h.Normalize()
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != tt.field {
			t.Errorf("%s: Normalize = %v, want a ValidationError on %q", tt.field, err, tt.field)
		}
	}
}

func TestProfileNormalize(t *testing.T) {
	ok := host.Profile{Name: "rocky9", Kernel: "https://m.example/vmlinuz", Initrds: []string{"https://m.example/initrd.img"},
		Cmdline: "inst.repo=https://m.example/rocky9 console=ttyS0,115200n8", Installer: "kickstart"}
	if err := ok.Normalize(); err != nil {
		t.Fatalf("valid profile: %v", err)
	}
	for _, tt := range []struct {
		field string
		mut   func(p *host.Profile)
	}{
		{"kernel", func(p *host.Profile) { p.Kernel = "file:///vmlinuz" }},
		{"kernel", func(p *host.Profile) { p.Kernel = "https://user:pw@m.example/vmlinuz" }},
		{"initrds", func(p *host.Profile) { p.Initrds = []string{"https://m.example/a b"} }},
		{"cmdline", func(p *host.Profile) { p.Cmdline = "quiet\nshell" }},
		{"cmdline", func(p *host.Profile) { p.Cmdline = "a=${net0/ip}" }},
		{"cmdline", func(p *host.Profile) { p.Cmdline = "a || b" }},
		{"cmdline", func(p *host.Profile) { p.Cmdline = "--timeout=1" }},
		{"cmdline", func(p *host.Profile) { p.Cmdline = "a#b" }},
		{"installer", func(p *host.Profile) { p.Installer = "windows" }},
		{"image", func(p *host.Profile) { p.Installer = "image" }},
		{"image_sha256", func(p *host.Profile) { p.Installer, p.Image, p.ImageSHA256 = "image", "https://i.example/d.raw", "xyz" }},
		{"clean_method", func(p *host.Profile) { p.CleanMethod = "shred" }},
	} {
		p := ok
		tt.mut(&p)
		err := p.Normalize()
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != tt.field {
			t.Errorf("%s: Normalize = %v, want a ValidationError on %q", tt.field, err, tt.field)
		}
	}
}

// FuzzCheckWord: whatever CheckWord accepts carries nothing iPXE interprets.
func FuzzCheckWord(f *testing.F) {
	for _, s := range []string{"https://a/b", "a${b}", "a||b", "a&&b", "a#b", "a b", "a\nb", "é", "a$b", "ok=1", ";", "a;b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if host.CheckWord("f", s) != nil {
			return
		}
		for _, bad := range []string{" ", "\t", "\n", "\r", "#", "${", "||", "&&", "\\", "\"", "'"} {
			if strings.Contains(s, bad) {
				t.Fatalf("CheckWord accepted %q containing %q", s, bad)
			}
		}
		if s == ";" {
			t.Fatalf("CheckWord accepted %q, a command separator", s)
		}
	})
}
