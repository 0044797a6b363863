//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// quickStart runs the README's quick start against a fresh server: profile,
// host, reimage.
func quickStart(t *testing.T) {
	t.Helper()
	cli(t, "profile", "add", "rocky9", "--installer", "kickstart",
		"--kernel", "https://mirror.example/rocky9/images/pxeboot/vmlinuz",
		"--initrd", "https://mirror.example/rocky9/images/pxeboot/initrd.img",
		"--cmdline", "inst.repo=https://mirror.example/rocky9 console=ttyS0")
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--profile", "rocky9")
	cli(t, "host", "reimage", "node01", "--reason", "new base image")
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestQuickStartSignedISO: a server started with no flags at all signs the
// ISOs it builds with a Secure Boot db key it made in its data dir; the EFI
// binary inside verifies against <data-dir>/db.crt, and db.cer is what a
// firmware setup menu enrols.
func TestQuickStartSignedISO(t *testing.T) {
	_, dataDir := realServer(t, "sqlite")
	quickStart(t)
	dir := t.TempDir()
	iso := filepath.Join(dir, "x.iso")
	cli(t, "host", "iso", "node01", "-f", iso)

	esp, efi := filepath.Join(dir, "esp.img"), filepath.Join(dir, "BOOTX64.EFI")
	runTool(t, testenv.Tool(t, "xorriso"), "-osirrox", "on", "-indev", iso, "-extract", "/efiboot.img", esp)
	runTool(t, testenv.Tool(t, "mcopy"), "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", efi)
	out := runTool(t, testenv.Tool(t, "sbverify"), "--cert", filepath.Join(dataDir, "db.crt"), efi)
	if !strings.Contains(out, "Signature verification OK") {
		t.Errorf("sbverify --cert db.crt: %s", out)
	}

	der, err := os.ReadFile(filepath.Join(dataDir, "db.cer"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("db.cer: %v", err)
	}
	if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageCodeSigning) || c.IsCA {
		t.Errorf("db certificate: keyUsage %v, extKeyUsage %v, CA %v; want digitalSignature, codeSigning, not a CA",
			c.KeyUsage, c.ExtKeyUsage, c.IsCA)
	}
}

// TestQuickStartBMCWithoutKeyFlag: with no --secret-key-file the server
// seals BMC passwords with a key it made in its data dir (mode 0600).
func TestQuickStartBMCWithoutKeyFlag(t *testing.T) {
	_, dataDir := realServer(t, "sqlite")
	quickStart(t)
	pw := filepath.Join(t.TempDir(), "bmc-pw")
	if err := os.WriteFile(pw, []byte("s3cret-bmc-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := cli(t, "bmc", "set", "node01", "--url", "https://127.0.0.1:9", "--username", "root", "--password-file", pw)
	if !strings.Contains(out, "set (encrypted)") {
		t.Errorf("bmc set without --secret-key-file:\n%s", out)
	}
	if out := cli(t, "bmc", "show", "node01"); !strings.Contains(out, "set (encrypted)") || strings.Contains(out, "s3cret-bmc-pw") {
		t.Errorf("bmc show:\n%s", out)
	}
	checkMode(t, filepath.Join(dataDir, "secret.key"), 0o600)
}

// TestFirstStartKeys: the first start makes the db key (0600), its
// certificates and the secret key (0600), prints how to enrol the
// certificate and warns that production keeps the secret key elsewhere; a
// restart reuses every key and prints nothing new. --iso-unsigned and
// --secret-key-file make no key in the data dir.
func TestFirstStartKeys(t *testing.T) {
	umask022(t)
	dir := t.TempDir()
	start := func(mutate ...func(*config.Config)) (stdout, log string) {
		cfg := config.Default()
		cfg.DataDir, cfg.Listen, cfg.ExternalURL = dir, "127.0.0.1:0", "https://127.0.0.1:8443"
		for _, m := range mutate {
			m(&cfg)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb bytes.Buffer
		if err := serve(ctx, cfg, &out, &errb, func(string) { cancel() }); err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String()
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	out1, log1 := start()
	if !strings.Contains(out1, "Secure Boot db key made") || !strings.Contains(out1, filepath.Join(dir, "db.cer")) {
		t.Errorf("first start does not say where the db certificate is:\n%s", out1)
	}
	if !strings.Contains(log1, "secret.key") || !strings.Contains(log1, "outside the data dir") {
		t.Errorf("first start does not warn about the secret key in the data dir:\n%s", log1)
	}
	checkMode(t, filepath.Join(dir, "db.key"), 0o600)
	checkMode(t, filepath.Join(dir, "secret.key"), 0o600)
	checkMode(t, filepath.Join(dir, "db.crt"), 0o644)
	dbKey, dbCert, secret := read("db.key"), read("db.crt"), read("secret.key")

	out2, _ := start()
	if strings.Contains(out2, "db key made") {
		t.Errorf("restart made a new db key:\n%s", out2)
	}
	if !bytes.Equal(read("db.key"), dbKey) || !bytes.Equal(read("db.crt"), dbCert) || !bytes.Equal(read("secret.key"), secret) {
		t.Error("a restart changed db.key, db.crt or secret.key")
	}

	// Explicit choices leave the data dir alone.
	dir = t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "secret.key")
	cli(t, "secret-key", "init", keyFile)
	start(func(c *config.Config) { c.ISOUnsigned, c.SecretKeyFile = true, keyFile })
	for _, f := range []string{"db.key", "db.crt", "db.cer", "secret.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("--iso-unsigned --secret-key-file: %s made anyway", f)
		}
	}
}
