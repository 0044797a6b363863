// Package mediaurl makes and checks the URLs a BMC uses to fetch a host's ISO
// as virtual media. BMCs pull the image themselves and cannot present bearer
// tokens, so the URL carries its own authorisation: an HMAC-SHA256 over the
// host name, the media id and an expiry time:
//
//	https://server/media/v1/node01.iso?exp=1795000000&id=<32 hex digits>&sig=<64 hex digits>
//
// The media id is random per published ISO (NewID), so a URL is valid for
// that one publication of that one host's ISO: once a new ISO is published
// or the media is unpublished (ejected), older URLs answer 404 even before
// they expire — they never fetch a newer ISO and the boot token inside it.
//
// The package also serves the image: HEAD, Range/206 and many concurrent ranged
// readers, as BMCs read ISOs in small ranges.
package mediaurl

import (
	"crypto/hmac"
	"crypto/rand"
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
	// ErrBadSignature means the signature does not match the name, media
	// id and expiry (tampered, another host's URL, or another key).
	ErrBadSignature = fmt.Errorf("media url signature invalid: %w", host.ErrForbidden)
	// ErrShortKey means the HMAC key is shorter than MinKeyLen.
	ErrShortKey = errors.New("mediaurl: key shorter than 32 bytes")
)

// IDLen is the length of a media id: 128 bits in lower-case hex.
const IDLen = 32

// NewID returns a fresh random media id for one publication of an ISO.
func NewID() string {
	b := make([]byte, IDLen/2)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// validID reports whether id looks like a NewID result.
func validID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// mac returns the HMAC-SHA256 of the signed string for name, id and exp.
func mac(key []byte, name, id string, exp int64) []byte {
	h := hmac.New(sha256.New, key)
	fmt.Fprintf(h, "bootpilot media v2\n%s\n%s\n%d", name, id, exp)
	return h.Sum(nil)
}

// Sign returns the signed URL of host name's ISO published as media id,
// under base (scheme and authority, e.g. "https://10.0.0.5:8443"; a
// trailing slash is ignored), valid until exp. It panics if key is shorter
// than MinKeyLen, name is not a valid host name or id is not a NewID value:
// all are programming errors.
func Sign(key []byte, base, name, id string, exp time.Time) string {
	if len(key) < MinKeyLen {
		panic(ErrShortKey)
	}
	if err := host.ValidName("name", name); err != nil {
		panic("mediaurl: " + err.Error())
	}
	if !validID(id) {
		panic("mediaurl: media id is not 32 lower-case hex digits")
	}
	e := exp.Unix()
	q := url.Values{}
	q.Set("exp", strconv.FormatInt(e, 10))
	q.Set("id", id)
	q.Set("sig", hex.EncodeToString(mac(key, name, id, e)))
	return strings.TrimRight(base, "/") + PathPrefix + name + ".iso?" + q.Encode()
}

// Verify checks the id, exp and sig query values of a media URL for host
// name at time now. The signature is compared in constant time. It returns
// ErrBadSignature, ErrExpired, ErrShortKey or a *host.ValidationError. A
// valid URL may still name media that is no longer published: the Source
// decides that.
func Verify(key []byte, name, id, exp, sig string, now time.Time) error {
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
	if err != nil || len(got) != sha256.Size || !validID(id) {
		return ErrBadSignature
	}
	if !hmac.Equal(got, mac(key, name, id, e)) {
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
