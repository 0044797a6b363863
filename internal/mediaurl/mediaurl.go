// Package mediaurl makes and checks the URLs a BMC uses to fetch a host's ISO
// as virtual media. BMCs pull the image themselves and cannot present bearer
// tokens, so the URL carries its own authorisation: an HMAC-SHA256 over the
// host name and an expiry time, valid for that one host's ISO only:
//
//	https://server/media/v1/node01.iso?exp=1795000000&sig=<64 hex digits>
//
// The package also serves the image: HEAD, Range/206 and many concurrent ranged
// readers, as BMCs read ISOs in small ranges.
package mediaurl

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

// PathPrefix is the URL path under which media is served.
const PathPrefix = "/media/v1/"

// MinKeyLen is the shortest HMAC key Sign and Verify accept.
const MinKeyLen = 32

// Errors returned by Verify. Both wrap host.ErrForbidden so the server maps
// them to 403.
var (
	// ErrExpired means the URL's expiry time has passed.
	ErrExpired = fmt.Errorf("media url expired: %w", host.ErrForbidden)
	// ErrBadSignature means the signature does not match the name and
	// expiry (tampered, another host's URL, or another key).
	ErrBadSignature = fmt.Errorf("media url signature invalid: %w", host.ErrForbidden)
	// ErrShortKey means the HMAC key is shorter than MinKeyLen.
	ErrShortKey = errors.New("mediaurl: key shorter than 32 bytes")
)

// mac returns the HMAC-SHA256 of the signed string for name and exp.
func mac(key []byte, name string, exp int64) []byte {
	h := hmac.New(sha256.New, key)
	fmt.Fprintf(h, "bootpilot media v1\n%s\n%d", name, exp)
	return h.Sum(nil)
}

// Sign returns the signed URL of host name's ISO under base (scheme and
// authority, e.g. "http://10.0.0.5:8081"; a trailing slash is ignored),
// valid until exp. It panics if key is shorter than MinKeyLen or name is not
// a valid host name: both are programming errors.
func Sign(key []byte, base, name string, exp time.Time) string {
	if len(key) < MinKeyLen {
		panic(ErrShortKey)
	}
	if err := host.ValidName("name", name); err != nil {
		panic("mediaurl: " + err.Error())
	}
	e := exp.Unix()
	q := url.Values{}
	q.Set("exp", strconv.FormatInt(e, 10))
	q.Set("sig", hex.EncodeToString(mac(key, name, e)))
	return strings.TrimRight(base, "/") + PathPrefix + name + ".iso?" + q.Encode()
}

// Verify checks the exp and sig query values of a media URL for host name at
// time now. The signature is compared in constant time. It returns
// ErrBadSignature, ErrExpired, ErrShortKey or a *host.ValidationError.
func Verify(key []byte, name, exp, sig string, now time.Time) error {
	if len(key) < MinKeyLen {
		return ErrShortKey
	}
	if err := host.ValidName("name", name); err != nil {
		return err
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return host.Invalid("exp", "not a unix time")
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return ErrBadSignature
	}
	if !hmac.Equal(got, mac(key, name, e)) {
		return ErrBadSignature
	}
	if !now.Before(time.Unix(e, 0)) {
		return ErrExpired
	}
	return nil
}

// ParsePath returns the host name from a media URL path
// ("/media/v1/node01.iso" → "node01"), or false if the path is not one.
func ParsePath(p string) (name string, ok bool) {
	rest, found := strings.CutPrefix(p, PathPrefix)
	if !found {
		return "", false
	}
	name, found = strings.CutSuffix(rest, ".iso")
	if !found || host.ValidName("name", name) != nil {
		return "", false
	}
	return name, true
}
