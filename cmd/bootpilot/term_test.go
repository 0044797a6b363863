package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

// hostileText is what a host could have stored before the server cleaned
// its reports: CSI clear screen, an OSC 52 clipboard write ended by BEL, a
// carriage-return overwrite, a C1 CSI, a right-to-left override, DEL, an
// invalid byte and a tag character beyond U+FFFF.
const hostileText = "\x1b[2J\x1b]52;c;cm0gLXJmIH4K\x07ok\rFAIL\u009b31m\u202egnp.exe\x7f\xff\U000E0041"

func TestTerm(t *testing.T) {
	tests := []struct{ in, want, lines string }{
		{"SN-1234 naïve 日本", "SN-1234 naïve 日本", "SN-1234 naïve 日本"},
		{`C:\path "q"`, `C:\path "q"`, `C:\path "q"`},
		{"a\tb\nc", `a\tb\nc`, "a\tb\nc"},
		{hostileText, `\x1b[2J\x1b]52;c;cm0gLXJmIH4K\aok\rFAIL\u009b31m\u202egnp.exe\x7f\xff\U000e0041`,
			`\x1b[2J\x1b]52;c;cm0gLXJmIH4K\aok\rFAIL\u009b31m\u202egnp.exe\x7f\xff\U000e0041`},
	}
	for _, tt := range tests {
		if got := term(tt.in); got != tt.want {
			t.Errorf("term(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := termLines(tt.in); got != tt.lines {
			t.Errorf("termLines(%q) = %q, want %q", tt.in, got, tt.lines)
		}
	}
	v := map[string]string{"reason": strings.ToValidUTF8(hostileText, "\uFFFD") + "\u2028\u00e9"}
	b, _ := json.MarshalIndent(v, "", "  ")
	got := termJSON(b)
	checkTerminalSafe(t, "termJSON", string(got))
	var back map[string]string
	if err := json.Unmarshal(got, &back); err != nil || back["reason"] != v["reason"] {
		t.Errorf("termJSON(%q) = %q decodes to %q (%v), want the same value", b, got, back, err)
	}
}

// checkTerminalSafe fails unless out is valid UTF-8 with no control,
// format or bidi character but newlines.
func checkTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		if (r == utf8.RuneError && !strings.HasPrefix(out[i:], "\uFFFD")) || (r != '\n' && host.UnsafeRune(r)) {
			t.Errorf("%s: raw %U at byte %d of output:\n%q", what, r, i, out)
			return
		}
	}
}

// TestCLIEscapesStoredText writes hostile inventory and an event reason
// straight into the database (as rows stored before the server cleaned
// them) and checks that no CLI view prints them raw.
func TestCLIEscapesStoredText(t *testing.T) {
	_, dataDir := realServer(t, "sqlite")
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3")
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dataDir, "bootpilot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	inv := host.Inventory{MAC: "52:54:00:12:34:56", UUID: hostileText, Serial: hostileText, Asset: hostileText,
		Arch: hostileText, Platform: hostileText, SeenAt: time.Now().UTC()}
	if err := db.SetInventory(ctx, "node01", inv); err != nil {
		t.Fatal(err)
	}
	_, err = db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
		return []host.Record{{Host: h.Name, Actor: "callback", Action: "progress", Reason: hostileText, Time: time.Now().UTC()}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{
		{"host", "show", "node01"}, {"host", "events", "node01"}, {"host", "list"},
		{"host", "show", "node01", "-o", "json"}, {"host", "events", "node01", "-o", "json"}, {"host", "list", "-o", "json"},
	} {
		out := cli(t, args...)
		checkTerminalSafe(t, strings.Join(args, " "), out)
		shown := len(args) > 3 || args[1] != "list" // the table has no inventory column
		if shown && !strings.Contains(out, `\x1b]52;c;`) && !strings.Contains(out, `\u001b]52;c;`) {
			t.Errorf("%s: the stored text is not shown escaped:\n%s", strings.Join(args, " "), out)
		}
	}
}
