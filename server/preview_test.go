package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/server"
)

// TestPreviewReimage: the preview of a host flagged for reimage shows the
// install script and kickstart of attempt 1 with a placeholder callback
// token, and changes nothing: state, attempt, version, callback hash and
// events stay as they were, and a real boot afterwards serves attempt 1.
func TestPreviewReimage(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)
		before := e.host("node01")
		evs, err := e.db.Events(context.Background(), "node01", 0)
		if err != nil {
			t.Fatal(err)
		}

		var p host.Preview
		for range 2 { // twice: the second must see the same host
			e.mustDo(200, "GET", "/api/v1/hosts/node01/preview", nil, &p)
		}
		cb := e.url + "/boot/v1/callback/node01/" + host.PreviewCallbackToken
		if p.Host != "node01" || p.State != host.StateReimage || p.Action != host.ActionInstall || p.Attempt != 1 || p.Error != "" {
			t.Errorf("preview = host %q state %q action %q attempt %d error %q, want node01 reimage install 1 no error",
				p.Host, p.State, p.Action, p.Attempt, p.Error)
		}
		for _, want := range []string{"#!ipxe", "kernel --timeout", "ip=10.0.2.15::10.0.2.2:255.255.255.0:node01", "bootpilot.callback=" + cb} {
			if !strings.Contains(p.Script, want) {
				t.Errorf("preview script lacks %q:\n%s", want, p.Script)
			}
		}
		if ks := p.Configs["ks.cfg"]; !strings.Contains(ks, cb) || len(p.Configs) != 1 {
			t.Errorf("preview configs = %v, want ks.cfg calling back to %s", p.Configs, cb)
		}

		after := e.host("node01")
		if after.State != before.State || after.Attempt != before.Attempt || after.Version != before.Version ||
			after.CallbackHash != before.CallbackHash || !after.Deadline.Equal(before.Deadline) || after.TokenHash != before.TokenHash {
			t.Errorf("preview changed the host: before %+v, after %+v", before, after)
		}
		evs2, err := e.db.Events(context.Background(), "node01", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs2) != len(evs) {
			t.Errorf("preview added %d events", len(evs2)-len(evs))
		}

		// The real boot is attempt 1; the preview then shows attempt 2,
		// still without the real callback token.
		code, script := e.boot("node01", tok, mac1)
		if code != 200 || !strings.Contains(script, "attempt 1") {
			t.Fatalf("boot after preview = %d:\n%s", code, script)
		}
		real := callbackURL(t, script)
		real = real[strings.LastIndex(real, "/")+1:]
		e.mustDo(200, "GET", "/api/v1/hosts/node01/preview", nil, &p)
		if p.State != host.StateInstalling || p.Attempt != 2 || strings.Contains(p.Script+p.Configs["ks.cfg"], real) || strings.Contains(p.Script, tok) {
			t.Errorf("preview while installing: state %q attempt %d, or it shows a real token:\n%s", p.State, p.Attempt, p.Script)
		}
		if code, _ := e.callback(callbackURL(t, script), `{"event":"installed"}`); code != 200 {
			t.Errorf("callback of attempt 1 after a preview = %d, want 200", code)
		}
	})
}

// TestPreviewStates: every kind of next boot previews, and one that cannot
// be rendered says why.
func TestPreviewStates(t *testing.T) {
	e := newEnv(t, "sqlite", func(o *server.Options) { o.CleanProfile = "no-such-clean" })
	e.addHost("node01", mac1, "10.0.2.15/24")
	cases := []struct {
		action     string // lifecycle action first, "" for none
		want       host.Action
		inScript   string
		errorNames string
	}{
		{"", host.ActionLocalboot, "exit 1", ""},
		{"hold", host.ActionHold, "sleep 60", ""},
		{"clean", host.ActionClean, "", "no-such-clean"},
	}
	for _, tc := range cases {
		if tc.action != "" {
			e.do("POST", "/api/v1/hosts/node01/cancel", nil, nil) // back to ready, if not already
			if tc.action == "clean" {
				// The API refuses a clean without the clean profile: flag it
				// in the database, as if the profile went away after.
				if _, err := e.db.UpdateHost(t.Context(), "node01", func(h *host.Host) ([]host.Record, error) {
					h.State = host.StateClean
					return nil, nil
				}); err != nil {
					t.Fatal(err)
				}
			} else {
				e.mustDo(200, "POST", "/api/v1/hosts/node01/"+tc.action, nil, nil)
			}
		}
		var p host.Preview
		e.mustDo(200, "GET", "/api/v1/hosts/node01/preview", nil, &p)
		if p.Action != tc.want || !strings.Contains(p.Script, tc.inScript) || !strings.Contains(p.Error, tc.errorNames) ||
			(tc.errorNames == "") != (p.Error == "") {
			t.Errorf("after %q: preview action %q error %q script:\n%s\nwant action %q, script with %q, error naming %q",
				tc.action, p.Action, p.Error, p.Script, tc.want, tc.inScript, tc.errorNames)
		}
	}
	if code := e.do("GET", "/api/v1/hosts/nobody/preview", nil, nil); code != 404 {
		t.Errorf("preview of an unknown host = %d, want 404", code)
	}
}
