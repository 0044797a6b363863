package secretbox_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bootpilot/bootpilot/internal/secretbox"
)

func TestDeriveFromFile(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte{0xab, 0x01}, 16)
	forms := map[string][]byte{
		"hex": []byte(hex.EncodeToString(raw) + "\n"), "b64": []byte(base64.StdEncoding.EncodeToString(raw)), "raw": raw,
	}
	var first []byte
	for name, content := range forms {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o600)
		got, err := secretbox.DeriveFromFile(p, "media-url")
		if err != nil || len(got) != 32 {
			t.Fatalf("DeriveFromFile(%s) = %x, %v", name, got, err)
		}
		if first != nil && !bytes.Equal(first, got) {
			t.Errorf("%s form derives another subkey", name)
		}
		first = got
		if other, _ := secretbox.DeriveFromFile(p, "other"); bytes.Equal(other, got) {
			t.Error("labels derive the same subkey")
		}
		if bytes.Contains(got, raw[:8]) {
			t.Error("subkey contains the key")
		}
	}
	p := filepath.Join(dir, "open")
	os.WriteFile(p, forms["hex"], 0o644)
	if _, err := secretbox.DeriveFromFile(p, "media-url"); !errors.Is(err, secretbox.ErrKeyFileMode) {
		t.Errorf("world-readable key file = %v, want ErrKeyFileMode", err)
	}
}
