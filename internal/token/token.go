// Package token makes and checks bearer secrets: admin API tokens, host boot
// tokens and one-time callback tokens. Tokens are 128 bits or more from
// crypto/rand, URL-safe hex; only their SHA-256 is ever stored.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
)

// New returns a fresh 128-bit token as 32 hex digits and its hash.
func New() (plain, hash string) {
	return NewN(16)
}

// NewN returns a fresh token of n random bytes as hex, and its hash.
func NewN(n int) (plain, hash string) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("token: crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	plain = hex.EncodeToString(b)
	return plain, Hash(plain)
}

// Hash returns the hex SHA-256 of a token. Tokens carry 128+ bits of entropy,
// so a fast hash is enough and keeps boot storms cheap.
func Hash(plain string) string {
	sum := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(sum[:])
}

// Match reports, in constant time, whether plain hashes to hash.
func Match(hash, plain string) bool {
	if hash == "" || plain == "" {
		return false
	}
	h := Hash(plain)
	return subtle.ConstantTimeCompare([]byte(h), []byte(hash)) == 1
}
