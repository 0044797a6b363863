package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

// TestHostLabelsCLI: labels round-trip through host add, show, list and
// edit; a bad label is refused before any request, naming the flag.
func TestHostLabelsCLI(t *testing.T) {
	operatorEnv(t)
	realServer(t, "sqlite")
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:56", "--ipv4", "10.0.2.15/24", "--gateway", "10.0.2.2",
		"--dns", "10.0.2.3", "--label", "team=lab", "--labels", "site=dc1")
	if h := hostState(t, "node01"); !reflect.DeepEqual(h.Labels, host.Labels{"team": "lab", "site": "dc1"}) {
		t.Errorf("labels after add = %v", h.Labels)
	}
	if show := cli(t, "host", "show", "node01"); !strings.Contains(show, "site=dc1;team=lab") {
		t.Errorf("host show lacks the labels:\n%s", show)
	}
	if list := cli(t, "host", "list"); !strings.Contains(list, "LABELS") || !strings.Contains(list, "site=dc1;team=lab") {
		t.Errorf("host list:\n%s", list)
	}
	cli(t, "host", "edit", "node01", "--label", "team=ops")
	if h := hostState(t, "node01"); !reflect.DeepEqual(h.Labels, host.Labels{"team": "ops"}) {
		t.Errorf("labels after edit --label team=ops = %v, want only team=ops", h.Labels)
	}
	cli(t, "host", "edit", "node01", "--labels", "")
	if h := hostState(t, "node01"); len(h.Labels) != 0 {
		t.Errorf("labels after edit --labels \"\" = %v, want none", h.Labels)
	}
	for _, bad := range [][]string{{"--label", "Team=lab"}, {"--label", "team"}, {"--labels", "team=a;team=b"}} {
		_, _, err := runCLI(append([]string{"host", "edit", "node01"}, bad...)...)
		if err == nil || !strings.Contains(err.Error(), "--label") {
			t.Errorf("host edit %v: %v, want an error naming --label(s)", bad, err)
		}
	}
}

// TestCSVLabelsImport: the CSV labels column reaches the server through an
// offline ISO build and `host import`; a bad label is reported by line and
// column before anything is built.
func TestCSVLabelsImport(t *testing.T) {
	operatorEnv(t)
	url, dataDir := realServer(t, "sqlite")
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "hosts.csv")
	write := func(labels string) {
		t.Helper()
		if err := os.WriteFile(csvFile, []byte("name,mac,ipv4,gateway,dns,labels\n"+
			"node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3,"+labels+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	build := []string{"iso", "build", "--csv", csvFile, "--out", out, "--offline", "--unsigned",
		"--server-url", url, "--ca-cert", filepath.Join(dataDir, "ca.pem")}
	write("team=lab;site=dc 1")
	_, stderr, err := runCLI(build...)
	if err == nil || !strings.Contains(err.Error()+stderr, "hosts.csv:2: labels: label site: value") {
		t.Errorf("iso build with a bad label: %v\n%s\nwant hosts.csv:2: labels: …", err, stderr)
	}
	write("team=lab;site=dc1")
	cli(t, build...)
	imp, err := os.ReadFile(filepath.Join(out, "hosts-import.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Hosts []host.Host }
	if err := json.Unmarshal(imp, &file); err != nil || len(file.Hosts) != 1 || file.Hosts[0].Labels["site"] != "dc1" {
		t.Fatalf("hosts-import.json = %s (%v), want node01 with its labels", imp, err)
	}
	cli(t, "host", "import", filepath.Join(out, "hosts-import.json"))
	if h := hostState(t, "node01"); !reflect.DeepEqual(h.Labels, host.Labels{"team": "lab", "site": "dc1"}) {
		t.Errorf("imported host labels = %v", h.Labels)
	}
	// An update through import (the host exists) carries new labels too.
	write("team=ops")
	cli(t, build...)
	cli(t, "host", "import", filepath.Join(out, "hosts-import.json"))
	if h := hostState(t, "node01"); h.Labels["team"] != "ops" {
		t.Errorf("re-imported host labels = %v, want team=ops", h.Labels)
	}
}
