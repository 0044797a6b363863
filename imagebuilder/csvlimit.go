package imagebuilder

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// lineGuard stands between a hosts CSV file and encoding/csv, which reads a
// whole record into memory before returning it: the guard fails the read
// once a record grows past max bytes, so a huge line costs at most max
// bytes. It follows encoding/csv's quoting (with TrimLeadingSpace and '#'
// comments) to tell a record's end from a newline inside a quoted field,
// erring on the side of a longer record where a malformed quote leaves the
// two in doubt: a line it cuts short is never one encoding/csv accepts.
type lineGuard struct {
	r     io.Reader
	max   int
	n     int // bytes of the current record, newlines inside quotes included
	line  int // physical lines finished
	start int // physical line (0-based) the current record began on
	state guardState
	err   error
}

// guardState is where the guard is in a record.
type guardState int

const (
	atFieldStart guardState = iota // a field's start, leading spaces included
	inField                        // an unquoted field, or a line encoding/csv rejects
	inQuotes                       // a quoted field
	afterQuote                     // a '"' in a quoted field: an escaped quote or the end
	inComment                      // a comment line
)

// lineTooLong is the guard's error: the record that began on line (1-based)
// is longer than the limit.
type lineTooLong struct{ line int }

func (e *lineTooLong) Error() string { return fmt.Sprintf("line %d is too long", e.line) }

// lineTooLongAt reports whether err is the guard's, and the line it names.
func lineTooLongAt(err error) (int, bool) {
	var e *lineTooLong
	if errors.As(err, &e) {
		return e.line, true
	}
	return 0, false
}

func (g *lineGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	for i, c := range p[:n] {
		if c == '\n' {
			g.line++
			if g.state != inQuotes {
				g.n, g.start, g.state = 0, g.line, atFieldStart
				continue
			}
		}
		g.step(c)
		if g.n++; g.n > g.max {
			g.err = &lineTooLong{line: g.start + 1}
			return i, g.err
		}
	}
	return n, err
}

// step moves the guard past c, which is not a newline ending the record.
func (g *lineGuard) step(c byte) {
	switch g.state {
	case atFieldStart:
		switch {
		case c == '#' && g.n == 0:
			g.state = inComment
		case c == '"':
			g.state = inQuotes
		case c == ',':
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c >= utf8.RuneSelf:
			// encoding/csv trims Unicode spaces before a field; any
			// non-ASCII byte may belong to one, so a quote may still open.
		default:
			g.state = inField
		}
	case inField:
		if c == ',' {
			g.state = atFieldStart
		}
	case inQuotes:
		if c == '"' {
			g.state = afterQuote
		}
	case afterQuote:
		switch c {
		case '"':
			g.state = inQuotes
		case ',':
			g.state = atFieldStart
		default:
			g.state = inField // encoding/csv rejects the line and goes on at the next one
		}
	}
}

// longField returns the index of the first field of rec longer than
// MaxCSVField, or -1.
func longField(rec []string) int {
	for i, f := range rec {
		if len(f) > MaxCSVField {
			return i
		}
	}
	return -1
}

// maxQuoted is how many bytes of a value an error message quotes.
const maxQuoted = 64

// quotedRE matches a Go-quoted string (%q), as validation messages quote
// the values they reject.
var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// clipQuoted shortens every quoted value in reason longer than maxQuoted
// bytes to its start and its length, so an error never echoes a huge field.
// Quoting already escapes control characters.
func clipQuoted(reason string) string {
	return quotedRE.ReplaceAllStringFunc(reason, func(q string) string {
		v, err := strconv.Unquote(q)
		if err != nil || len(v) <= maxQuoted {
			return q
		}
		cut := maxQuoted - 16
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		return fmt.Sprintf("%q… (%d bytes)", v[:cut], len(v))
	})
}
