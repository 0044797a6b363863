package bootscripts_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"testing"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

// MustRenderer returns a Renderer or stops the test.
func MustRenderer(tb testing.TB) *bootscripts.Renderer {
	tb.Helper()
	r, err := bootscripts.New()
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	return r
}

// testCA returns the fixed test CA (testdata/ca.pem) and its fingerprint.
func testCA(tb testing.TB) (pemText, fingerprint string) {
	tb.Helper()
	b, err := os.ReadFile("testdata/ca.pem")
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatal("testdata/ca.pem: no PEM block")
	}
	sum := sha256.Sum256(blk.Bytes)
	return string(b), hex.EncodeToString(sum[:])
}

// testHost returns a normalized host; mod may change it before Normalize.
func testHost(tb testing.TB, mod func(*host.Host)) host.Host {
	tb.Helper()
	h := host.Host{
		Name:    "node01",
		MACs:    []string{"52:54:00:12:34:56", "52:54:00:12:34:57"},
		IPv4:    "10.0.2.15/24",
		Gateway: "10.0.2.2",
		DNS:     []string{"10.0.2.3", "10.0.2.4"},
		Domain:  "example.org",
		Profile: "rocky9",
	}
	if mod != nil {
		mod(&h)
	}
	if err := h.Normalize(); err != nil {
		tb.Fatalf("host.Normalize() = %v", err)
	}
	return h
}

// testProfile returns a normalized profile for installer i.
func testProfile(tb testing.TB, i host.Installer, mod func(*host.Profile)) host.Profile {
	tb.Helper()
	p := host.Profile{Name: string(i), Installer: i}
	switch i {
	case host.InstallerKickstart:
		p.Name = "rocky9"
		p.Kernel = "https://mirror.example/rocky9/images/pxeboot/vmlinuz"
		p.Initrds = []string{"https://mirror.example/rocky9/images/pxeboot/initrd.img"}
		p.Cmdline = "inst.repo=https://mirror.example/rocky9 console=ttyS0,115200"
	case host.InstallerPreseed:
		p.Name = "debian12"
		p.Kernel = "https://mirror.example/debian12/linux"
		p.Initrds = []string{"https://mirror.example/debian12/initrd.gz"}
		p.Cmdline = "console=ttyS0,115200"
	case host.InstallerAutoinstall:
		p.Name = "ubuntu2404"
		p.Kernel = "https://mirror.example/ubuntu2404/vmlinuz"
		p.Initrds = []string{"https://mirror.example/ubuntu2404/initrd"}
		p.Cmdline = "url=https://mirror.example/ubuntu2404/ubuntu-24.04-live-server-amd64.iso console=ttyS0,115200"
	case host.InstallerNone:
		p.Name = "rescue"
		p.Kernel = "https://mirror.example/rescue/vmlinuz"
		p.Initrds = []string{"https://mirror.example/rescue/initrd.img", "https://mirror.example/rescue/extra.cpio"}
		p.Cmdline = "console=ttyS0"
	case host.InstallerImage:
		p.Name = "flatcar"
		p.Kernel = "https://10.0.2.100:8443/agent/vmlinuz"
		p.Initrds = []string{"https://10.0.2.100:8443/agent/initrd.cpio.gz"}
		p.Cmdline = "console=ttyS0"
		p.Image = "https://images.example/flatcar.raw.zst"
		p.ImageSHA256 = "4b9e7f0c0a6a8cf2d1a7c0a1e5e5e3b1b8f0d2c4a6e8f0a2c4e6a8c0e2a4c6e8"
		p.TargetDisk = "size>=100G"
	}
	if mod != nil {
		mod(&p)
	}
	if err := p.Normalize(); err != nil {
		tb.Fatalf("profile.Normalize() = %v", err)
	}
	return p
}

// cleanProfile is the agent profile used for clean.
func cleanProfile(tb testing.TB) host.Profile {
	tb.Helper()
	return testProfile(tb, host.InstallerNone, func(p *host.Profile) {
		p.Name = "agent"
		p.Kernel = "https://10.0.2.100:8443/agent/vmlinuz"
		p.Initrds = []string{"https://10.0.2.100:8443/agent/initrd.cpio.gz"}
		p.CleanMethod = "zero"
	})
}

// testData returns complete ScriptData for action a with profile p.
func testData(tb testing.TB, a host.Action, h host.Host, p host.Profile) bootscripts.ScriptData {
	tb.Helper()
	ca, fp := testCA(tb)
	return bootscripts.ScriptData{
		Action:        a,
		Host:          h,
		Profile:       p,
		Attempt:       1,
		ServerURL:     "https://10.0.2.100:8443",
		CallbackURL:   "https://10.0.2.100:8443/boot/v1/callback/" + h.Name + "/cb0123456789abcdef0123456789abcd",
		ConfigURL:     "https://10.0.2.100:8443/boot/v1/config/" + h.Name + "/cf0123456789abcdef0123456789abcd",
		CAPEM:         ca,
		CAFingerprint: fp,
		HoldSeconds:   60,
		Timeout:       30000,
		After:         "reboot",
	}
}
