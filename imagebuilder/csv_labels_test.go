package imagebuilder_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/host"
)

// TestReadCSVLabels: the optional labels column "team=lab;site=dc1" reaches
// the host; an empty cell is no labels.
func TestReadCSVLabels(t *testing.T) {
	in := "name,mac,ipv4,gateway,dns,labels\n" +
		"node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3,team=lab;site=dc1\n" +
		"node02,52:54:00:12:34:57,10.0.2.16/24,10.0.2.2,10.0.2.3,\n"
	hosts, err := imagebuilder.ReadCSV(strings.NewReader(in), "hosts.csv")
	if err != nil {
		t.Fatal(err)
	}
	if want := (host.Labels{"team": "lab", "site": "dc1"}); !reflect.DeepEqual(hosts[0].Labels, want) {
		t.Errorf("node01 labels = %v, want %v", hosts[0].Labels, want)
	}
	if len(hosts[1].Labels) != 0 {
		t.Errorf("node02 labels = %v, want none", hosts[1].Labels)
	}
}

// TestReadCSVLabelErrors: a bad labels cell is reported by line and column,
// like every other column, and every bad row is listed.
func TestReadCSVLabelErrors(t *testing.T) {
	const hdr = "name,mac,ipv4,gateway,dns,labels\n"
	cases := []struct {
		name, labels, want string
	}{
		{"no equals sign", "team", `hosts.csv:2: labels: "team" is not key=value`},
		{"bad key", "Team=lab", `hosts.csv:2: labels: label key "Team"`},
		{"bad value", "team=l b", `hosts.csv:2: labels: label team: value "l b"`},
		{"twice", "team=lab;team=ops", `hosts.csv:2: labels: label team given twice`},
		{"escape", "team=\x1b[31m", `hosts.csv:2: labels: label team: value "`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := hdr + "node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3," + c.labels + "\n" +
				"node02,52:54:00:12:34:57,10.0.2.16/24,10.0.2.2,10.0.2.3,site=dc1\n" +
				"node03,52:54:00:12:34:58,10.0.2.17/24,10.0.2.2,10.0.2.3,=x\n"
			_, err := imagebuilder.ReadCSV(strings.NewReader(in), "hosts.csv")
			if err == nil {
				t.Fatal("ReadCSV accepted a bad labels cell")
			}
			if strings.ContainsRune(err.Error(), 0x1b) {
				t.Errorf("error carries a raw escape: %q", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], c.want) || !strings.HasPrefix(lines[1], "hosts.csv:4: labels: ") {
				t.Errorf("errors:\n%s\nwant line 2 %q and line 4 labels", err, c.want)
			}
		})
	}
}
