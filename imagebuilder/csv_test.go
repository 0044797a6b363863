package imagebuilder_test

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/imagebuilder"
)

func TestReadCSV(t *testing.T) {
	in := `name,mac,ipv4,gateway,dns,ipv6,gateway6,vlan,profile
# a comment
node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3,,,,rocky9
node02,52-54-00-12-34-57;52:54:00:12:34:58,10.0.2.16/24,10.0.2.2,10.0.2.3;1.1.1.1,2001:db8::16/64,2001:db8::1,100,
`
	hosts, err := imagebuilder.ReadCSV(strings.NewReader(in), "hosts.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 {
		t.Fatalf("got %d hosts, want 2", len(hosts))
	}
	h := hosts[1]
	if h.Name != "node02" || len(h.MACs) != 2 || h.MACs[0] != "52:54:00:12:34:57" || len(h.DNS) != 2 || h.VLAN != 100 || h.IPv6 != "2001:db8::16/64" || h.Hostname != "node02" {
		t.Errorf("node02 = %+v", h)
	}
	if hosts[0].Profile != "rocky9" {
		t.Errorf("node01 profile %q", hosts[0].Profile)
	}
}

func TestReadCSVErrors(t *testing.T) {
	const hdr = "name,mac,ipv4,gateway,dns,vlan\n"
	cases := []struct {
		name, in string
		want     []string // every error line, in order
	}{
		{"empty", "", []string{"hosts.csv:1: header: empty file"}},
		{"missing column", "name,mac,ipv4,gateway\n", []string{`hosts.csv:1: header: missing column "dns"`}},
		{"unknown column", "name,mac,ipv4,gateway,dns,color\n", []string{`hosts.csv:1: header: unknown column "color"`}},
		{"all bad rows", hdr +
			"node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3,\n" + // good
			"node02,52:54:00:12:34:zz,10.0.2.16/24,10.0.2.2,10.0.2.3,\n" + // bad MAC
			"node03,52:54:00:12:34:03,10.0.2.17,10.0.2.2,10.0.2.3,\n" + // no prefix
			"node04,52:54:00:12:34:04,10.0.2.18/24,10.0.3.1,10.0.2.3,\n" + // gateway outside
			"node01,52:54:00:12:34:05,10.0.2.19/24,10.0.2.2,10.0.2.3,\n" + // dup name
			"node06,52:54:00:12:34:56,10.0.2.20/24,10.0.2.2,10.0.2.3,\n" + // dup MAC
			"node07,52:54:00:12:34:07,10.0.2.15/24,10.0.2.2,10.0.2.3,\n" + // dup IP
			"node08,52:54:00:12:34:08,10.0.2.21/24,10.0.2.2,10.0.2.3,x\n" + // bad vlan
			"node09,52:54:00:12:34:09,10.0.2.22/24,10.0.2.2\n" + // short row
			"Node_10,52:54:00:12:34:10,10.0.2.23/24,10.0.2.2,10.0.2.3,\n" + // bad name
			"node11,52:54:00:12:34:11,10.0.2.24/24,10.0.2.2,dns${x},\n", // injection
			[]string{
				"hosts.csv:3: mac: ",
				"hosts.csv:4: ipv4: ",
				"hosts.csv:5: gateway: 10.0.3.1 is outside the subnet 10.0.2.0/24",
				"hosts.csv:6: name: name node01 is also on line 2",
				"hosts.csv:7: mac: MAC 52:54:00:12:34:56 is also on line 2",
				"hosts.csv:8: ipv4: address 10.0.2.15 is also on line 2",
				`hosts.csv:9: vlan: "x" is not a number`,
				"hosts.csv:10: row: has 4 fields, the header has 6",
				"hosts.csv:11: name: ",
				"hosts.csv:12: dns: ",
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hosts, err := imagebuilder.ReadCSV(strings.NewReader(c.in), "hosts.csv")
			if hosts != nil {
				t.Errorf("got hosts %v with errors", hosts)
			}
			var re imagebuilder.RowErrors
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T), want RowErrors", err, err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(c.want), err)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestScanCSVStreamsRows(t *testing.T) {
	in := "name,mac,ipv4,gateway,dns\n" +
		"node02,52:54:00:12:34:57,10.0.2.16/24,10.0.2.2,10.0.2.3\n" +
		"# comment\n" +
		"node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3\n"
	want, err := imagebuilder.ReadCSVRows(strings.NewReader(in), "hosts.csv")
	if err != nil {
		t.Fatal(err)
	}
	for name, scan := range map[string]func(io.Reader, string, func(imagebuilder.Row) error) error{
		"ScanCSV": imagebuilder.ScanCSV, "RescanCSV": imagebuilder.RescanCSV,
	} {
		var got []imagebuilder.Row
		if err := scan(strings.NewReader(in), "hosts.csv", func(r imagebuilder.Row) error { got = append(got, r); return nil }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s rows = %+v, want %+v", name, got, want)
		}
	}
	if len(want) != 2 || want[0].Line != 2 || want[0].Host.Name != "node02" || want[1].Line != 4 {
		t.Errorf("rows = %+v, want node02 on line 2 and node01 on line 4", want)
	}

	// fn's error stops the scan.
	stop := errors.New("stop")
	calls := 0
	err = imagebuilder.ScanCSV(strings.NewReader(in), "hosts.csv", func(imagebuilder.Row) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("err = %v after %d calls, want stop after 1", err, calls)
	}

	// Only ScanCSV looks across rows; both report every bad row.
	dup := in + "node01,52:54:00:12:34:zz,10.0.2.17/24,10.0.2.2,10.0.2.3\n" +
		"node03,52:54:00:12:34:56,10.0.2.18/24,10.0.2.2,10.0.2.3\n"
	var re imagebuilder.RowErrors
	err = imagebuilder.ScanCSV(strings.NewReader(dup), "hosts.csv", func(imagebuilder.Row) error { return nil })
	if !errors.As(err, &re) || len(re) != 2 || re[0].Line != 5 || re[0].Column != "mac" || re[1].Line != 6 || !strings.Contains(re[1].Reason, "also on line 4") {
		t.Errorf("ScanCSV err = %v, want a bad MAC on line 5 and a duplicate MAC on line 6", err)
	}
	err = imagebuilder.RescanCSV(strings.NewReader(dup), "hosts.csv", func(imagebuilder.Row) error { return nil })
	if !errors.As(err, &re) || len(re) != 1 || re[0].Line != 5 {
		t.Errorf("RescanCSV err = %v, want only the bad MAC on line 5", err)
	}
}
