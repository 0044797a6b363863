package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

// TestHostPreviewCLI: `host preview` shows the install script and kickstart
// of the next boot with the placeholder callback token, in text and JSON,
// and leaves the host and its events alone; a boot that cannot be rendered
// fails the command with the reason shown.
func TestHostPreviewCLI(t *testing.T) {
	url, _ := realServer(t, "sqlite")
	quickStart(t)
	before := hostState(t, "node01")
	events := cli(t, "host", "events", "node01")

	out := cli(t, "host", "preview", "node01")
	cb := "bootpilot.callback=" + url + "/boot/v1/callback/node01/" + host.PreviewCallbackToken
	for _, want := range []string{"state:", "reimage", "action:", "install", "attempt:", "--- script ---", "#!ipxe", cb, "--- ks.cfg ---", "%post"} {
		if !strings.Contains(out, want) {
			t.Errorf("host preview lacks %q:\n%s", want, out)
		}
	}
	var p host.Preview
	if err := json.Unmarshal([]byte(cli(t, "host", "preview", "node01", "-o", "json")), &p); err != nil {
		t.Fatal(err)
	}
	if p.Action != host.ActionInstall || p.Attempt != 1 || !strings.Contains(p.Script, cb) || p.Configs["ks.cfg"] == "" {
		t.Errorf("host preview -o json = %+v", p)
	}
	after := hostState(t, "node01")
	if after.State != before.State || after.Attempt != before.Attempt || after.Version != before.Version {
		t.Errorf("preview changed the host: %s/%d/v%d → %s/%d/v%d", before.State, before.Attempt, before.Version, after.State, after.Attempt, after.Version)
	}
	if got := cli(t, "host", "events", "node01"); got != events {
		t.Errorf("preview added events:\n%s\nwas:\n%s", got, events)
	}

	// A profile config that renders for the sample data (two DNS servers)
	// but not for this host (one): the preview says why, and fails.
	tmpl := filepath.Join(t.TempDir(), "ks.tmpl")
	if err := os.WriteFile(tmpl, []byte("network --nameserver={{index .DNS 1}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "profile", "add", "broken", "--installer", "kickstart", "--config-file", tmpl,
		"--kernel", "https://mirror.example/rocky9/vmlinuz", "--initrd", "https://mirror.example/rocky9/initrd.img")
	cli(t, "host", "add", "node02", "--mac", "52:54:00:12:34:57", "--ipv4", "10.0.2.16/24",
		"--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--profile", "broken")
	cli(t, "host", "reimage", "node02")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"host", "preview", "node02"}, &stdout, &stderr)
	if err == nil || !strings.Contains(stdout.String(), "error:") || !strings.Contains(stdout.String(), "index out of range") {
		t.Errorf("preview of an unrenderable install = %v:\n%s", err, stdout.String())
	}
}
