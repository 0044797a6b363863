package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/bootpilot/bootpilot/internal/host"
)

// argon2id parameters (RFC 9106 second recommendation scaled to a small
// server: 64 MiB, 3 passes, 2 lanes); stored with every hash so they can
// grow without invalidating old ones.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
	argonKeyLen  = 32
	argonSaltLen = 16

	// MinPasswordLen is the shortest local password accepted.
	MinPasswordLen = 12
	// MaxPasswordLen bounds what is hashed (and what a login body carries).
	MaxPasswordLen = 1024
)

// CheckNewPassword refuses passwords too short or too long for a local user.
func CheckNewPassword(pw string) error {
	switch {
	case len(pw) < MinPasswordLen:
		return host.Invalid("password", "at least %d characters", MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return host.Invalid("password", "at most %d bytes", MaxPasswordLen)
	case strings.ContainsRune(pw, 0):
		return host.Invalid("password", "contains a NUL byte")
	}
	return nil
}

// HashPassword returns pw's argon2id hash in the PHC string format:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>.
func HashPassword(pw string) (string, error) {
	if err := CheckNewPassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime,
		argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// CheckPassword reports whether pw matches hash (constant time). An empty
// password or a malformed hash never matches.
func CheckPassword(hash, pw string) bool {
	if pw == "" || len(pw) > MaxPasswordLen {
		return false
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v, m, t int
	var p int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil ||
		m < 8 || m > 1<<20 || t < 1 || t > 16 || p < 1 || p > 16 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) < 16 || len(want) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when a user does not exist, so that an
// unknown user costs the same time as a wrong password.
var dummyHash, _ = HashPassword("bootpilot-no-such-user-padding")

// BurnPasswordCheck spends one password check's time and answers false.
func BurnPasswordCheck(pw string) bool {
	CheckPassword(dummyHash, pw+"x")
	return false
}
