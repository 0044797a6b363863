package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/version"
)

func TestVersion(t *testing.T) {
	out := cliMustRun(t, "version")
	if want := "bootpilot " + version.Get().String() + "\n"; out != want {
		t.Errorf("version = %q, want %q", out, want)
	}
	out = cliMustRun(t, "version", "-o", "json")
	var info version.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil || info != version.Get() || info.Version == "" {
		t.Errorf("version -o json = %s (%v), want %+v", out, err, version.Get())
	}
}

func TestVersionRemote(t *testing.T) {
	s, _ := cliFake(t)
	out := cliMustRun(t, "version", "--remote")
	if !strings.Contains(out, "server: bootpilot v9.9.9-fake (commit abc123) at "+s.URL+"\n") {
		t.Errorf("version --remote = %q", out)
	}
	if r := s.LastRequest(); r.Path != "/api/v1/version" {
		t.Errorf("version --remote asked %s", r.Path)
	}
}
