package bootscripts_test

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

func TestLocalboot(t *testing.T) {
	r := MustRenderer(t)
	var b bytes.Buffer
	d := testData(t, host.ActionLocalboot, testHost(t, nil), host.Profile{})
	if err := r.Script(&b, d); err != nil {
		t.Fatalf("Script(localboot) = %v", err)
	}
	if b.String() != bootscripts.Localboot {
		t.Errorf("Script(localboot) = %q, want Localboot %q", b.String(), bootscripts.Localboot)
	}
	if !strings.HasPrefix(bootscripts.Localboot, "#!ipxe\n") || !strings.HasSuffix(bootscripts.Localboot, "\nexit 1\n") {
		t.Errorf("Localboot = %q, want #!ipxe … exit 1", bootscripts.Localboot)
	}
}

// TestScriptShape checks the rules every rendered script follows, for every
// action and installer.
func TestScriptShape(t *testing.T) {
	r := MustRenderer(t)
	h := testHost(t, nil)
	for _, d := range []bootscripts.ScriptData{
		testData(t, host.ActionInstall, h, testProfile(t, host.InstallerKickstart, nil)),
		testData(t, host.ActionInstall, h, testProfile(t, host.InstallerPreseed, nil)),
		testData(t, host.ActionInstall, h, testProfile(t, host.InstallerAutoinstall, nil)),
		testData(t, host.ActionInstall, h, testProfile(t, host.InstallerNone, nil)),
		testData(t, host.ActionInstall, h, testProfile(t, host.InstallerImage, nil)),
		testData(t, host.ActionClean, h, cleanProfile(t)),
		testData(t, host.ActionHold, h, host.Profile{}),
	} {
		var b bytes.Buffer
		if err := r.Script(&b, d); err != nil {
			t.Fatalf("Script(%s, %s) = %v", d.Action, d.Profile.Installer, err)
		}
		checkNoInjection(t, b.String())
		s := b.String()
		if !strings.Contains(s, "\n:failed\n") || strings.Count(s, "|| goto failed") < 2 {
			t.Errorf("Script(%s, %s) has no failure path:\n%s", d.Action, d.Profile.Installer, s)
		}
		if d.Action != host.ActionHold && !strings.Contains(s, "bootpilot.callback="+d.CallbackURL+" ") {
			t.Errorf("Script(%s, %s) does not pass bootpilot.callback:\n%s", d.Action, d.Profile.Installer, s)
		}
	}
}

// TestScriptRefuses feeds values that bypass Normalize: Script must refuse
// them with a *host.ValidationError and write nothing.
func TestScriptRefuses(t *testing.T) {
	r := MustRenderer(t)
	base := func() bootscripts.ScriptData {
		return testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerKickstart, nil))
	}
	img := func() bootscripts.ScriptData {
		return testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, host.InstallerImage, nil))
	}
	tests := []struct {
		name string
		mod  func(*bootscripts.ScriptData)
		from func() bootscripts.ScriptData
	}{
		{"hostname with newline", func(d *bootscripts.ScriptData) { d.Host.Hostname = "a\nshell" }, base},
		{"name with space", func(d *bootscripts.ScriptData) { d.Host.Name = "a b" }, base},
		{"domain with ||", func(d *bootscripts.ScriptData) { d.Host.Domain = "a||b" }, base},
		{"mac garbage", func(d *bootscripts.ScriptData) { d.Host.MACs = []string{"${net0/mac}"} }, base},
		{"ipv4 garbage", func(d *bootscripts.ScriptData) { d.Host.IPv4 = "10.0.2.15/24 init=/bin/sh" }, base},
		{"gateway garbage", func(d *bootscripts.ScriptData) { d.Host.Gateway = "x" }, base},
		{"dns garbage", func(d *bootscripts.ScriptData) { d.Host.DNS = []string{"10.0.2.3#"} }, base},
		{"ipv6 garbage", func(d *bootscripts.ScriptData) { d.Host.IPv6 = "::1 x" }, base},
		{"vlan out of range", func(d *bootscripts.ScriptData) { d.Host.VLAN = 5000 }, base},
		{"kernel with ${", func(d *bootscripts.ScriptData) { d.Profile.Kernel = "https://m/${x}" }, base},
		{"kernel not a URL", func(d *bootscripts.ScriptData) { d.Profile.Kernel = "tftp://m/k" }, base},
		{"initrd with &&", func(d *bootscripts.ScriptData) { d.Profile.Initrds = []string{"https://m/i&&shell"} }, base},
		{"cmdline with #", func(d *bootscripts.ScriptData) { d.Profile.Cmdline = "a #b" }, base},
		{"cmdline option", func(d *bootscripts.ScriptData) { d.Profile.Cmdline = "--name x" }, base},
		{"cmdline newline", func(d *bootscripts.ScriptData) { d.Profile.Cmdline = "a\nshell" }, base},
		{"cmdline too long", func(d *bootscripts.ScriptData) { d.Profile.Cmdline = strings.Repeat("x", 2000) }, base},
		{"callback with credentials", func(d *bootscripts.ScriptData) { d.CallbackURL = "https://u:p@h/cb" }, base},
		{"callback missing", func(d *bootscripts.ScriptData) { d.CallbackURL = "" }, base},
		{"config URL missing", func(d *bootscripts.ScriptData) { d.ConfigURL = "" }, base},
		{"timeout zero", func(d *bootscripts.ScriptData) { d.Timeout = 0 }, base},
		{"profile name", func(d *bootscripts.ScriptData) { d.Profile.Name = "A B" }, base},
		{"installer unknown", func(d *bootscripts.ScriptData) { d.Profile.Installer = "windows" }, base},
		{"autoinstall over VLAN", func(d *bootscripts.ScriptData) {
			d.Profile = testProfile(t, host.InstallerAutoinstall, nil)
			d.Host.VLAN = 10
		}, base},
		{"image sha", func(d *bootscripts.ScriptData) { d.Profile.ImageSHA256 = "abc" }, img},
		{"image with $", func(d *bootscripts.ScriptData) { d.Profile.Image = "reg/x$y" }, img},
		{"image other scheme", func(d *bootscripts.ScriptData) { d.Profile.Image = "ftp://x/y" }, img},
		{"disk hint with space", func(d *bootscripts.ScriptData) { d.Profile.TargetDisk = "a b" }, img},
		{"ca fingerprint", func(d *bootscripts.ScriptData) { d.CAFingerprint = "xyz" }, img},
		{"after", func(d *bootscripts.ScriptData) { d.After = "halt" }, img},
		{"clean method", func(d *bootscripts.ScriptData) {
			d.Action = host.ActionClean
			d.Profile.CleanMethod = "shred"
		}, img},
		{"hold zero seconds", func(d *bootscripts.ScriptData) {
			d.Action = host.ActionHold
			d.HoldSeconds = 0
		}, base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.from()
			tt.mod(&d)
			var b bytes.Buffer
			err := r.Script(&b, d)
			var ve *host.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("Script() = %v, want a *host.ValidationError", err)
			}
			if b.Len() != 0 {
				t.Errorf("Script() failed but wrote %q", b.String())
			}
		})
	}
	var b bytes.Buffer
	d := base()
	d.Action = "dance"
	if err := r.Script(&b, d); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("Script(action dance) = %v, want host.ErrNotFound", err)
	}
}

func TestConfigFiles(t *testing.T) {
	tests := []struct {
		in   host.Installer
		want string
	}{
		{host.InstallerKickstart, "ks.cfg"},
		{host.InstallerPreseed, "preseed.cfg"},
		{host.InstallerAutoinstall, "user-data meta-data"},
		{host.InstallerImage, ""},
		{host.InstallerNone, ""},
	}
	for _, tt := range tests {
		if got := strings.Join(bootscripts.ConfigFiles(tt.in), " "); got != tt.want {
			t.Errorf("ConfigFiles(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	r := MustRenderer(t)
	h := testHost(t, nil)
	ks := testData(t, host.ActionInstall, h, testProfile(t, host.InstallerKickstart, nil))
	for _, tt := range []struct {
		file string
		d    bootscripts.ScriptData
	}{
		{"preseed.cfg", ks},
		{"../ks.cfg", ks},
		{"user-data", ks},
		{"ks.cfg", testData(t, host.ActionInstall, h, testProfile(t, host.InstallerImage, nil))},
		{"ks.cfg", testData(t, host.ActionInstall, h, testProfile(t, host.InstallerNone, nil))},
	} {
		var b bytes.Buffer
		if err := r.Config(&b, tt.file, tt.d); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("Config(%q, installer %s) = %v, want host.ErrNotFound", tt.file, tt.d.Profile.Installer, err)
		}
		if b.Len() != 0 {
			t.Errorf("Config(%q) wrote %q", tt.file, b.String())
		}
	}

	for name, mod := range map[string]func(*bootscripts.ScriptData){
		"no CA": func(d *bootscripts.ScriptData) { d.CAPEM = "" },
		"CA is a key": func(d *bootscripts.ScriptData) {
			d.CAPEM = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
		},
		"CA trailer":     func(d *bootscripts.ScriptData) { d.CAPEM += "BOOTPILOT_CA\nreboot\n" },
		"callback creds": func(d *bootscripts.ScriptData) { d.CallbackURL = "https://a:b@h/x" },
		"hostname":       func(d *bootscripts.ScriptData) { d.Host.Hostname = "a --bootproto=dhcp" },
		"missing key":    func(d *bootscripts.ScriptData) { d.Profile.Config = "{{.NoSuchField}}" },
		"huge":           func(d *bootscripts.ScriptData) { d.Profile.Config = `{{range 2000000}}x{{end}}` },
	} {
		d := ks
		mod(&d)
		var b bytes.Buffer
		if err := r.Config(&b, "ks.cfg", d); err == nil {
			t.Errorf("Config(ks.cfg) with %s = nil, want an error", name)
		}
		if b.Len() != 0 {
			t.Errorf("Config(ks.cfg) with %s failed but wrote %d bytes", name, b.Len())
		}
	}
}

// TestInstallerFiles: iPXE, not the installer, fetches each installer's
// config (and for d-i the CA) from the one-time config URL into the
// initramfs, and the kernel arguments point the installer at the local
// copy; a profile whose command line names its own config location gets
// neither.
func TestInstallerFiles(t *testing.T) {
	const cfg = "https://10.0.2.100:8443/boot/v1/config/node01/cf0123456789abcdef0123456789abcd/"
	own := func(arg string) func(*host.Profile) {
		return func(p *host.Profile) { p.Cmdline += " " + arg }
	}
	for _, tt := range []struct {
		name    string
		profile host.Profile
		files   []string // "URL PATH" of each config initrd line
		arg     string   // the config argument on the kernel command line
		noArg   string   // must not be on the kernel command line
	}{
		{"kickstart", testProfile(t, host.InstallerKickstart, nil),
			[]string{cfg + "ks.cfg /ks.cfg"}, " inst.ks=file:/ks.cfg ", "inst.ks=https"},
		{"preseed", testProfile(t, host.InstallerPreseed, nil),
			[]string{cfg + "preseed.cfg /preseed.cfg", cfg + "ca.pem /bootpilot-ca.pem"}, " auto=true priority=critical ", "url="},
		{"autoinstall", testProfile(t, host.InstallerAutoinstall, nil),
			nil, " ds=nocloud-net;s=" + cfg + " ", "/user-data"},
		{"none", testProfile(t, host.InstallerNone, nil), nil, " nameserver=10.0.2.3 ", cfg},
		{"kickstart, own config", testProfile(t, host.InstallerKickstart, own("inst.ks=https://ks.example/node.ks")),
			nil, " inst.ks=https://ks.example/node.ks ", "inst.ks=file:"},
		{"preseed, own config", testProfile(t, host.InstallerPreseed, own("url=https://ps.example/p.cfg")),
			nil, " url=https://ps.example/p.cfg ", cfg},
		{"autoinstall, own config", testProfile(t, host.InstallerAutoinstall, own("ds=nocloud-net;s=https://ai.example/")),
			nil, " ds=nocloud-net;s=https://ai.example/ ", cfg},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := MustRenderer(t).Script(&b, testData(t, host.ActionInstall, testHost(t, nil), tt.profile)); err != nil {
				t.Fatalf("Script = %v", err)
			}
			var files []string
			var kernel string
			for i, l := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(l, "kernel ") {
					kernel = l
				}
				if rest, ok := strings.CutPrefix(l, "initrd --timeout 30000 --name cfg"+strconv.Itoa(len(files))+" "); ok {
					files = append(files, strings.TrimSuffix(rest, " || goto failed"))
					if !strings.HasSuffix(l, " || goto failed") {
						t.Errorf("line %d %q has no failure path", i, l)
					}
				}
			}
			if strings.Join(files, "\n") != strings.Join(tt.files, "\n") {
				t.Errorf("config initrds = %q, want %q", files, tt.files)
			}
			if !strings.Contains(kernel, tt.arg) || strings.Contains(kernel, tt.noArg) {
				t.Errorf("kernel line %q: want %q, not %q", kernel, tt.arg, tt.noArg)
			}
		})
	}
}

// TestConfigCA: the config URL serves the organisation CA as ca.pem, in
// canonical PEM, for installers that have configs only.
func TestConfigCA(t *testing.T) {
	r := MustRenderer(t)
	h := testHost(t, nil)
	want, _ := testCA(t)
	for _, i := range []host.Installer{host.InstallerKickstart, host.InstallerPreseed, host.InstallerAutoinstall} {
		var b bytes.Buffer
		if err := r.Config(&b, bootscripts.CAFile, testData(t, host.ActionInstall, h, testProfile(t, i, nil))); err != nil {
			t.Fatalf("Config(%s, %s) = %v", i, bootscripts.CAFile, err)
		}
		if b.String() != want {
			t.Errorf("Config(%s, %s) = %q, want the CA %q", i, bootscripts.CAFile, b.String(), want)
		}
	}
	var b bytes.Buffer
	err := r.Config(&b, bootscripts.CAFile, testData(t, host.ActionInstall, h, testProfile(t, host.InstallerNone, nil)))
	if !errors.Is(err, host.ErrNotFound) || b.Len() != 0 {
		t.Errorf("Config(none, %s) = %v (%d bytes), want ErrNotFound and nothing", bootscripts.CAFile, err, b.Len())
	}
}

// TestConfigsNeverSkipVerification makes sure no built-in config turns TLS
// verification off.
func TestConfigsNeverSkipVerification(t *testing.T) {
	r := MustRenderer(t)
	h := testHost(t, nil)
	for _, i := range []host.Installer{host.InstallerKickstart, host.InstallerPreseed, host.InstallerAutoinstall} {
		d := testData(t, host.ActionInstall, h, testProfile(t, i, nil))
		for _, f := range bootscripts.ConfigFiles(i) {
			var b bytes.Buffer
			if err := r.Config(&b, f, d); err != nil {
				t.Fatalf("Config(%s) = %v", f, err)
			}
			s := b.String()
			for _, bad := range []string{"--insecure", " -k ", "no-check-certificate", "noverifyssl", "dhcp"} {
				if strings.Contains(s, bad) {
					t.Errorf("Config(%s) contains %q", f, bad)
				}
			}
			if f != "meta-data" && strings.Count(s, "--cacert") < 1 {
				t.Errorf("Config(%s) has no --cacert", f)
			}
		}
	}
}

func TestCheckConfigTemplate(t *testing.T) {
	good := []string{
		"",
		"network --ip={{.IPv4}} --hostname={{.FQDN}}\n{{range .DNS}}ns {{.}}\n{{end}}{{if .IPv6}}{{.CIDR6}}{{end}}",
		"content: {{json .CAPEM}}\n{{range lines .CAPEM}}'{{.}}'{{end}} {{join .DNS \",\"}}",
	}
	for _, src := range good {
		if err := bootscripts.CheckConfigTemplate(src); err != nil {
			t.Errorf("CheckConfigTemplate(%q) = %v, want nil", src, err)
		}
	}
	bad := []string{
		"{{.IPv4",                      // parse error
		"{{.NoSuchField}}",             // unknown field
		"{{index .DNS 7}}",             // execution error
		"{{template \"other\" .}}",     // undefined template
		"{{range 5000000}}xxxx{{end}}", // too large
	}
	for _, src := range bad {
		err := bootscripts.CheckConfigTemplate(src)
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != "config" {
			t.Errorf("CheckConfigTemplate(%q) = %v, want a *host.ValidationError for field config", src, err)
		}
	}
}

func BenchmarkScriptKickstart(b *testing.B) {
	r := MustRenderer(b)
	d := testData(b, host.ActionInstall, testHost(b, nil), testProfile(b, host.InstallerKickstart, nil))
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := r.Script(&buf, d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConfigKickstart(b *testing.B) {
	r := MustRenderer(b)
	d := testData(b, host.ActionInstall, testHost(b, nil), testProfile(b, host.InstallerKickstart, nil))
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := r.Config(&buf, "ks.cfg", d); err != nil {
			b.Fatal(err)
		}
	}
}
