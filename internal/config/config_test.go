package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/config"
)

func TestDefaultsValidate(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if !strings.HasPrefix(c.ExternalURL, "https://") || !strings.HasSuffix(c.ExternalURL, ":8443") {
		t.Errorf("derived external URL %q", c.ExternalURL)
	}
	if c.DSN() != "sqlite:bootpilot-data/bootpilot.db" {
		t.Errorf("DSN = %q", c.DSN())
	}
}

func TestValidateRefuses(t *testing.T) {
	for name, mut := range map[string]func(c *config.Config){
		"http url":     func(c *config.Config) { c.ExternalURL = "http://x:8443" },
		"url path":     func(c *config.Config) { c.ExternalURL = "https://x:8443/boot" },
		"listen":       func(c *config.Config) { c.Listen = "8443" },
		"attempts":     func(c *config.Config) { c.MaxAttempts = 0 },
		"timeout":      func(c *config.Config) { c.InstallTimeout = time.Second },
		"after":        func(c *config.Config) { c.AgentAfter = "halt" },
		"log level":    func(c *config.Config) { c.LogLevel = "loud" },
		"half db key":  func(c *config.Config) { c.DBKey = "k.pem" },
		"clean prof":   func(c *config.Config) { c.CleanProfile = "Bad Name" },
		"hold seconds": func(c *config.Config) { c.HoldSeconds = 1 },
		"shim no key":  func(c *config.Config) { c.Shim, c.ISOUnsigned = "shimx64.efi.signed", true },
		"shim arm64":   func(c *config.Config) { c.Shim, c.ISOArch = "shimx64.efi.signed", []string{"x86_64", "arm64"} },
	} {
		c := config.Default()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

func TestEnvOverlay(t *testing.T) {
	c := config.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.Bind(fs)
	t.Setenv("BOOTPILOT_DATA_DIR", "/var/lib/bootpilot")
	t.Setenv("BOOTPILOT_MAX_ATTEMPTS", "5")
	t.Setenv("BOOTPILOT_LISTEN", "127.0.0.1:1")
	if err := fs.Parse([]string{"--listen", "127.0.0.1:9443"}); err != nil {
		t.Fatal(err)
	}
	if err := config.EnvOverlay(fs); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/bootpilot" || c.MaxAttempts != 5 || c.Listen != "127.0.0.1:9443" {
		t.Errorf("after overlay: data-dir %q attempts %d listen %q; want env for unset flags, the flag for --listen", c.DataDir, c.MaxAttempts, c.Listen)
	}
	t.Setenv("BOOTPILOT_MAX_ATTEMPTS", "many")
	if err := config.EnvOverlay(fs); err == nil || !strings.Contains(err.Error(), "BOOTPILOT_MAX_ATTEMPTS") {
		t.Errorf("bad env value: %v, want an error naming BOOTPILOT_MAX_ATTEMPTS", err)
	}
}

// TestISOArch: --iso-arch (and its BOOTPILOT_ISO_ARCH twin) lists the
// architectures of the API's ISOs; x86_64 by default; anything else is
// refused with the flag named.
func TestISOArch(t *testing.T) {
	c := config.Default()
	if strings.Join(c.ISOArch, ",") != "x86_64" {
		t.Errorf("default --iso-arch = %v, want x86_64", c.ISOArch)
	}
	parse := func(args ...string) (config.Config, error) {
		c := config.Default()
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		c.Bind(fs)
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		if err := config.EnvOverlay(fs); err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	if c, err := parse("--iso-arch", "x86_64,arm64"); err != nil || strings.Join(c.ISOArch, ",") != "x86_64,arm64" {
		t.Errorf("--iso-arch x86_64,arm64 → %v, %v", c.ISOArch, err)
	}
	for _, bad := range []string{"aarch64", "x86_64,riscv64"} {
		if _, err := parse("--iso-arch", bad); err == nil || !strings.Contains(err.Error(), "--iso-arch") {
			t.Errorf("--iso-arch %q: %v, want an error naming --iso-arch", bad, err)
		}
	}
	t.Setenv("BOOTPILOT_ISO_ARCH", "arm64")
	if c, err := parse(); err != nil || strings.Join(c.ISOArch, ",") != "arm64" {
		t.Errorf("BOOTPILOT_ISO_ARCH=arm64 → %v, %v", c.ISOArch, err)
	}
}
