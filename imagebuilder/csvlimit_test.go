package imagebuilder_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/imagebuilder"
)

const limitHeader = "name,mac,ipv4,gateway,dns\n"
const limitRow1 = "node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3\n"

// pattern reads pat over and over, n bytes in all, without allocating them.
type pattern struct {
	pat string
	n   int64
	off int
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	for i := range b {
		b[i] = p.pat[p.off]
		p.off = (p.off + 1) % len(p.pat)
	}
	p.n -= int64(len(b))
	return len(b), nil
}

// TestScanCSVHugeLine feeds a 200 MB line (plain, inside a quoted field
// spanning lines, or a comment): the scan stops with the line's number,
// memory stays bounded and the error does not echo the line.
func TestScanCSVHugeLine(t *testing.T) {
	const huge = 200 << 20
	tests := []struct {
		name, head, pat string
	}{
		{"unquoted field", limitRow1 + "node02,", "a"},
		{"quoted field with newlines", limitRow1 + `node02,"`, "a\n"},
		{"comment", limitRow1 + "#", "\""},
		{"header", "", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := limitHeader + tt.head
			wantLine := strings.Count(head, "\n") + 1
			if tt.name == "header" {
				head, wantLine = "", 1
			}
			in := io.MultiReader(strings.NewReader(head), &pattern{pat: tt.pat, n: huge},
				strings.NewReader("\nnode03,52:54:00:12:34:58,10.0.2.17/24,10.0.2.2,10.0.2.3\n"))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := imagebuilder.ScanCSV(in, "hosts.csv", func(imagebuilder.Row) error { return nil })
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
				t.Errorf("ScanCSV allocated %d MB for a %d MB line, want < 32 MB", grew>>20, huge>>20)
			}
			want := fmt.Sprintf("hosts.csv:%d: line longer than 65536 bytes", wantLine)
			var re imagebuilder.RowErrors
			if !errors.As(err, &re) || err.Error() != want {
				t.Errorf("ScanCSV err = %.200q, want %q", fmt.Sprint(err), want)
			}
		})
	}
}

// TestScanCSVLimits checks the field limit, that long values are not echoed
// whole nor control characters raw, and that the line guard follows
// encoding/csv's quoting: quoted commas, escaped quotes, quotes in comments
// and malformed quotes do not make it cut a good file.
func TestScanCSVLimits(t *testing.T) {
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name, in string
		want     []string // prefixes of the errors, in order
	}{
		{"long field", limitHeader + "node01,52:54:00:12:34:56," + long + ",10.0.2.2,10.0.2.3\n",
			[]string{"hosts.csv:2: ipv4: field longer than 4096 bytes"}},
		{"long header field", "name," + long + "\n", []string{"hosts.csv:1: header: field longer than 4096 bytes"}},
		{"long value clipped", limitHeader + strings.Repeat("n", 300) + ",52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3\n",
			[]string{`hosts.csv:2: name: "` + strings.Repeat("n", 48) + `"… (300 bytes) is not a valid name`}},
		{"control characters escaped", limitHeader + "\x1b]52;c;AAAA\x07,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3\n",
			[]string{`hosts.csv:2: name: "\x1b]52;c;AAAA\a" is not a valid name`}},
		{"bad quote in the first field", limitHeader + `"node01"x,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3` + "\n",
			[]string{`hosts.csv:2: row: extraneous or missing " in quoted-field`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := imagebuilder.ScanCSV(strings.NewReader(tt.in), "hosts.csv", func(imagebuilder.Row) error { return nil })
			var re imagebuilder.RowErrors
			if !errors.As(err, &re) {
				t.Fatalf("ScanCSV err = %v, want RowErrors", err)
			}
			var got []string
			for _, e := range re {
				got = append(got, e.Error())
			}
			ok := len(got) == len(tt.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tt.want[i])
			}
			if !ok {
				t.Errorf("ScanCSV errors = %q, want the prefixes %q", got, tt.want)
			}
		})
	}

	// A good file of 2000 rows (far more than one line's limit) after a
	// comment with an odd number of quotes, quoted fields with commas and
	// escaped quotes, and a row encoding/csv rejects for a stray quote.
	var b strings.Builder
	b.WriteString("# don't \"quote me\n" + limitHeader)
	b.WriteString(`"node00", "52:54:00:00:00:01;52:54:00:00:00:02","10.0.1.1/16","10.0.0.1","10.0.0.2"` + "\n")
	b.WriteString(`node"x,52:54:00:00:00:03,10.0.1.2/16,10.0.0.1,10.0.0.2` + "\n")
	b.WriteString(`"node""y",52:54:00:00:00:04,10.0.1.3/16,10.0.0.1,10.0.0.2` + "\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "n%d,52:54:00:01:%02x:%02x,10.0.%d.%d/16,10.0.0.1,10.0.0.2\n", i, i>>8, i&0xff, 2+i/250, 1+i%250)
	}
	rows := 0
	err := imagebuilder.ScanCSV(strings.NewReader(b.String()), "hosts.csv", func(imagebuilder.Row) error { rows++; return nil })
	var re imagebuilder.RowErrors
	if !errors.As(err, &re) || len(re) != 2 || re[0].Line != 4 || re[1].Line != 5 || rows != 2001 {
		t.Errorf("ScanCSV = %d rows, %v; want 2001 rows and errors on lines 4 (bare quote) and 5 (bad name)", rows, err)
	}
}
