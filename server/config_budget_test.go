package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

// hostileConfigs keep a server busy or make it allocate without bound.
var hostileConfigs = map[string]string{
	"nested ranges":   `{{range 10000}}{{range 10000}}{{end}}{{end}}`,
	"printf doubling": `{{$x := "0123456789abcdef"}}{{range 22}}{{$x = printf "%s%s" $x $x}}{{end}}{{len $x}}`,
}

// TestProfileHostileConfig: creating or changing a profile with a hostile
// config is refused with a 400 naming config.
func TestProfileHostileConfig(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.addProfiles()
	for name, src := range hostileConfigs {
		var eb struct{ Error, Field string }
		if code := e.do("POST", "/api/v1/profiles", map[string]any{"name": "hostile",
			"kernel": "https://mirror.example/rocky9/vmlinuz", "installer": "kickstart", "config": src}, &eb); code != 400 || eb.Field != "config" {
			t.Errorf("POST profile with %s: %d %+v, want 400 naming config", name, code, eb)
		}
		eb.Field = ""
		if code := e.do("PATCH", "/api/v1/profiles/rocky9", map[string]any{"config": src}, &eb); code != 400 || eb.Field != "config" {
			t.Errorf("PATCH profile with %s: %d %+v, want 400 naming config", name, code, eb)
		}
	}
	var p host.Profile
	e.mustDo(200, "GET", "/api/v1/profiles/rocky9", nil, &p)
	if p.Config != "" {
		t.Errorf("rocky9 config = %q after refused changes, want none", p.Config)
	}
}

// TestBootHostileConfig: a hostile config that reached the database anyway
// sends the host to its disk with an audit event instead of serving an
// install whose config cannot be rendered, and the config URL of an install
// already running answers an error with an audit event.
func TestBootHostileConfig(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		ctx := context.Background()
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		setConfig := func(src string) {
			t.Helper()
			if _, err := e.db.UpdateProfile(ctx, "rocky9", func(p *host.Profile) error { p.Config = src; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		renderFailures := func() []host.Record {
			t.Helper()
			var evs struct{ Events []host.Record }
			e.mustDo(200, "GET", "/api/v1/hosts/node01/events", nil, &evs)
			var out []host.Record
			for _, r := range evs.Events {
				if r.Action == "render-failed" {
					out = append(out, r)
				}
			}
			return out
		}

		setConfig(hostileConfigs["nested ranges"])
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)
		if code, body := e.boot("node01", tok, mac1); code != 200 || body != bootscripts.Localboot {
			t.Fatalf("boot with a hostile config: %d\n%s\nwant the localboot script", code, body)
		}
		if h := e.host("node01"); h.State != host.StateReimage || h.Attempt != 0 {
			t.Errorf("after the refused install: %s/%d, want reimage/0 (nothing served)", h.State, h.Attempt)
		}
		recs := renderFailures()
		if len(recs) != 1 || recs[0].Actor != "host:"+recs[0].Host || !strings.Contains(recs[0].Reason, "render budget") || recs[0].RequestID == "" {
			t.Fatalf("render-failed events = %+v, want one by boot naming the render budget", recs)
		}

		// Fixed: the next boot installs; then the config turns hostile
		// under the running install.
		setConfig("network --ip={{.IPv4}}\n")
		_, script := e.boot("node01", tok, mac1)
		if !strings.Contains(script, "kernel ") {
			t.Fatalf("boot with a good config: want an install script, got\n%s", script)
		}
		ks := strings.Replace(callbackURL(t, script), "/callback/", "/config/", 1) + "/ks.cfg"
		if code, body := e.get(ks); code != 200 || body != "network --ip=10.0.2.15\n" {
			t.Fatalf("ks.cfg: %d %q", code, body)
		}
		setConfig(hostileConfigs["nested ranges"])
		if code, body := e.get(ks); code != 500 || strings.Contains(body, "range") {
			t.Errorf("ks.cfg from a hostile config: %d %q, want a 500 without details", code, body)
		}
		recs = renderFailures()
		if len(recs) != 2 || !strings.Contains(recs[0].Reason, "ks.cfg") || !strings.Contains(recs[0].Reason, "render budget") {
			t.Errorf("render-failed events = %+v, want a second one naming ks.cfg and the render budget", recs)
		}
		for _, r := range recs {
			if strings.Contains(r.Reason, tok) || strings.Contains(r.Reason, strings.TrimPrefix(ks, e.url)) {
				t.Errorf("event reason %q holds a secret", r.Reason)
			}
		}
	})
}
