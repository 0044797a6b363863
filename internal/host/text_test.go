package host_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bootpilot/bootpilot/internal/host"
)

func TestCleanText(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"SN-1234 Dell Inc.", 128, "SN-1234 Dell Inc."},
		{"naïve 日本 ✓", 128, "naïve 日本 ✓"},
		{"\x1b[2Jwiped", 128, "\uFFFD[2Jwiped"},                                       // CSI clear screen
		{"\x1b]52;c;ZWNobyBwd25lZA==\x07", 128, "\uFFFD]52;c;ZWNobyBwd25lZA==\uFFFD"}, // OSC 52 clipboard write
		{"ok\rFAILED", 128, "ok FAILED"},                                              // carriage-return overwrite
		{"a\tb\nc\r\nd", 128, "a b c  d"},
		{"\u202egnp.exe", 128, "\uFFFDgnp.exe"},                                     // right-to-left override
		{"\u2066x\u2069\u200e\u200b\ufeff", 128, "\uFFFDx\uFFFD\uFFFD\uFFFD\uFFFD"}, // isolates, LRM, zero width, BOM
		{"\u009b31m\u0085next", 128, "\uFFFD31m next"},                              // C1 CSI, NEL
		{"\x00\x7f", 128, "\uFFFD\uFFFD"},                                           // NUL, DEL
		{"bad\xff\xfeutf8", 128, "bad\uFFFD\uFFFDutf8"},                             // invalid UTF-8
		{"\xed\xa0\x80", 128, "\uFFFD\uFFFD\uFFFD"},                                 // encoded surrogate
		{"line\u2028sep", 128, "line sep"},
		{strings.Repeat("x", 200), 128, strings.Repeat("x", 128)},
		{strings.Repeat("x", 127) + "é", 128, strings.Repeat("x", 127)},    // cut on a rune boundary
		{strings.Repeat("x", 126) + "\x1b", 128, strings.Repeat("x", 126)}, // U+FFFD (3 bytes) does not fit
		{"abc", 0, ""},
	}
	for _, tt := range tests {
		if got := host.CleanText(tt.in, tt.limit); got != tt.want {
			t.Errorf("CleanText(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
}

func TestUnsafeRune(t *testing.T) {
	for _, r := range []rune{0, '\a', '\b', '\t', '\n', '\r', 0x1b, 0x7f, 0x80, 0x9b, 0x9f, 0x202a, 0x202b, 0x202c,
		0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c, 0x2028, 0x2029, 0xfeff, 0xe0001} {
		if !host.UnsafeRune(r) {
			t.Errorf("UnsafeRune(%U) = false, want true", r)
		}
	}
	for _, r := range []rune{' ', 'a', '~', 0xa0, 0xe9, 0x65e5, 0xfffd, 0x1f600} {
		if host.UnsafeRune(r) {
			t.Errorf("UnsafeRune(%U) = true, want false", r)
		}
	}
}

// FuzzCleanText checks that CleanText's result is valid UTF-8, holds no
// unsafe rune, fits the limit and is left alone by a second pass.
func FuzzCleanText(f *testing.F) {
	for _, s := range []string{"", "SN-1", "\x1b]52;c;AAAA\x07", "\u202e", "\xff\x9b", "é\r\n"} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit = limit % 2048
		got := host.CleanText(s, limit)
		if !utf8.ValidString(got) {
			t.Fatalf("CleanText(%q, %d) = %q: not valid UTF-8", s, limit, got)
		}
		if len(got) > max(limit, 0) {
			t.Fatalf("CleanText(%q, %d) = %q: %d bytes", s, limit, got, len(got))
		}
		for _, r := range got {
			if host.UnsafeRune(r) {
				t.Fatalf("CleanText(%q, %d) = %q: holds %U", s, limit, got, r)
			}
		}
		if again := host.CleanText(got, limit); again != got {
			t.Fatalf("CleanText(CleanText(%q)) = %q, want %q", s, again, got)
		}
	})
}
