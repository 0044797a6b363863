package ipxescript_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/ipxescript"
)

// cmd builds a Command from plain words; a word with a trailing "!" is
// expected to be Special.
func cmd(term string, words ...string) ipxescript.Command {
	c := ipxescript.Command{Terminator: term}
	for _, w := range words {
		special := strings.HasSuffix(w, "!") && len(w) > 1
		c.Tokens = append(c.Tokens, ipxescript.Token{Text: strings.TrimSuffix(w, "!"), Special: special})
	}
	return c
}

func line(label, comment string, cmds ...ipxescript.Command) ipxescript.Line {
	return ipxescript.Line{Label: label, Comment: comment, Commands: cmds}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name   string
		script string
		want   []ipxescript.Line
	}{
		{"one command", "kernel k a=b\n", []ipxescript.Line{line("", "", cmd("", "kernel", "k", "a=b"))}},
		{"no final newline", "echo a", []ipxescript.Line{line("", "", cmd("", "echo", "a"))}},
		{"empty script", "", []ipxescript.Line{line("", "", cmd(""))}},
		{"empty line", "a\n\nb\n", []ipxescript.Line{line("", "", cmd("", "a")), line("", "", cmd("")), line("", "", cmd("", "b"))}},
		{"shebang is a comment", "#!ipxe\necho a\n", []ipxescript.Line{line("", "#!ipxe", cmd("")), line("", "", cmd("", "echo", "a"))}},
		{"bare ; ends a command", "echo a ; echo INJECTED ;\n",
			[]ipxescript.Line{line("", "", cmd(";", "echo", "a"), cmd(";", "echo", "INJECTED"), cmd(""))}},
		{"; inside a token is plain", "kernel k ds=nocloud-net;s=https://h/ a; ;b\n",
			[]ipxescript.Line{line("", "", cmd("", "kernel", "k", "ds=nocloud-net;s=https://h/", "a;", ";b"))}},
		{"|| and &&", "a || b && c\n", []ipxescript.Line{line("", "", cmd("||", "a"), cmd("&&", "b"), cmd("", "c"))}},
		{"||| is a token", "a ||| b &&& c |\n", []ipxescript.Line{line("", "", cmd("", "a", "|||", "b", "&&&", "c", "|"))}},
		{"# at token start is a comment", "a b #c || d\n", []ipxescript.Line{line("", "#c || d", cmd("", "a", "b"))}},
		{"# inside a token is plain", "a b#c\n", []ipxescript.Line{line("", "", cmd("", "a", "b#c"))}},
		{"comment after a terminator", "a ; #x\n", []ipxescript.Line{line("", "#x", cmd(";", "a"), cmd(""))}},
		{"settings", "chain ${bootpilot/url} a${x}b $x {x}\n",
			[]ipxescript.Line{line("", "", cmd("", "chain", "${bootpilot/url}!", "a${x}b!", "$x", "{x}"))}},
		{"options", "kernel --timeout 5 -n x a-b\n", []ipxescript.Line{line("", "", cmd("", "kernel", "--timeout!", "5", "-n!", "x", "a-b"))}},
		{"quotes and backslash", `echo "a" 'b' c\d` + "\n", []ipxescript.Line{line("", "", cmd("", "echo", `"a"!`, `'b'!`, `c\d!`))}},
		{"trailing CR dropped", "echo a\r\necho b\r\n", []ipxescript.Line{line("", "", cmd("", "echo", "a")), line("", "", cmd("", "echo", "b"))}},
		{"only one trailing CR dropped", "echo a\r\r\n", []ipxescript.Line{line("", "", cmd("", "echo", "a"))}},
		{"CR inside a line splits", "echo a\rb\n", []ipxescript.Line{line("", "", cmd("", "echo", "a", "b"))}},
		{"whitespace set", "a\tb\vc\fd e\r f\n", []ipxescript.Line{line("", "", cmd("", "a", "b", "c", "d", "e", "f"))}},
		{"other control bytes are not space", "a\x01b \x1c\n", []ipxescript.Line{line("", "", cmd("", "a\x01b", "\x1c"))}},
		{"continuation joins", "echo a\\\nb c\n", []ipxescript.Line{line("", "", cmd("", "echo", "ab", "c"))}},
		{"continuation then CR", "echo a \\\r\n; b\n", []ipxescript.Line{line("", "", cmd(";", "echo", "a"), cmd("", "b"))}},
		{"continuation of continuation", "a\\\n\\\nb\n", []ipxescript.Line{line("", "", cmd("", "ab"))}},
		{"continuation at the end is not run", "a\nb\\\n", []ipxescript.Line{line("", "", cmd("", "a"))}},
		{"continuation without final newline", "a\nb\\", []ipxescript.Line{line("", "", cmd("", "a"))}},
		{"NUL truncates the line", "echo a\x00b ; c\necho d\n", []ipxescript.Line{line("", "", cmd("", "echo", "a")), line("", "", cmd("", "echo", "d"))}},
		{"NUL before a continuation", "a\x00b\\\nc\n", []ipxescript.Line{line("", "", cmd("", "a"))}},
		{"label", ":failed\n", []ipxescript.Line{line(":failed", "", cmd(""))}},
		{"label runs the rest", "  :l echo INJECTED || x\n", []ipxescript.Line{line(":l", "", cmd("||", "echo", "INJECTED"), cmd("", "x"))}},
		{"label with tab", ":l\techo x\n", []ipxescript.Line{line(":l", "", cmd("", "echo", "x"))}},
		{"empty label", ":\n", []ipxescript.Line{line(":", "", cmd(""))}},
		{"colon not at line start", "echo :l\n", []ipxescript.Line{line("", "", cmd("", "echo", ":l"))}},
		{"label then comment", ":l #c\n", []ipxescript.Line{line(":l", "#c", cmd(""))}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ipxescript.Parse(tt.script); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) =\n%+v\nwant\n%+v", tt.script, got, tt.want)
			}
		})
	}
}

func TestIsSpecial(t *testing.T) {
	for s, want := range map[string]bool{
		"a": false, "-a": true, "--timeout": true, "a-b": false, "${x}": true, "a${": true, "$x": false,
		`a"b`: true, "a'b": true, `a\b`: true, "a;b": false, "#a": false,
	} {
		if got := ipxescript.IsSpecial(s); got != want {
			t.Errorf("IsSpecial(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzParse: Parse never panics, and every token is non-empty, holds no
// iPXE whitespace or NUL, is no terminator and does not start a comment.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"#!ipxe\necho a ; b\n", ":l a\\\r\nb\x00c", "a || b && c # d", "\\", "\r\n\\\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, l := range ipxescript.Parse(s) {
			if len(l.Commands) == 0 || l.Commands[len(l.Commands)-1].Terminator != "" {
				t.Fatalf("Parse(%q): line %+v does not end in a command without terminator", s, l)
			}
			for _, c := range l.Commands {
				for _, tok := range c.Tokens {
					if tok.Text == "" || strings.ContainsAny(tok.Text, " \t\n\v\f\r\x00") || ipxescript.IsTerminator(tok.Text) || tok.Text[0] == '#' {
						t.Fatalf("Parse(%q): bad token %q", s, tok.Text)
					}
				}
			}
		}
	})
}
