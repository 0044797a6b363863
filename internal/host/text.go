package host

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Free text that a host or an installer sends (inventory, callback details)
// ends up on an operator's terminal. It is stored only after CleanText, so
// it cannot carry escape sequences (ESC [, OSC 52 clipboard writes, BEL),
// carriage-return overwrites or bidirectional overrides.

// Text limits for what booting hosts and installers report.
const (
	MaxInventoryText = 128  // bytes kept of each inventory field (serial, uuid, …)
	MaxDetailText    = 1000 // bytes kept of a callback's detail
)

// UnsafeRune reports whether r must not reach a terminal as is: a control
// character (Cc: C0, DEL and C1, U+0080–U+009F), a format character (Cf:
// among them the bidirectional embeddings, overrides and isolates
// U+202A–U+202E and U+2066–U+2069, the marks U+200E, U+200F, U+061C and the
// zero-width characters), a line or paragraph separator (U+2028, U+2029),
// a surrogate half or a value beyond U+10FFFF.
func UnsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) ||
		(r >= 0xD800 && r <= 0xDFFF) || r < 0 || r > unicode.MaxRune
}

// CleanText returns s fit to store and print: tab, newline, vertical tab,
// form feed, carriage return, NEL (U+0085) and the line and paragraph
// separators become a space; every other UnsafeRune and every byte that is
// not valid UTF-8 becomes U+FFFD; the result is cut to at most limit bytes
// on a rune boundary. CleanText is idempotent.
func CleanText(s string, limit int) string {
	if len(s) <= limit && clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(max(0, min(len(s), limit)))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case spaceLike(r):
			r = ' '
		case UnsafeRune(r): // invalid UTF-8 decodes as U+FFFD already
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > limit {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// clean reports whether CleanText would keep every rune of s.
func clean(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || UnsafeRune(r) {
			return false
		}
		i += size
	}
	return true
}

// spaceLike reports whether r breaks or moves a line: CleanText shows it as
// a space rather than U+FFFD.
func spaceLike(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x85, 0x2028, 0x2029:
		return true
	}
	return false
}
