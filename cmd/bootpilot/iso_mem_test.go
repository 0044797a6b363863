package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// marshalAll is how manifest.json and hosts-import.json were written when
// every entry was held in memory: the streamed files must match it byte
// for byte.
func marshalAll(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestISOBuildManifestFormat(t *testing.T) {
	dir := t.TempDir()
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	// Not in name order: manifest.json is sorted by host, hosts-import.json
	// keeps the CSV's order.
	csv := "name,mac,ipv4,gateway,dns,vlan,profile\n" +
		"node03,52:54:00:12:34:58,10.0.2.17/24,10.0.2.2,10.0.2.3,,\n" +
		"node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3;1.1.1.1,100,rocky9\n" +
		"node10,52:54:00:12:34:60,10.0.2.20/24,10.0.2.2,10.0.2.3,,\n" +
		"node02,52:54:00:12:34:57,10.0.2.16/24,10.0.2.2,10.0.2.3,,\n"
	csvPath := filepath.Join(dir, "hosts.csv")
	os.WriteFile(csvPath, []byte(csv), 0o644)
	build := func(out string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"iso", "build", "--csv", csvPath, "--out", out, "--server-url", "https://10.0.2.100:8443",
			"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath, "--offline", "--jobs", "3"}, &stdout, &stderr)
		if err != nil {
			t.Fatalf("iso build: %v\n%s", err, stderr.String())
		}
	}
	out := filepath.Join(dir, "out")
	build(out)

	raw, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	var m struct {
		ISOs []manifestEntry `json:"isos"`
	}
	readJSON(t, filepath.Join(out, "manifest.json"), &m)
	var hosts []string
	for _, e := range m.ISOs {
		hosts = append(hosts, e.Host)
	}
	if strings.Join(hosts, " ") != "node01 node02 node03 node10" {
		t.Errorf("manifest.json hosts %v, want sorted by name", hosts)
	}
	if want := marshalAll(t, map[string]any{"isos": m.ISOs}); !bytes.Equal(raw, want) {
		t.Errorf("manifest.json =\n%s\nwant\n%s", raw, want)
	}

	raw, _ = os.ReadFile(filepath.Join(out, "hosts-import.json"))
	var imp struct {
		Hosts []map[string]any `json:"hosts"`
	}
	readJSON(t, filepath.Join(out, "hosts-import.json"), &imp)
	hosts = nil
	for _, h := range imp.Hosts {
		hosts = append(hosts, fmt.Sprint(h["name"]))
	}
	if strings.Join(hosts, " ") != "node03 node01 node10 node02" {
		t.Errorf("hosts-import.json hosts %v, want the CSV's order", hosts)
	}
	if want := marshalAll(t, map[string]any{"hosts": imp.Hosts}); !bytes.Equal(raw, want) {
		t.Errorf("hosts-import.json =\n%s\nwant\n%s", raw, want)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 6 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("out holds %v, want 4 ISOs, manifest.json and hosts-import.json", names)
	}

	// No hosts: an empty list, and null for the import file (a nil list).
	os.WriteFile(csvPath, []byte("name,mac,ipv4,gateway,dns\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	build(empty)
	for file, want := range map[string]string{
		"manifest.json":     "{\n  \"isos\": []\n}\n",
		"hosts-import.json": "{\n  \"hosts\": null\n}\n",
	} {
		if got, _ := os.ReadFile(filepath.Join(empty, file)); string(got) != want {
			t.Errorf("%s with no hosts = %q, want %q", file, got, want)
		}
	}
}

// TestISOBuildMemoryFlat builds 2,000 and then 20,000 hosts through the CLI
// and compares the largest live heap seen during each build (HeapInuse
// after a full GC, sampled as ISOs complete): what is kept per host must
// stay small, so the two differ by far less than the bound. Holding every
// row, token and JSON entry, as iso build once did, costs ~7 KB per host,
// ~130 MB here.
func TestISOBuildMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 22,000 ISOs")
	}
	dir := t.TempDir()
	_, _, caPath, _, _ := isoKeys(t, dir)
	peak := func(n int) uint64 {
		var csv strings.Builder
		csv.WriteString("name,mac,ipv4,gateway,dns\n")
		for i := 0; i < n; i++ {
			a := i + 256
			fmt.Fprintf(&csv, "node%05d,52:54:00:%02x:%02x:%02x,10.%d.%d.%d/8,10.0.0.1,10.0.0.2\n", i,
				i>>16&255, i>>8&255, i&255, a>>16&255, a>>8&255, a&255)
		}
		csvPath := filepath.Join(dir, fmt.Sprintf("hosts%d.csv", n))
		os.WriteFile(csvPath, []byte(csv.String()), 0o644)
		csv = strings.Builder{}
		out := filepath.Join(dir, fmt.Sprint("out", n))
		var (
			mu    sync.Mutex
			built int
			max   uint64
		)
		sample := func() {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > max {
				max = ms.HeapInuse
			}
		}
		isoBuiltHook = func(path string) {
			os.Remove(path) // only the memory matters here, not 20 GB of ISOs
			mu.Lock()
			defer mu.Unlock()
			if built++; built%(n/10) == 0 {
				sample()
			}
		}
		defer func() { isoBuiltHook = nil }()
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"iso", "build", "--csv", csvPath, "--out", out, "--server-url", "https://boot.example.org",
			"--ca-cert", caPath, "--unsigned", "--offline", "--jobs", "2"}, &stdout, &stderr)
		if err != nil {
			t.Fatalf("iso build of %d hosts: %v\n%s", n, err, stderr.String())
		}
		if built != n {
			t.Fatalf("%d ISOs built, want %d", built, n)
		}
		var m struct {
			ISOs []manifestEntry `json:"isos"`
		}
		readJSON(t, filepath.Join(out, "manifest.json"), &m)
		if len(m.ISOs) != n || !sort.SliceIsSorted(m.ISOs, func(i, j int) bool { return m.ISOs[i].Host < m.ISOs[j].Host }) {
			t.Fatalf("manifest.json of %d hosts has %d entries or is not sorted", n, len(m.ISOs))
		}
		os.RemoveAll(out)
		os.Remove(csvPath)
		return max
	}
	small, large := peak(2000), peak(20000)
	t.Logf("live heap while building: %d hosts %.1f MB, %d hosts %.1f MB", 2000, float64(small)/1e6, 20000, float64(large)/1e6)
	const bound = 16 << 20 // ~0.9 KB per host
	if large > small && large-small > bound {
		t.Errorf("live heap grows by %.1f MB from 2,000 to 20,000 hosts, want < %d MB: something is kept per host",
			float64(large-small)/1e6, bound>>20)
	}
}
