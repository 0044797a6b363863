package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinkerbell/ipxedust/binary"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// Debian's shim-signed package.
const (
	debianShim       = "/usr/lib/shim/shimx64.efi.signed"
	debianMokManager = "/usr/lib/shim/mmx64.efi.signed"
)

// TestISOBuildShim: iso build --shim --mok-manager puts both files on every
// ISO and says so in the manifest.
func TestISOBuildShim(t *testing.T) {
	shim, err := os.ReadFile(testenv.File(t, debianShim))
	if err != nil {
		t.Fatal(err)
	}
	mm, err := os.ReadFile(testenv.File(t, debianMokManager))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	csvPath := filepath.Join(dir, "hosts.csv")
	os.WriteFile(csvPath, []byte(isoCSV), 0o644)
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"iso", "build", "--csv", csvPath, "--out", out, "--server-url", "https://10.0.2.100:8443",
		"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath, "--offline",
		"--shim", debianShim, "--mok-manager", debianMokManager}, &stdout, &stderr); err != nil {
		t.Fatalf("iso build: %v\n%s", err, stderr.String())
	}
	if want := "BOOTX64.EFI is " + debianShim + " (shim), iPXE is grubx64.efi"; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
	}
	var manifest struct {
		ISOs []struct {
			File, Layout string
			ShimSHA256   string `json:"shim_sha256"`
		} `json:"isos"`
	}
	readJSON(t, filepath.Join(out, "manifest.json"), &manifest)
	sum := sha256.Sum256(shim)
	for _, m := range manifest.ISOs {
		if m.Layout != "shim" || m.ShimSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: layout %q shim %q, want shim %x", m.File, m.Layout, m.ShimSHA256, sum)
		}
		data, err := os.ReadFile(filepath.Join(out, m.File))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, shim) || !bytes.Contains(data, mm) {
			t.Errorf("%s lacks the shim or MokManager", m.File)
		}
	}
	if len(manifest.ISOs) != 3 {
		t.Errorf("manifest has %d ISOs, want 3", len(manifest.ISOs))
	}
}

// TestISOBuildShimErrors: a missing, foreign or unsigned --shim or
// --mok-manager stops the build with an error naming the flag and file.
func TestISOBuildShimErrors(t *testing.T) {
	dir := t.TempDir()
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	csvPath := filepath.Join(dir, "hosts.csv")
	os.WriteFile(csvPath, []byte(isoCSV), 0o644)
	text := filepath.Join(dir, "shim.txt")
	os.WriteFile(text, []byte("not a shim\n"), 0o644)
	unsigned := filepath.Join(dir, "ipxe.efi")
	os.WriteFile(unsigned, binary.Files["ipxe.efi"], 0o644)
	missing := filepath.Join(dir, "nope.efi")
	base := []string{"iso", "build", "--csv", csvPath, "--server-url", "https://10.0.2.100:8443",
		"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath, "--offline"}
	type shimCase struct {
		name string
		args []string
		want string
	}
	cases := []shimCase{
		{"missing", []string{"--shim", missing}, "iso build: --shim: open " + missing + ": no such file or directory"},
		{"not PE", []string{"--shim", text}, "iso build: --shim " + text + ": not an EFI binary (PE/COFF)"},
		{"unsigned", []string{"--shim", unsigned}, "iso build: --shim " + unsigned + ": no Authenticode signature"},
		{"MokManager alone", []string{"--mok-manager", unsigned}, "iso build: --mok-manager needs --shim"},
	}
	if _, err := os.Stat(debianShim); err == nil {
		cases = append(cases,
			shimCase{"MokManager unsigned", []string{"--shim", debianShim, "--mok-manager", unsigned}, "iso build: --mok-manager " + unsigned + ": no Authenticode signature"},
			shimCase{"arm64", []string{"--shim", debianShim, "--arch", "arm64"}, "iso build: imagebuilder: the shim layout is x86_64 only"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out", tc.name)
			args := append(append(append([]string(nil), base...), "--out", out), tc.args...)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output directory was created")
			}
		})
	}
}

// TestServeShim: the server's ISOs carry --shim; a bad --shim stops the
// server at start, naming the flag.
func TestServeShim(t *testing.T) {
	shim, err := os.ReadFile(testenv.File(t, debianShim))
	if err != nil {
		t.Fatal(err)
	}
	realServer(t, "sqlite", func(c *config.Config) { c.Shim, c.MokManager = debianShim, debianMokManager })
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24", "--gateway", "10.0.2.2", "--dns", "10.0.2.3")
	iso := filepath.Join(t.TempDir(), "node01.iso")
	cli(t, "host", "iso", "node01", "-f", iso)
	data, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, shim) {
		t.Error("the server's ISO lacks --shim")
	}

	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.ExternalURL = t.TempDir(), "127.0.0.1:0", "https://10.0.2.100:8443"
	cfg.Shim = filepath.Join(cfg.DataDir, "shim.efi")
	os.WriteFile(cfg.Shim, binary.Files["ipxe.efi"], 0o644)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), cfg, &bytes.Buffer{}, &bytes.Buffer{}, func(string) { t.Error("the server started with an unsigned --shim") })
	if want := "--shim " + cfg.Shim + ": no Authenticode signature"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("serve = %v, want an error with %q", err, want)
	}
}
