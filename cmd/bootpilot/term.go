package main

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/bootpilot/bootpilot/internal/host"
)

// term escapes s for a terminal: every byte that is not valid UTF-8 and
// every host.UnsafeRune (C0 and C1 controls, DEL, bidirectional overrides,
// other format characters) is written as a Go-style escape (\x1b, \n,
// \u202e); the rest, backslashes included, is kept. The server cleans what
// hosts send before storing it, but rows written before that, or by another
// tool, may still hold escape sequences: every free-text value the CLI
// prints in human form goes through term (table cells through cliCell).
func term(s string) string { return termKeep(s, "") }

// termLines is term for multi-line text (errors, templates): newlines and
// tabs are kept.
func termLines(s string) string { return termKeep(s, "\n\t") }

// termKeep is term keeping the ASCII characters in keep.
func termKeep(s, keep string) string {
	if termSafe(s, keep) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !host.UnsafeRune(r) || strings.ContainsRune(keep, r):
			b.WriteString(s[i : i+size])
		case r < utf8.RuneSelf:
			b.WriteString(asciiEscape(byte(r)))
		case r <= 0xFFFF:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// termSafe reports whether termKeep would print s unchanged.
func termSafe(s, keep string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || (host.UnsafeRune(r) && !strings.ContainsRune(keep, r)) {
			return false
		}
		i += size
	}
	return true
}

// asciiEscape is the escape of an ASCII control character.
func asciiEscape(c byte) string {
	switch c {
	case '\a':
		return `\a`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	case '\v':
		return `\v`
	}
	return fmt.Sprintf(`\x%02x`, c)
}

// termJSON makes encoded JSON safe for a terminal without changing what it
// decodes to. encoding/json escapes C0 controls inside strings (so the only
// ones left are the layout's newlines and indentation), U+2028 and U+2029,
// but writes DEL, C1 controls and format characters (U+202E …) raw: those
// become \uXXXX escapes (a surrogate pair beyond U+FFFF). They can only occur
// inside JSON strings, where such an escape means the same rune.
func termJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = append(out, `\ufffd`...)
		case r < ' ' || !host.UnsafeRune(r):
			out = append(out, b[i:i+size]...)
		case r > 0xFFFF:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += size
	}
	return out
}
