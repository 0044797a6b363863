package server_test

import (
	"net/http"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

func TestAdminAuth(t *testing.T) {
	e := newEnv(t, "sqlite")
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", "Basic YWRtaW46eA=="} {
		req, _ := http.NewRequest("GET", e.url+"/api/v1/hosts", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := e.get(e.url + p); code != 200 {
			t.Errorf("GET %s = %d, want 200", p, code)
		}
	}
}

func TestHostAPI(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		e.addProfiles()
		valid := func() map[string]any {
			return map[string]any{"name": "node01", "macs": []string{"52-54-00-12-34-56"}, "ipv4": "10.0.2.15/24",
				"gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}, "profile": "rocky9"}
		}
		bad := []struct {
			field string
			set   func(m map[string]any)
		}{
			{"name", func(m map[string]any) { m["name"] = "Node 01" }},
			{"macs", func(m map[string]any) { m["macs"] = []string{"52:54:00:12:34"} }},
			{"macs", func(m map[string]any) { m["macs"] = []string{} }},
			{"ipv4", func(m map[string]any) { m["ipv4"] = "10.0.2.15" }},
			{"gateway", func(m map[string]any) { m["gateway"] = "10.0.3.1" }},
			{"dns", func(m map[string]any) { m["dns"] = []string{"dns.example"} }},
			{"vlan", func(m map[string]any) { m["vlan"] = 5000 }},
			{"profile", func(m map[string]any) { m["profile"] = "nope" }},
			{"state", func(m map[string]any) { m["state"] = "installing" }},
			{"attempt", func(m map[string]any) { m["attempt"] = 2 }},
			{"token_hash", func(m map[string]any) { m["token_hash"] = "abc" }},
			{"body", func(m map[string]any) { m["ipv6"] = 7 }},
		}
		for _, b := range bad {
			m := valid()
			b.set(m)
			var eb struct{ Error, Field string }
			code := e.do("POST", "/api/v1/hosts", m, &eb)
			if code != 400 || eb.Error == "" || (b.field != "body" && eb.Field != b.field) {
				t.Errorf("bad %s: %d %+v, want 400 naming %q", b.field, code, eb, b.field)
			}
		}
		if code := e.do("POST", "/api/v1/hosts", "{not json", nil); code != 400 {
			t.Errorf("malformed JSON: %d", code)
		}
		var h host.Host
		e.mustDo(201, "POST", "/api/v1/hosts", valid(), &h)
		if h.MACs[0] != mac1 || h.State != host.StateReady || h.Hostname != "node01" {
			t.Errorf("created host = %+v", h)
		}
		if code := e.do("POST", "/api/v1/hosts", valid(), nil); code != 409 {
			t.Errorf("duplicate name: %d, want 409", code)
		}
		m := valid()
		m["name"] = "node02"
		m["ipv4"] = "10.0.2.16/24"
		if code := e.do("POST", "/api/v1/hosts", m, nil); code != 409 {
			t.Errorf("duplicate MAC: %d, want 409", code)
		}
		for _, p := range []string{"/api/v1/hosts/ghost", "/api/v1/hosts/ghost/events"} {
			if code := e.do("GET", p, nil, nil); code != 404 {
				t.Errorf("GET %s = %d, want 404", p, code)
			}
		}
		if code := e.do("POST", "/api/v1/hosts/ghost/reimage", nil, nil); code != 404 {
			t.Errorf("reimage unknown host: %d, want 404", code)
		}
		// Conflicting transitions.
		for _, p := range []string{"cancel", "retry", "release", "adopt"} {
			if code := e.do("POST", "/api/v1/hosts/node01/"+p, nil, nil); code != 409 {
				t.Errorf("%s on a ready host: %d, want 409", p, code)
			}
		}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"reason": "new kernel"}, nil)
		if code := e.do("POST", "/api/v1/hosts/node01/reimage", nil, nil); code != 200 {
			t.Errorf("reimage twice: %d, want 200 (a no-op)", code)
		}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/cancel", nil, nil)
		if code := e.do("POST", "/api/v1/hosts/node01/reimage", map[string]any{"profile": "nope"}, nil); code != 400 {
			t.Errorf("reimage with unknown profile: %d, want 400", code)
		}
		if code := e.do("POST", "/api/v1/hosts/node01/reimage", map[string]any{"bogus": 1}, nil); code != 400 {
			t.Errorf("unknown action field: %d, want 400", code)
		}
		// PATCH changes only what it names and re-validates.
		e.mustDo(200, "PATCH", "/api/v1/hosts/node01", map[string]any{"vlan": 42, "dns": []string{"1.1.1.1", "2001:db8::53"}}, &h)
		if h.VLAN != 42 || len(h.DNS) != 2 || h.IPv4 != "10.0.2.15/24" {
			t.Errorf("patched host = %+v", h)
		}
		if code := e.do("PATCH", "/api/v1/hosts/node01", map[string]any{"state": "ready"}, nil); code != 400 {
			t.Errorf("patch state: %d, want 400", code)
		}
		if code := e.do("PATCH", "/api/v1/hosts/node01", map[string]any{"gateway": "192.168.1.1"}, nil); code != 400 {
			t.Errorf("patch gateway outside subnet: %d, want 400", code)
		}
		var list struct{ Hosts []host.Host }
		e.mustDo(200, "GET", "/api/v1/hosts?state=ready", nil, &list)
		if len(list.Hosts) != 1 {
			t.Errorf("list ready = %d hosts, want 1", len(list.Hosts))
		}
		if code := e.do("GET", "/api/v1/hosts?state=bogus", nil, nil); code != 400 {
			t.Errorf("list bad state: %d", code)
		}
		// A profile in use cannot go; events survive the host.
		if code := e.do("DELETE", "/api/v1/profiles/rocky9", nil, nil); code != 409 {
			t.Errorf("delete used profile: %d, want 409", code)
		}
		e.mustDo(204, "DELETE", "/api/v1/hosts/node01", nil, nil)
		if code := e.do("GET", "/api/v1/hosts/node01", nil, nil); code != 404 {
			t.Errorf("deleted host: %d", code)
		}
		e.mustDo(204, "DELETE", "/api/v1/profiles/rocky9", nil, nil)
	})
}

func TestProfileAPI(t *testing.T) {
	e := newEnv(t, "sqlite")
	ok := map[string]any{"name": "deb12", "kernel": "https://deb.example/linux", "initrds": []string{"https://deb.example/initrd.gz"},
		"installer": "preseed", "cmdline": "console=ttyS0"}
	e.mustDo(201, "POST", "/api/v1/profiles", ok, nil)
	for field, v := range map[string]any{
		"kernel":    "ftp://x/linux",
		"cmdline":   "console=ttyS0 || shell",
		"installer": "windows",
		"config":    "{{ .Nope }",
	} {
		m := map[string]any{"name": "p-" + field, "kernel": "https://deb.example/linux", "installer": "preseed"}
		m[field] = v
		var eb struct{ Error, Field string }
		if code := e.do("POST", "/api/v1/profiles", m, &eb); code != 400 || eb.Field != field {
			t.Errorf("bad %s: %d %+v, want 400 naming it", field, code, eb)
		}
	}
	if code := e.do("PATCH", "/api/v1/profiles/deb12", map[string]any{"name": "other"}, nil); code != 400 {
		t.Errorf("rename: %d, want 400", code)
	}
	var p host.Profile
	e.mustDo(200, "PATCH", "/api/v1/profiles/deb12", map[string]any{"cmdline": "console=tty0 quiet"}, &p)
	if p.Cmdline != "console=tty0 quiet" || p.Installer != "preseed" {
		t.Errorf("patched profile = %+v", p)
	}
	var list struct{ Profiles []host.Profile }
	e.mustDo(200, "GET", "/api/v1/profiles", nil, &list)
	if len(list.Profiles) != 1 {
		t.Errorf("profiles = %d, want 1", len(list.Profiles))
	}
	if code := e.do("GET", "/api/v1/profiles/ghost", nil, nil); code != 404 {
		t.Errorf("unknown profile: %d", code)
	}
}
