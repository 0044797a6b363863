package secretbox_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/secretbox"
)

func mustKey(tb testing.TB, s string) *secretbox.Key {
	tb.Helper()
	k, err := secretbox.ParseKey(s)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := mustKey(t, secretbox.GenerateKey())
	other := mustKey(t, secretbox.GenerateKey())
	s := k.Seal([]byte("hunter2"), "bmc-password:node01")
	if strings.Contains(s, "hunter2") || !strings.HasPrefix(s, "sb1."+k.ID()+".") {
		t.Fatalf("Seal = %q, want sb1.%s.<ciphertext>", s, k.ID())
	}
	if s2 := k.Seal([]byte("hunter2"), "bmc-password:node01"); s2 == s {
		t.Errorf("two Seals gave the same output %q; want fresh nonces", s)
	}
	got, err := k.Open(s, "bmc-password:node01")
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v, want hunter2", got, err)
	}
	body := s[len("sb1.")+17:]
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	raw[len(raw)-1] ^= 1
	tampered := "sb1." + k.ID() + "." + base64.RawURLEncoding.EncodeToString(raw)
	tests := []struct {
		desc    string
		key     *secretbox.Key
		sealed  string
		context string
		want    error
	}{
		{"other context", k, s, "bmc-password:node02", secretbox.ErrDecrypt},
		{"tampered", k, tampered, "bmc-password:node01", secretbox.ErrDecrypt},
		{"other key", other, s, "bmc-password:node01", secretbox.ErrUnknownKey},
		{"forged id", other, strings.Replace(s, k.ID(), other.ID(), 1), "bmc-password:node01", secretbox.ErrDecrypt},
		{"plaintext", k, "hunter2", "bmc-password:node01", secretbox.ErrFormat},
		{"short", k, "sb1." + k.ID() + ".AAAA", "bmc-password:node01", secretbox.ErrFormat},
	}
	for _, tt := range tests {
		if _, err := tt.key.Open(tt.sealed, tt.context); !errors.Is(err, tt.want) {
			t.Errorf("%s: Open = %v, want %v", tt.desc, err, tt.want)
		}
	}
}

func TestRotate(t *testing.T) {
	old := mustKey(t, secretbox.GenerateKey())
	next := mustKey(t, secretbox.GenerateKey())
	s := old.Seal([]byte("pw"), "c")
	r, err := secretbox.Rotate(s, "c", old, next)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := secretbox.KeyID(r); id != next.ID() {
		t.Errorf("KeyID(rotated) = %s, want %s", id, next.ID())
	}
	if got, err := next.Open(r, "c"); err != nil || string(got) != "pw" {
		t.Errorf("next.Open(rotated) = %q, %v, want pw", got, err)
	}
	if _, err := old.Open(r, "c"); !errors.Is(err, secretbox.ErrUnknownKey) {
		t.Errorf("old.Open(rotated) = %v, want ErrUnknownKey", err)
	}
	again, err := secretbox.Rotate(r, "c", old, next)
	if err != nil || again != r {
		t.Errorf("Rotate(already rotated) = %q, %v, want unchanged", again, err)
	}
	if _, err := secretbox.Rotate(s, "other", old, next); !errors.Is(err, secretbox.ErrDecrypt) {
		t.Errorf("Rotate(wrong context) = %v, want ErrDecrypt", err)
	}

	ring := secretbox.NewKeyring(next, old)
	for _, v := range []string{s, r} {
		if got, err := ring.Open(v, "c"); err != nil || string(got) != "pw" {
			t.Errorf("ring.Open = %q, %v, want pw", got, err)
		}
	}
	if !ring.NeedsRotation(s) || ring.NeedsRotation(r) {
		t.Errorf("NeedsRotation(old, new) = %v, %v, want true, false", ring.NeedsRotation(s), ring.NeedsRotation(r))
	}
	if id, _ := secretbox.KeyID(ring.Seal([]byte("x"), "c")); id != next.ID() {
		t.Errorf("ring.Seal used key %s, want primary %s", id, next.ID())
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	hexKey := secretbox.GenerateKey()
	want := mustKey(t, hexKey).ID()
	raw := bytes.Repeat([]byte{0xfe}, 32)
	rawID := func() string { k, _ := secretbox.NewKey(raw); return k.ID() }()
	tests := []struct {
		desc    string
		content []byte
		mode    os.FileMode
		wantID  string
		wantErr error
	}{
		{"hex", []byte(hexKey + "\n"), 0o600, want, nil},
		{"hex read-only", []byte(hexKey), 0o400, want, nil},
		{"raw", raw, 0o600, rawID, nil},
		{"base64", []byte(base64.StdEncoding.EncodeToString(raw)), 0o600, rawID, nil},
		{"group readable", []byte(hexKey), 0o640, "", secretbox.ErrKeyFileMode},
		{"world readable", []byte(hexKey), 0o604, "", secretbox.ErrKeyFileMode},
		{"too short", []byte("abcd"), 0o600, "", nil},
	}
	for i, tt := range tests {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, tt.content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tt.mode); err != nil {
			t.Fatal(err)
		}
		k, err := secretbox.LoadKeyFile(p)
		switch {
		case tt.wantID != "":
			if err != nil || k.ID() != tt.wantID {
				t.Errorf("%s: LoadKeyFile = %v, %v, want id %s", tt.desc, k, err, tt.wantID)
			}
		case tt.wantErr != nil:
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: LoadKeyFile err = %v, want %v", tt.desc, err, tt.wantErr)
			}
		default:
			if err == nil {
				t.Errorf("%s: LoadKeyFile succeeded, want an error", tt.desc)
			}
		}
	}

	p := filepath.Join(dir, "new.key")
	k, err := secretbox.WriteKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("WriteKeyFile mode = %#o, want 0600", fi.Mode().Perm())
	}
	if k2, err := secretbox.LoadKeyFile(p); err != nil || k2.ID() != k.ID() {
		t.Errorf("LoadKeyFile(written) = %v, %v, want id %s", k2, err, k.ID())
	}
	if _, err := secretbox.WriteKeyFile(p); err == nil {
		t.Error("WriteKeyFile overwrote an existing file")
	}
}

func TestKeyFromEnv(t *testing.T) {
	hexKey := secretbox.GenerateKey()
	t.Setenv("BOOTPILOT_TEST_SECRET_KEY", hexKey)
	k, err := secretbox.KeyFromEnv("BOOTPILOT_TEST_SECRET_KEY")
	if err != nil || k.ID() != mustKey(t, hexKey).ID() {
		t.Errorf("KeyFromEnv = %v, %v", k, err)
	}
	if _, err := secretbox.KeyFromEnv("BOOTPILOT_TEST_UNSET_KEY"); err == nil {
		t.Error("KeyFromEnv(unset) succeeded")
	}
}

func BenchmarkSealOpen(b *testing.B) {
	k := mustKey(b, secretbox.GenerateKey())
	for b.Loop() {
		s := k.Seal([]byte("a 24-byte bmc password.."), "bmc-password:node01")
		if _, err := k.Open(s, "bmc-password:node01"); err != nil {
			b.Fatal(err)
		}
	}
}
