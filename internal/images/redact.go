package images

import (
	"net/url"
	"regexp"
	"strings"
)

// Redact returns ref fit for logs and answers: URL credentials
// ("user:secret@") and the query (signed URLs carry their signature there)
// are removed, and so is a URL's fragment. An OCI reference keeps its
// "#title"; a local path is returned as is.
func Redact(ref string) string {
	scheme, rest, ok := strings.Cut(ref, "://")
	if !ok {
		scheme, rest = "", ref
	}
	rest, _, _ = strings.Cut(rest, "?")
	if ok && scheme != "oci" {
		rest, _, _ = strings.Cut(rest, "#")
	}
	end := strings.IndexByte(rest, '/')
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		rest = rest[at+1:]
	} else if _, err := url.Parse("x://" + rest); err != nil {
		// "user:pa/ss@host": unparsable, and the secret may run past
		// the first slash; lose the whole part before the last "@".
		rest = rest[strings.LastIndexByte(rest, '@')+1:]
	}
	if !ok {
		return rest
	}
	return scheme + "://" + rest
}

// urlInText matches what looks like a URL inside an error message.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// RedactText applies Redact to every URL in s, e.g. an error message from
// an HTTP or registry client that quotes the URL it requested.
func RedactText(s string) string {
	return urlInText.ReplaceAllStringFunc(s, Redact)
}

// redactedError is err with the URLs in its message redacted; errors.Is and
// errors.As still see err.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := RedactText(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
