package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/config"
)

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestImageFetchCLI drives `bootpilot serve` as configured by the --image-*
// flags through the CLI: a secret in the data dir cannot be fetched by
// path and its digest is never told; a file in --image-import-dir can;
// remote sources need --image-origin; uploads stop at --image-max-size.
func TestImageFetchCLI(t *testing.T) {
	imp := t.TempDir()
	kernel := []byte("agent kernel")
	if err := os.WriteFile(filepath.Join(imp, "vmlinuz"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	_, dataDir := realServer(t, "sqlite", func(c *config.Config) {
		c.ImageImportDirs = []string{imp}
		c.ImageMaxSize = 64 << 10
	})
	tokenFile := filepath.Join(dataDir, "admin-token")
	secret, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{tokenFile, "file://" + tokenFile, imp + "/../" + filepath.Base(dataDir) + "/admin-token"} {
		_, _, err := cliRun(t, "image", "fetch", ref, "--sha256", strings.Repeat("0", 64))
		if err == nil || strings.Contains(err.Error(), hexSHA256(secret)) || !strings.Contains(err.Error(), "import") {
			t.Errorf("image fetch %s: err = %v, want a refusal naming the import directory, without the file's digest", ref, err)
		}
	}
	if _, _, err := cliRun(t, "image", "fetch", "https://127.0.0.1:1/disk.raw", "--sha256", strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "--image-origin") {
		t.Errorf("image fetch of a URL without --image-origin: err = %v, want one naming --image-origin", err)
	}
	var img struct{ Digest string }
	out := cli(t, "image", "fetch", "file://"+filepath.Join(imp, "vmlinuz"), "--sha256", hexSHA256(kernel), "-o", "json")
	if err := json.Unmarshal([]byte(out), &img); err != nil || img.Digest != "sha256:"+hexSHA256(kernel) {
		t.Errorf("image fetch from the import dir = %s (%v), want digest %s", out, err, hexSHA256(kernel))
	}
	big := filepath.Join(t.TempDir(), "big.raw")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 64<<10+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cliRun(t, "image", "add", big); err == nil {
		t.Error("image add over --image-max-size succeeded")
	}
}
