package bootscripts

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/ipxescript"
)

// The positive check. The validators (host.CheckWord, CheckURL,
// CheckCmdline) refuse what is known to be dangerous; this check instead
// proves that iPXE reads the rendered script exactly as the template means
// it. The template is rendered a second time with a placeholder word in
// place of every string of the scriptView; both renders are split with
// ipxescript.Parse (iPXE's own rules); in the placeholder render's parse each
// placeholder is replaced by its value (one plain token: no whitespace, not a
// terminator or comment, no "${", quote or backslash, no leading '-'), the
// command line placeholder by its space-separated words. The real render must
// parse to exactly that: same lines, labels, comments, commands, terminators,
// token texts and Special flags. A value that would add a token, a command, a
// line, a label or a comment, or that iPXE would expand or read as an option,
// changes the parse and the script is refused.

// Placeholder words: "@bp<index>@" for the strings of the view, cmdlineWord
// for the command line. No template contains "@bp".
const (
	placeholderMark = "@bp"
	cmdlineWord     = "@bpcmdline@"
)

// value is one string of a scriptView and the request field it comes from.
type value struct {
	field string // "kernel"
	text  string // "https://mirror.example/rocky9/vmlinuz"
}

// placeholders returns a copy of v with every string (but Cmdline) replaced
// by the placeholder of its index in the returned values, and Cmdline by
// cmdlineWord. Every string field of scriptView and initrdView must be
// handled here (TestPlaceholdersCoverEveryField), fileView's too.
func placeholders(v *scriptView) (scriptView, []value) {
	p := *v
	vals := make([]value, 0, 5+2*len(v.Initrds)+3*len(v.Files))
	set := func(field string, s *string) {
		vals = append(vals, value{field: field, text: *s})
		*s = placeholderMark + strconv.Itoa(len(vals)-1) + "@"
	}
	set("task", &p.Task)
	set("name", &p.Name)
	set("profile", &p.Profile)
	set("installer", &p.Installer)
	set("kernel", &p.Kernel)
	p.Initrds = make([]initrdView, len(v.Initrds))
	copy(p.Initrds, v.Initrds)
	for i := range p.Initrds {
		set("initrds", &p.Initrds[i].Name)
		set("initrds", &p.Initrds[i].URL)
	}
	p.Files = make([]fileView, len(v.Files))
	copy(p.Files, v.Files)
	for i := range p.Files {
		set("config_url", &p.Files[i].Name)
		set("config_url", &p.Files[i].URL)
		set("config_url", &p.Files[i].Path)
	}
	p.Cmdline = cmdlineWord
	return p, vals
}

// render executes template name with v into a new script and refuses it
// unless iPXE would read it exactly as the template means (checkScript).
func (r *Renderer) render(name string, v *scriptView) ([]byte, error) {
	var b bytes.Buffer
	if err := r.t.ExecuteTemplate(&b, name, v); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	pv, vals := placeholders(v)
	var skel bytes.Buffer
	if err := r.t.ExecuteTemplate(&skel, name, &pv); err != nil {
		return nil, fmt.Errorf("render placeholders: %w", err)
	}
	if err := checkScript(skel.String(), b.String(), vals, v.Cmdline); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// checkScript is the last line of defence after rendering: script must
// parse (as iPXE parses it) to skeleton's parse with each placeholder
// replaced by its value in vals and cmdlineWord by the words of cmdline. A
// difference is a *host.ValidationError naming the field whose value caused
// it. Then the template rules: the script starts with "#!ipxe", has no other
// comment, no "${" but HoldURLSetting, and no bare "exit" (which would stop
// in the firmware menu instead of booting the disk).
func checkScript(skeleton, script string, vals []value, cmdline string) error {
	if !strings.HasPrefix(script, "#!ipxe\n") {
		return errors.New("does not start with #!ipxe")
	}
	want, got := ipxescript.Parse(skeleton), ipxescript.Parse(script)
	words := strings.FieldsFunc(cmdline, func(r rune) bool { return r == ' ' })
	for i := range min(len(want), len(got)) {
		if err := compareLine(want[i], got[i], vals, words); err != nil {
			return err
		}
	}
	if len(want) != len(got) {
		return host.Invalid("script", "iPXE would read %d lines, the template has %d", len(got), len(want))
	}
	return checkTemplateRules(got)
}

// compareLine compares one parsed line of the script with the line the
// template means (want, from the placeholder render).
func compareLine(want, got ipxescript.Line, vals []value, words []string) error {
	blame := "script" // the field of the last value seen on this line
	mismatch := func(what string) error {
		return host.Invalid(blame, "iPXE would read a different %s than the template means; a value is not one plain word", what)
	}
	if l, f, err := expand(want.Label, vals); err != nil {
		return err
	} else if blame = or(f, blame); l != got.Label {
		return mismatch("label")
	}
	for i := range min(len(want.Commands), len(got.Commands)) {
		wc, gc := want.Commands[i], got.Commands[i]
		j := 0
		next := func(text string, special bool) error {
			if j >= len(gc.Tokens) || gc.Tokens[j].Text != text || gc.Tokens[j].Special != special {
				return mismatch("token")
			}
			j++
			return nil
		}
		for _, t := range wc.Tokens {
			if t.Text == cmdlineWord {
				blame = "cmdline"
				for _, w := range words {
					if err := next(w, false); err != nil {
						return err
					}
				}
				continue
			}
			text, f, err := expand(t.Text, vals)
			if err != nil {
				return err
			}
			blame = or(f, blame)
			if err := next(text, t.Special); err != nil {
				return err
			}
		}
		if j != len(gc.Tokens) {
			return mismatch("token")
		}
		if wc.Terminator != gc.Terminator {
			return mismatch("command terminator")
		}
	}
	if len(want.Commands) != len(got.Commands) {
		return mismatch("number of commands")
	}
	if c, f, err := expand(want.Comment, vals); err != nil {
		return err
	} else if blame = or(f, blame); c != got.Comment {
		return mismatch("comment")
	}
	return nil
}

// expand replaces the placeholders in s by their values. It returns the
// field of the last value it put in ("" if none).
func expand(s string, vals []value) (string, string, error) {
	i := strings.Index(s, placeholderMark)
	if i < 0 {
		return s, "", nil
	}
	var b strings.Builder
	field := ""
	for ; i >= 0; i = strings.Index(s, placeholderMark) {
		rest := s[i+len(placeholderMark):]
		end := strings.IndexByte(rest, '@')
		n, err := strconv.Atoi(rest[:max(end, 0)])
		if end < 0 || err != nil || n < 0 || n >= len(vals) {
			return "", "", fmt.Errorf("template: stray %q or the command line inside a token", placeholderMark)
		}
		b.WriteString(s[:i])
		b.WriteString(vals[n].text)
		field = vals[n].field
		s = rest[end+1:]
	}
	b.WriteString(s)
	return b.String(), field, nil
}

// checkTemplateRules checks what every stage-1 template must do (lines is
// the script's parse, which equals the template's meaning).
func checkTemplateRules(lines []ipxescript.Line) error {
	for i, l := range lines {
		if (i == 0) != (l.Comment == "#!ipxe") || (i > 0 && l.Comment != "") {
			return errors.New("has a comment other than the #!ipxe shebang")
		}
		for _, c := range l.Commands {
			if len(c.Tokens) == 1 && c.Tokens[0].Text == "exit" {
				return errors.New("contains a plain exit")
			}
			for _, t := range c.Tokens {
				if strings.Contains(t.Text, "${") && t.Text != HoldURLSetting {
					return errors.New("expands a setting other than " + HoldURLSetting)
				}
			}
		}
	}
	return nil
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
