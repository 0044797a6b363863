package secretbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// DeriveFromFile reads the key file at path (any form LoadKeyFile accepts,
// with the same mode check) and returns a 32-byte subkey for label:
// HMAC-SHA256(key, "bootpilot derive\x00" + label). Replicas sharing the key
// derive the same subkey; the subkey reveals nothing of the key. The media
// URL signer uses label "media-url".
func DeriveFromFile(path, label string) ([]byte, error) {
	raw, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("bootpilot derive\x00" + label))
	return m.Sum(nil), nil
}

// decodeKey decodes the text forms ParseKey accepts.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, errors.New("secretbox: key is not 32 bytes as 64 hex digits or base64")
}
