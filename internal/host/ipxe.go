package host

import (
	"net/url"
	"strings"
	"unicode"
)

// iPXE has no quoting. A value that reaches a script must not contain
// anything iPXE parses: whitespace splits arguments, "#" at the start of a
// word starts a comment, "${" expands a setting, a word "||", "&&" or ";"
// ends a command, and a newline starts a new command (and with ':' a label;
// a value never starts a line, so ':' is harmless). Backslashes (a trailing
// one joins the next line) and quotes are refused too: iPXE treats them
// specially in some versions and nothing legitimate needs them. "#", "||"
// and "&&" are refused anywhere in a word, as is '$'. CheckWord refuses ';'
// only as a word of its own: inside a word iPXE passes it on, and
// autoinstall needs it (ds=nocloud-net;s=…).
func unsafeIPXE(s string) string {
	for _, bad := range []string{"${", "||", "&&", "#", "\\", "\"", "'", "`", "$"} {
		if strings.Contains(s, bad) {
			return bad
		}
	}
	return ""
}

// CheckWord validates a single iPXE argument: printable ASCII, no whitespace,
// nothing iPXE would interpret (not even a command separator ";").
func CheckWord(field, s string) error {
	if s == "" {
		return Invalid(field, "must not be empty")
	}
	if len(s) > 2048 {
		return Invalid(field, "is longer than 2048 bytes")
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return Invalid(field, "contains whitespace or a control or non-ASCII character (%q)", r)
		}
	}
	if s == ";" {
		return Invalid(field, "has the word \";\", which iPXE would read as the end of the command")
	}
	if bad := unsafeIPXE(s); bad != "" {
		return Invalid(field, "contains %q, which iPXE would interpret", bad)
	}
	return nil
}

// CheckURL validates an absolute http(s) URL that will appear in a script.
func CheckURL(field, s string) error {
	if err := CheckWord(field, s); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Invalid(field, "%q is not an absolute http(s) URL", s)
	}
	if u.User != nil {
		return Invalid(field, "must not carry credentials")
	}
	return nil
}

// CheckCmdline validates a kernel command line: space-separated words, each
// a CheckWord, none starting with '-' (iPXE would read it as an option).
func CheckCmdline(field, s string) error {
	if strings.ContainsAny(s, "\r\n\t\v\f") {
		return Invalid(field, "contains a line break or tab")
	}
	for _, w := range strings.Split(s, " ") {
		if w == "" {
			continue
		}
		if err := CheckWord(field, w); err != nil {
			return err
		}
		if strings.HasPrefix(w, "-") {
			return Invalid(field, "word %q starts with '-', which iPXE would read as an option", w)
		}
	}
	return nil
}
