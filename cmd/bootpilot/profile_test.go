package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

func TestProfileAddFlags(t *testing.T) {
	s, _ := cliFake(t)
	cfg := filepath.Join(t.TempDir(), "ks.cfg")
	if err := os.WriteFile(cfg, []byte("text\nreboot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := cliMustRun(t, "profile", "add", "rocky9", "--kernel", "https://m.example/vmlinuz",
		"--initrd", "https://m.example/initrd.img", "--initrd", "https://m.example/extra.img",
		"--cmdline", "inst.repo=https://m.example/rocky9 console=ttyS0", "--installer", "kickstart",
		"--config-file", cfg)
	for _, want := range []string{"Name:       rocky9\n", "Installer:  kickstart\n", "Initrd 2:   https://m.example/extra.img\n",
		"Config:     custom template below\n", "\ntext\nreboot\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("profile add output lacks %q:\n%s", want, out)
		}
	}
	var sent host.Profile
	if err := json.Unmarshal(s.LastRequest().Body, &sent); err != nil {
		t.Fatal(err)
	}
	want := host.Profile{Name: "rocky9", Kernel: "https://m.example/vmlinuz",
		Initrds:   []string{"https://m.example/initrd.img", "https://m.example/extra.img"},
		Cmdline:   "inst.repo=https://m.example/rocky9 console=ttyS0",
		Installer: host.InstallerKickstart, Config: "text\nreboot\n"}
	if !reflect.DeepEqual(sent, want) {
		t.Errorf("profile add sent %+v, want %+v", sent, want)
	}

	if _, _, err := cliRun(t, "profile", "add", "x", "--installer", "none"); err == nil || !strings.Contains(err.Error(), "--kernel is required") {
		t.Errorf("profile add without --kernel: err = %v", err)
	}
	var ve *host.ValidationError
	_, _, err := cliRun(t, "profile", "add", "evil", "--kernel", "https://m.example/k", "--installer", "none",
		"--cmdline", "a ${x}")
	if !errors.As(err, &ve) || ve.Field != "cmdline" {
		t.Errorf("profile add with ${ in cmdline: err = %v, want ValidationError on cmdline", err)
	}
	if _, _, err := cliRun(t, "profile", "add", "rocky9", "--kernel", "https://m.example/k", "--installer", "none"); !errors.Is(err, host.ErrConflict) {
		t.Errorf("profile add twice: err = %v, want ErrConflict", err)
	}
}

func TestProfileAddFile(t *testing.T) {
	s, _ := cliFake(t)
	file := filepath.Join(t.TempDir(), "p.json")
	body := `{"name":"img","kernel":"https://m.example/agent-vmlinuz","initrds":["https://m.example/agent.img"],
	  "installer":"image","image":"https://m.example/disk.raw.zst","image_sha256":"` + strings.Repeat("ab", 32) + `",
	  "target_disk":"size>=100G"}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out := cliMustRun(t, "profile", "add", "img2", "--file", file, "--target-disk", "/dev/vda", "-o", "json")
	var got host.Profile
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "img2" || got.TargetDisk != "/dev/vda" || got.Installer != host.InstallerImage || got.Image != "https://m.example/disk.raw.zst" {
		t.Errorf("profile add --file with overrides = %+v", got)
	}
	if err := os.WriteFile(file, []byte(`{"name":"x","kernal":"typo"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cliRun(t, "profile", "add", "--file", file); err == nil || !strings.Contains(err.Error(), "kernal") {
		t.Errorf("profile add --file with an unknown field: err = %v, want it named", err)
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestProfileListShowDelete(t *testing.T) {
	s, _ := cliFake(t)
	for _, name := range []string{"deb12", "rocky9"} {
		cliMustRun(t, "profile", "add", name, "--kernel", "https://m.example/"+name+"/k", "--installer", "none")
	}
	out := cliMustRun(t, "profile", "list")
	want := "" +
		"NAME    INSTALLER  KERNEL                      INITRDS  UPDATED\n" +
		"deb12   none       https://m.example/deb12/k   0        2026-11-22T09:00:00Z\n" +
		"rocky9  none       https://m.example/rocky9/k  0        2026-11-22T09:00:00Z\n"
	if out != want {
		t.Errorf("profile list =\n%s\nwant\n%s", out, want)
	}
	out = cliMustRun(t, "profile", "show", "deb12", "-o", "json")
	var p host.Profile
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Kernel != "https://m.example/deb12/k" {
		t.Errorf("profile show -o json = %s (%v)", out, err)
	}
	if _, _, err := cliRun(t, "profile", "delete", "deb12"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("profile delete without --yes: err = %v", err)
	}
	if out := cliMustRun(t, "profile", "delete", "deb12", "--yes"); out != "deleted profile deb12\n" {
		t.Errorf("profile delete = %q", out)
	}
	if r := s.LastRequest(); r.Method != "DELETE" || r.Path != "/api/v1/profiles/deb12" {
		t.Errorf("profile delete sent %s %s", r.Method, r.Path)
	}
	if _, _, err := cliRun(t, "profile", "show", "deb12"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("profile show after delete: err = %v, want ErrNotFound", err)
	}
	out = cliMustRun(t, "profile", "list", "-o", "json")
	var list struct {
		Profiles []host.Profile `json:"profiles"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Profiles) != 1 || list.Profiles[0].Name != "rocky9" {
		t.Errorf("profile list -o json = %s (%v)", out, err)
	}
}

// TestProfileEdit checks that edit sends exactly the flags given.
func TestProfileEdit(t *testing.T) {
	s, _ := cliFake(t)
	cliMustRun(t, "profile", "add", "deb12", "--kernel", "https://m.example/k", "--installer", "preseed",
		"--initrd", "https://m.example/i1")
	tests := []struct {
		args []string
		body string
	}{
		{[]string{"--cmdline", "console=ttyS0"}, `{"cmdline":"console=ttyS0"}`},
		{[]string{"--initrd", "https://m.example/a", "--initrd", "https://m.example/b", "--flip-on-serve"},
			`{"flip_on_serve":true,"initrds":["https://m.example/a","https://m.example/b"]}`},
		{[]string{"--config-file", ""}, `{"config":""}`},
	}
	for _, tt := range tests {
		cliMustRun(t, append([]string{"profile", "edit", "deb12"}, tt.args...)...)
		if r := s.LastRequest(); r.Method != "PATCH" || string(r.Body) != tt.body {
			t.Errorf("profile edit %v sent %s %s, want PATCH %s", tt.args, r.Method, r.Body, tt.body)
		}
	}
	out := cliMustRun(t, "profile", "show", "deb12", "-o", "json")
	var p host.Profile
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Cmdline != "console=ttyS0" || len(p.Initrds) != 2 || !p.FlipOnServe || p.Installer != host.InstallerPreseed {
		t.Errorf("profile after edits = %+v", p)
	}
	if _, _, err := cliRun(t, "profile", "edit", "deb12"); err == nil || !strings.Contains(err.Error(), "nothing to change") {
		t.Errorf("profile edit without flags: err = %v", err)
	}
	if _, _, err := cliRun(t, "profile", "edit", "nope", "--cmdline", "x"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("profile edit nope: err = %v, want ErrNotFound", err)
	}
}
