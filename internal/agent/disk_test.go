package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bootpilot/bootpilot/internal/agent"
)

// fakeSys writes a /sys/block tree: name → files (relative path → content).
func fakeSys(t *testing.T, disks map[string]map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, files := range disks {
		for p, c := range files {
			full := filepath.Join(root, name, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func sysTree(t *testing.T) string {
	return fakeSys(t, map[string]map[string]string{
		"sda":     {"size": "1953525168", "removable": "0", "ro": "0", "device/model": "SAMSUNG MZ7L31T9", "device/serial": "S6ESNE0R1"},
		"sdb":     {"size": "468862128", "removable": "0", "ro": "0", "device/model": "INTEL SSDSC2KB24", "device/serial": "BTYF0001"},
		"sdc":     {"size": "2097152", "removable": "0", "ro": "0", "device/model": "Virtual HDisk0"}, // BMC virtual media
		"sdd":     {"size": "60000000", "removable": "1", "ro": "0", "device/model": "Cruzer"},
		"nvme0n1": {"size": "3750748848", "removable": "0", "ro": "0", "serial": "PHLN0123"},
		"sr0":     {"size": "2097152", "removable": "1"},
		"loop0":   {"size": "1000"},
		"ram0":    {"size": "1000"},
		"dm-0":    {"size": "1000"},
	})
}

func TestListDisks(t *testing.T) {
	disks, err := agent.ListDisks(sysTree(t), "/dev")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	removable := map[string]bool{}
	for _, d := range disks {
		names = append(names, d.Name)
		removable[d.Name] = d.Removable
	}
	if got, want := len(names), 5; got != want {
		t.Fatalf("ListDisks = %v, want nvme0n1 sda sdb sdc sdd", names)
	}
	for name, want := range map[string]bool{"nvme0n1": false, "sda": false, "sdb": false, "sdc": true, "sdd": true} {
		if removable[name] != want {
			t.Errorf("%s removable = %v, want %v", name, removable[name], want)
		}
	}
	if disks[0].Serial != "PHLN0123" || disks[1].Serial != "S6ESNE0R1" || disks[0].Path != "/dev/nvme0n1" {
		t.Errorf("disks[0:2] = %+v", disks[:2])
	}
	if got, want := disks[1].Size, int64(1953525168)*512; got != want {
		t.Errorf("sda size = %d, want %d", got, want)
	}
}

func TestSelectDisk(t *testing.T) {
	disks, err := agent.ListDisks(sysTree(t), "/dev")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		hint, want string
	}{
		{"serial=BTYF0001", "sdb"},
		{"serial=PHLN0123", "nvme0n1"},
		{"size>=200G", "sdb"},   // smallest that fits: 240 GB
		{"size>=500G", "sda"},   // 1 TB
		{"size>=1T", "nvme0n1"}, // 1.9 TB
		{"/dev/sda", "sda"},
		{"serial=NOPE", ""},
		{"size>=10T", ""},
		{"/dev/sdc", ""}, // virtual media is never a target
		{"/dev/sdd", ""}, // removable
		{"/dev/sr0", ""},
		{"", ""}, // three fixed disks: ambiguous
	}
	for _, tt := range tests {
		h, err := agent.ParseDiskHint(tt.hint)
		if err != nil {
			t.Fatalf("ParseDiskHint(%q): %v", tt.hint, err)
		}
		d, err := agent.SelectDisk(disks, h)
		if tt.want == "" {
			if !errors.Is(err, agent.ErrNoDisk) {
				t.Errorf("SelectDisk(%q) = %s, %v; want ErrNoDisk", tt.hint, d.Name, err)
			}
			continue
		}
		if err != nil || d.Name != tt.want {
			t.Errorf("SelectDisk(%q) = %s, %v; want %s", tt.hint, d.Name, err, tt.want)
		}
	}
}

func TestSelectDiskSingle(t *testing.T) {
	root := fakeSys(t, map[string]map[string]string{
		"vda": {"size": "32768", "removable": "0"},
		"sr0": {"size": "2097152", "removable": "1"},
		"sda": {"size": "2097152", "removable": "1"},
	})
	disks, err := agent.ListDisks(root, "/dev")
	if err != nil {
		t.Fatal(err)
	}
	d, err := agent.SelectDisk(disks, agent.DiskHint{})
	if err != nil || d.Path != "/dev/vda" {
		t.Errorf("SelectDisk(empty hint) = %+v, %v; want /dev/vda", d, err)
	}
	if got := agent.Fixed(disks); len(got) != 1 {
		t.Errorf("Fixed = %+v, want only vda", got)
	}
}

func TestParseDiskHintErrors(t *testing.T) {
	for _, h := range []string{"sda", "serial=", "size>=", "size>=10", "size>=-1G", "size>=xG"} {
		if _, err := agent.ParseDiskHint(h); err == nil {
			t.Errorf("ParseDiskHint(%q) = nil error", h)
		}
	}
}
