// Package ipxescript splits an iPXE script into labels, commands and tokens
// exactly the way iPXE does before it runs them, so a rendered script can be
// compared with what its template meant.
//
// The rules are those of iPXE's src/image/script.c (process_script) and
// src/core/exec.c (system, split_command, command_terminator), as of the
// shipped binary (iPXE commit 0cc8177c):
//
//   - lines end at '\n'; one trailing '\r' is dropped; a line that then ends
//     in '\' is joined with the next line (the backslash is dropped, nothing
//     is inserted); a continuation at the end of the script is never run;
//   - a line is a C string: it ends at its first NUL;
//   - after leading whitespace, a ':' starts a label that runs to the next
//     whitespace; the rest of the line is still run as a command;
//   - tokens are split on the C isspace set (' ', '\t', '\n', '\v', '\f',
//     '\r'); this version has no quoting;
//   - a token that is exactly "||", "&&" or ";" ends a command; a token whose
//     first character is '#' starts a comment that runs to the end of the
//     line;
//   - every token is then expanded (${name}), and a token starting with '-'
//     is an option of its command.
package ipxescript

import "strings"

// Token is one argument of a command.
type Token struct {
	Text string // "--timeout"
	// Special is true when iPXE does more with the token than pass its text
	// on: it contains "${" (a setting is expanded), a quote or a backslash
	// (older iPXE versions unquote them), or starts with '-' (an option).
	Special bool
}

// Command is one command of a line and the token that ended it.
type Command struct {
	Tokens     []Token // [{"boot" false}]
	Terminator string  // "||", "&&", ";", or "" at the end of the line or at a comment
}

// Line is one line of a script as iPXE runs it, continuations joined.
type Line struct {
	Label    string    // ":failed" for a label line (the name after ':' is what goto looks for), "" otherwise
	Commands []Command // at least one; the last has Terminator ""
	Comment  string    // "#!ipxe": the line from the token that started a comment, "" if none
}

// Parse splits script into the lines iPXE runs.
func Parse(script string) []Line {
	// One backing array for all tokens and one for all commands: a
	// rendered script is parsed on every boot.
	nl := strings.Count(script, "\n") + 1
	p := parser{
		toks:  make([]Token, 0, strings.Count(script, " ")+nl),
		cmds:  make([]Command, 0, 2*nl),
		lines: make([]Line, 0, nl),
	}
	var cont string // a line ended by '\', waiting for the next one
	for off := 0; ; {
		frag := script[off:]
		if eol := strings.IndexByte(frag, '\n'); eol >= 0 {
			frag = frag[:eol]
		}
		off += len(frag) + 1
		line := frag
		if cont != "" {
			line = cont + frag
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.HasSuffix(line, `\`) {
			cont = line[:len(line)-1]
		} else {
			cont = ""
			p.line(line)
		}
		if off >= len(script) {
			return p.lines
		}
	}
}

// IsSpace reports whether iPXE's isspace is true for c.
func IsSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// IsTerminator reports whether iPXE ends a command at token s.
func IsTerminator(s string) bool {
	return s == "||" || s == "&&" || s == ";"
}

// IsSpecial reports whether iPXE does more with token s than pass it on
// (see Token.Special).
func IsSpecial(s string) bool {
	return strings.HasPrefix(s, "-") || strings.Contains(s, "${") || strings.ContainsAny(s, `"'\`)
}

// parser collects the lines of one script.
type parser struct {
	toks  []Token
	cmds  []Command
	lines []Line
}

// line splits one joined line into label, commands and comment.
func (p *parser) line(s string) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	s = s[skipSpace(s, 0):]
	var l Line
	if strings.HasPrefix(s, ":") {
		end := skipWord(s, 0)
		l.Label = s[:end]
		if end < len(s) {
			end++ // iPXE overwrites the one whitespace after the label
		}
		s = s[end:]
	}
	firstCmd, firstTok := len(p.cmds), len(p.toks)
	for i := skipSpace(s, 0); i < len(s); i = skipSpace(s, i) {
		end := skipWord(s, i)
		tok := s[i:end]
		switch {
		case tok[0] == '#':
			l.Comment = s[i:]
			end = len(s)
		case IsTerminator(tok):
			p.command(firstTok, tok)
			firstTok = len(p.toks)
		default:
			p.toks = append(p.toks, Token{Text: tok, Special: IsSpecial(tok)})
		}
		i = end
	}
	p.command(firstTok, "")
	l.Commands = p.cmds[firstCmd:len(p.cmds):len(p.cmds)]
	p.lines = append(p.lines, l)
}

// command ends the command whose tokens start at p.toks[first].
func (p *parser) command(first int, terminator string) {
	c := Command{Terminator: terminator}
	if first < len(p.toks) {
		c.Tokens = p.toks[first:len(p.toks):len(p.toks)]
	}
	p.cmds = append(p.cmds, c)
}

// skipSpace returns the index of the first non-space byte of s at or after i.
func skipSpace(s string, i int) int {
	for i < len(s) && IsSpace(s[i]) {
		i++
	}
	return i
}

// skipWord returns the index of the first space byte of s at or after i.
func skipWord(s string, i int) int {
	for i < len(s) && !IsSpace(s[i]) {
		i++
	}
	return i
}
