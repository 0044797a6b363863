// Package secretbox encrypts secrets at rest (BMC passwords) with
// XChaCha20-Poly1305 from golang.org/x/crypto. The 32-byte key comes from a
// key file (--secret-key-file, mode 0600 or stricter) or an environment
// variable, never from the database.
//
// A sealed value is text that fits a database column:
//
//	sb1.<key id>.<base64url(nonce || ciphertext)>
//
// The key id (16 hex digits derived from the key) says which key sealed it,
// so a Keyring can open values sealed under older keys while Rotate
// re-encrypts them under the new one. Each value is bound to a context string
// (e.g. "bmc-password:node01") passed as additional data, so a ciphertext
// copied to another record does not open.
package secretbox

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length of a raw key in bytes.
const KeySize = chacha20poly1305.KeySize

const prefix = "sb1"

// Errors returned by this package.
var (
	// ErrUnknownKey means no key in the keyring has the sealed value's key id.
	ErrUnknownKey = errors.New("secretbox: sealed with an unknown key")
	// ErrDecrypt means the value was tampered with, belongs to another
	// context, or was sealed by another key with a colliding id.
	ErrDecrypt = errors.New("secretbox: decryption failed")
	// ErrFormat means the value is not a sealed value.
	ErrFormat = errors.New("secretbox: malformed sealed value")
	// ErrKeyFileMode means the key file can be read by group or others.
	ErrKeyFileMode = errors.New("secretbox: key file is readable by group or others")
)

// Key is one 32-byte encryption key.
type Key struct {
	id   string
	aead cipher.AEAD
}

// NewKey returns a Key for 32 raw bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("secretbox: key is %d bytes, want %d", len(raw), KeySize)
	}
	aead, err := chacha20poly1305.NewX(raw)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	sum := sha256.Sum256(append([]byte("bootpilot secretbox key id\x00"), raw...))
	return &Key{id: hex.EncodeToString(sum[:8]), aead: aead}, nil
}

// GenerateKey returns a fresh random key encoded as 64 hex digits, the
// format ParseKey and the key file expect.
func GenerateKey() string {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		panic("secretbox: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// ParseKey returns the key encoded in s: 64 hex digits or standard/URL
// base64 of 32 bytes, surrounding white space ignored.
func ParseKey(s string) (*Key, error) {
	b, err := decodeKey(s)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return NewKey(b)
}

// LoadKeyFile reads a key from path: 32 raw bytes, or the text forms
// ParseKey accepts. It refuses a file that group or others may read.
func LoadKeyFile(path string) (*Key, error) {
	raw, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return NewKey(raw)
}

// readKeyFile returns the 32 raw key bytes of a key file (raw, or the text
// forms ParseKey accepts), refusing a file that group or others may read.
func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secretbox: key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o, want 0600", ErrKeyFileMode, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secretbox: key file: %w", err)
	}
	if len(b) == KeySize && !isText(b) {
		return b, nil
	}
	defer clear(b)
	raw, err := decodeKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return raw, nil
}

// isText reports whether b looks like an encoded key rather than raw bytes.
func isText(b []byte) bool {
	return len(bytes.Trim(b, "0123456789abcdefABCDEF")) == 0
}

// WriteKeyFile writes a fresh key to path with mode 0600, refusing to
// overwrite an existing file, and returns it.
func WriteKeyFile(path string) (*Key, error) {
	s := GenerateKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("secretbox: write key file: %w", err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("secretbox: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("secretbox: write key file: %w", err)
	}
	return ParseKey(s)
}

// KeyFromEnv reads a key from environment variable name (hex or base64).
func KeyFromEnv(name string) (*Key, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return nil, fmt.Errorf("secretbox: %s is not set", name)
	}
	k, err := ParseKey(v)
	if err != nil {
		return nil, fmt.Errorf("%w (env %s)", err, name)
	}
	return k, nil
}

// ID returns the key id: 16 hex digits derived from the key by SHA-256.
// It identifies the key without revealing it.
func (k *Key) ID() string { return k.id }

// Seal encrypts plaintext bound to context and returns the sealed text.
func (k *Key) Seal(plaintext []byte, context string) string {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("secretbox: crypto/rand failed: " + err.Error())
	}
	out := k.aead.Seal(nonce, nonce, plaintext, k.ad(context))
	return prefix + "." + k.id + "." + base64.RawURLEncoding.EncodeToString(out)
}

// Open decrypts a value sealed by this key under the same context. It
// returns ErrFormat, ErrUnknownKey or ErrDecrypt.
func (k *Key) Open(sealed, context string) ([]byte, error) {
	id, body, err := split(sealed)
	if err != nil {
		return nil, err
	}
	if id != k.id {
		return nil, fmt.Errorf("%w: key id %s", ErrUnknownKey, id)
	}
	n := k.aead.NonceSize()
	if len(body) < n+k.aead.Overhead() {
		return nil, ErrFormat
	}
	pt, err := k.aead.Open(nil, body[:n], body[n:], k.ad(context))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// ad returns the additional data: format, key id and context.
func (k *Key) ad(context string) []byte {
	return []byte(prefix + "\x00" + k.id + "\x00" + context)
}

// KeyID returns the id of the key that sealed a value.
func KeyID(sealed string) (string, error) {
	id, _, err := split(sealed)
	return id, err
}

func split(sealed string) (id string, body []byte, err error) {
	p := strings.Split(sealed, ".")
	if len(p) != 3 || p[0] != prefix || len(p[1]) != 16 {
		return "", nil, ErrFormat
	}
	body, err = base64.RawURLEncoding.DecodeString(p[2])
	if err != nil {
		return "", nil, ErrFormat
	}
	return p[1], body, nil
}

// Rotate re-encrypts a value sealed by old (under context) with next. A value
// already sealed by next is returned unchanged, so a rotation that stopped
// half-way can be run again.
func Rotate(sealed, context string, old, next *Key) (string, error) {
	if id, err := KeyID(sealed); err == nil && id == next.id {
		if _, err := next.Open(sealed, context); err != nil {
			return "", err
		}
		return sealed, nil
	}
	pt, err := old.Open(sealed, context)
	if err != nil {
		return "", err
	}
	defer clear(pt)
	return next.Seal(pt, context), nil
}

// Keyring seals with its primary key and opens values sealed by any of its
// keys, for reading while a rotation is under way.
type Keyring struct {
	primary *Key
	byID    map[string]*Key
}

// NewKeyring returns a keyring sealing with primary and also opening with
// older keys.
func NewKeyring(primary *Key, older ...*Key) *Keyring {
	r := &Keyring{primary: primary, byID: map[string]*Key{primary.id: primary}}
	for _, k := range older {
		if _, ok := r.byID[k.id]; !ok {
			r.byID[k.id] = k
		}
	}
	return r
}

// Primary returns the key new values are sealed with.
func (r *Keyring) Primary() *Key { return r.primary }

// Seal encrypts plaintext with the primary key.
func (r *Keyring) Seal(plaintext []byte, context string) string {
	return r.primary.Seal(plaintext, context)
}

// Open decrypts a value sealed by any key of the ring.
func (r *Keyring) Open(sealed, context string) ([]byte, error) {
	id, err := KeyID(sealed)
	if err != nil {
		return nil, err
	}
	k, ok := r.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: key id %s", ErrUnknownKey, id)
	}
	return k.Open(sealed, context)
}

// NeedsRotation reports whether sealed was made by a key other than the
// primary.
func (r *Keyring) NeedsRotation(sealed string) bool {
	id, err := KeyID(sealed)
	return err != nil || id != r.primary.id
}
