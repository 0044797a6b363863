package bootscripts_test

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCase renders one script (File "") or one config file.
type goldenCase struct {
	name string // golden file: testdata/<name>
	file string // "" for the script, else the config file
	data bootscripts.ScriptData
}

func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	h := testHost(t, nil)
	hv := testHost(t, func(h *host.Host) {
		h.VLAN = 100
		h.IPv6 = "2001:db8::15/64"
		h.Gateway6 = "2001:db8::1"
		h.Hostname = "web01"
		h.Domain = ""
		h.DNS = []string{"10.0.2.3", "2001:db8::53", "10.0.2.4"}
	})
	h6 := testHost(t, func(h *host.Host) {
		h.IPv6 = "2001:db8::15/64"
		h.Gateway6 = "2001:db8::1"
		h.DNS = []string{"2001:db8::53", "10.0.2.3"}
	})
	ks := testProfile(t, host.InstallerKickstart, nil)
	ps := testProfile(t, host.InstallerPreseed, nil)
	ai := testProfile(t, host.InstallerAutoinstall, nil)
	none := testProfile(t, host.InstallerNone, nil)
	img := testProfile(t, host.InstallerImage, nil)
	oci := testProfile(t, host.InstallerImage, func(p *host.Profile) {
		p.Image = "registry.example:5000/os/flatcar@sha256:4b9e7f0c0a6a8cf2d1a7c0a1e5e5e3b1b8f0d2c4a6e8f0a2c4e6a8c0e2a4c6e8"
		p.TargetDisk = ""
	})
	custom := testProfile(t, host.InstallerKickstart, func(p *host.Profile) {
		p.Name = "custom"
		p.Config = "# custom kickstart for {{.FQDN}} ({{.MAC}})\nnetwork --bootproto=static --ip={{.IPv4}}\n%post --nochroot\ncurl --cacert /tmp/ca.pem --data '{{.CallbackInstalled}}' {{.CallbackURL}}\n%end\n"
	})
	poweroff := func(d bootscripts.ScriptData) bootscripts.ScriptData { d.After = "poweroff"; return d }
	return []goldenCase{
		{"install-kickstart.ipxe", "", testData(t, host.ActionInstall, h, ks)},
		{"install-kickstart.ks.cfg", "ks.cfg", testData(t, host.ActionInstall, h, ks)},
		{"install-kickstart-vlan-ipv6.ipxe", "", testData(t, host.ActionInstall, hv, ks)},
		{"install-kickstart-vlan-ipv6.ks.cfg", "ks.cfg", poweroff(testData(t, host.ActionInstall, hv, ks))},
		{"install-kickstart-custom.ks.cfg", "ks.cfg", testData(t, host.ActionInstall, h, custom)},
		{"install-preseed.ipxe", "", testData(t, host.ActionInstall, h, ps)},
		{"install-preseed.preseed.cfg", "preseed.cfg", testData(t, host.ActionInstall, h, ps)},
		{"install-preseed-vlan.ipxe", "", testData(t, host.ActionInstall, hv, ps)},
		{"install-preseed-vlan.preseed.cfg", "preseed.cfg", poweroff(testData(t, host.ActionInstall, hv, ps))},
		{"install-autoinstall.ipxe", "", testData(t, host.ActionInstall, h, ai)},
		{"install-autoinstall.user-data", "user-data", testData(t, host.ActionInstall, h, ai)},
		{"install-autoinstall.meta-data", "meta-data", testData(t, host.ActionInstall, h, ai)},
		{"install-autoinstall-ipv6.ipxe", "", testData(t, host.ActionInstall, h6, ai)},
		{"install-autoinstall-ipv6.user-data", "user-data", poweroff(testData(t, host.ActionInstall, h6, ai))},
		{"install-none.ipxe", "", testData(t, host.ActionInstall, h, none)},
		{"install-preseed-ipv6.ipxe", "", testData(t, host.ActionInstall, h6, ps)},
		{"install-image.ipxe", "", testData(t, host.ActionInstall, h, img)},
		{"install-image-oci-vlan.ipxe", "", poweroff(testData(t, host.ActionInstall, hv, oci))},
		{"clean.ipxe", "", testData(t, host.ActionClean, h, cleanProfile(t))},
		{"clean-vlan.ipxe", "", poweroff(testData(t, host.ActionClean, hv, cleanProfile(t)))},
		{"hold.ipxe", "", testData(t, host.ActionHold, h, host.Profile{})},
		{"localboot.ipxe", "", testData(t, host.ActionLocalboot, h, host.Profile{})},
	}
}

// TestGolden renders every case and compares it with testdata/<name>.golden.
// Run with -update to rewrite the files, then review the diff.
func TestGolden(t *testing.T) {
	r := MustRenderer(t)
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			var err error
			if c.file == "" {
				err = r.Script(&b, c.data)
			} else {
				err = r.Config(&b, c.file, c.data)
			}
			if err != nil {
				t.Fatalf("render %s: %v", c.name, err)
			}
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./bootscripts -run Golden -update)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("%s differs from %s (run -update and review the diff)\ngot:\n%s\nwant:\n%s", c.name, path, got, want)
			}
		})
	}
}

// TestGoldenCoversEveryTemplate fails when an embedded template has no
// golden case, or when a golden file has no case (a stale file).
func TestGoldenCoversEveryTemplate(t *testing.T) {
	cases := goldenCases(t)
	used := map[string]bool{}
	files := map[string]bool{}
	for _, c := range cases {
		used[bootscripts.TemplateFor(c.data, c.file)] = true
		files[c.name+".golden"] = true
	}
	n := 0
	err := fs.WalkDir(bootscripts.TemplatesFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		src, err := fs.ReadFile(bootscripts.TemplatesFS, path)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(src, []byte("{{- /*")) || !bytes.Contains(src[:bytes.Index(src, []byte("*/"))], []byte("Fields")) {
			t.Errorf("template %s does not start with a comment listing its Fields", path)
		}
		if !used[path] {
			t.Errorf("template %s has no golden case in goldenCases", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Errorf("found %d templates, want at least 6", n)
	}
	golden, _ := filepath.Glob("testdata/*.golden")
	for _, g := range golden {
		if !files[filepath.Base(g)] {
			t.Errorf("%s belongs to no golden case (stale?)", g)
		}
	}
	for _, i := range []host.Installer{host.InstallerKickstart, host.InstallerPreseed, host.InstallerAutoinstall, host.InstallerNone, host.InstallerImage} {
		for _, f := range append([]string{""}, bootscripts.ConfigFiles(i)...) {
			found := false
			for _, c := range cases {
				if c.data.Action == host.ActionInstall && c.data.Profile.Installer == i && c.file == f {
					found = true
				}
			}
			if !found {
				t.Errorf("installer %s: no golden case for %q (\"\" = script)", i, f)
			}
		}
	}
}
