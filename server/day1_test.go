package server_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
)

// errBody is the admin API's error answer.
type errBody struct{ Error, Field string }

// apiEvents returns host name's events, newest first, as the API sends them.
func (e *env) apiEvents(name string) []map[string]any {
	e.t.Helper()
	var out struct{ Events []map[string]any }
	e.mustDo(200, "GET", "/api/v1/hosts/"+name+"/events", nil, &out)
	return out.Events
}

// addRocky adds only the rocky9 profile (no clean profile).
func (e *env) addRocky() {
	e.t.Helper()
	e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "rocky9",
		"kernel": "https://mirror.example/rocky9/vmlinuz", "initrds": []string{"https://mirror.example/rocky9/initrd.img"},
		"installer": "kickstart"}, nil)
}

func (e *env) addAgentClean() {
	e.t.Helper()
	e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "agent-clean",
		"kernel": "https://10.0.2.100:8443/files/vmlinuz", "initrds": []string{"https://10.0.2.100:8443/files/agent.cpio.gz"},
		"installer": "none", "clean_method": "zero"}, nil)
}

func (e *env) addPlainHost(name, mac, ip, profile string) {
	e.t.Helper()
	e.mustDo(201, "POST", "/api/v1/hosts", map[string]any{"name": name, "macs": []string{mac},
		"ipv4": ip, "gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}, "profile": profile}, nil)
}

// TestCleanNeedsCleanProfile: clean is refused up front while the clean
// profile does not exist, saying which profile and how to create it; the
// host is not flagged and gets no event.
func TestCleanNeedsCleanProfile(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		e.addRocky()
		e.addPlainHost("node01", mac1, "10.0.2.15/24", "rocky9")
		before := len(e.apiEvents("node01"))
		for _, body := range []any{nil, map[string]any{"then_install": true}} {
			var eb errBody
			code := e.do("POST", "/api/v1/hosts/node01/clean", body, &eb)
			if code != 409 || !strings.Contains(eb.Error, `clean profile "agent-clean" does not exist`) ||
				!strings.Contains(eb.Error, "POST /api/v1/profiles") || !strings.Contains(eb.Error, "--clean-profile") {
				t.Errorf("clean without the clean profile = %d %+v, want 409 naming agent-clean and how to create it", code, eb)
			}
		}
		if h := e.host("node01"); h.State != host.StateReady {
			t.Errorf("state after refused clean = %s, want ready", h.State)
		}
		if n := len(e.apiEvents("node01")); n != before {
			t.Errorf("events after refused clean = %d, want %d", n, before)
		}
		// A host with no profile cannot reimage, nor clean then install,
		// in the same words (the one rule).
		e.addAgentClean()
		e.addPlainHost("node02", "52:54:00:00:00:02", "10.0.2.16/24", "")
		for _, p := range []string{"reimage", "clean"} {
			var eb errBody
			code := e.do("POST", "/api/v1/hosts/node02/"+p, map[string]any{"then_install": p == "clean"}, &eb)
			if p == "reimage" {
				code = e.do("POST", "/api/v1/hosts/node02/reimage", nil, &eb)
			}
			if code != 409 || eb.Field != "profile" || !strings.Contains(eb.Error, `host node02 has no profile to install; pass {"profile": …}`) {
				t.Errorf("%s of a host without a profile = %d %+v, want 409 on profile", p, code, eb)
			}
		}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/clean", nil, nil)
	})
}

// TestBootShowsLastError: a boot that cannot be served what the state asks
// for boots the disk, records why as an event and as the host's last_error,
// and the next served boot clears it.
func TestBootShowsLastError(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node01/clean", nil, nil)
		e.mustDo(204, "DELETE", "/api/v1/profiles/agent-clean", nil, nil) // gone after the host was flagged

		code, script := e.boot("node01", tok, mac1)
		if code != 200 || !strings.Contains(script, "exit 1") {
			t.Fatalf("boot without the clean profile = %d\n%s\nwant localboot", code, script)
		}
		var h map[string]any
		e.mustDo(200, "GET", "/api/v1/hosts/node01", nil, &h)
		if le, _ := h["last_error"].(string); h["state"] != "clean" || !strings.Contains(le, `clean profile "agent-clean" does not exist`) {
			t.Errorf("host after the failed boot: state %v, last_error %q; want clean and the missing profile", h["state"], le)
		}
		if ev := e.apiEvents("node01")[0]; ev["event"] != "render-failed" || !strings.Contains(ev["reason"].(string), "agent-clean") {
			t.Errorf("newest event = %v, want render-failed naming agent-clean", ev)
		}

		e.addAgentClean()
		if code, script := e.boot("node01", tok, mac1); code != 200 || !strings.Contains(script, "bootpilot.task=clean") {
			t.Fatalf("boot with the clean profile back = %d\n%s", code, script)
		}
		h = nil
		e.mustDo(200, "GET", "/api/v1/hosts/node01", nil, &h)
		if _, ok := h["last_error"]; h["state"] != "cleaning" || ok {
			t.Errorf("host after a served clean: state %v, last_error %v; want cleaning and none", h["state"], h["last_error"])
		}
	})
}

// TestLifecycleMessages: refused actions say what to do; a repeated
// reimage is a no-op; cancel, retry and hold record their reason.
func TestLifecycleMessages(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")

		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"reason": "new kernel"}, nil)
		n := len(e.apiEvents("node01"))
		var h host.Host
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, &h)
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"profile": "rocky9", "reason": "again"}, nil)
		if got := len(e.apiEvents("node01")); got != n || h.State != host.StateReimage {
			t.Errorf("reimage of a host flagged for reimage: %d events (want %d), state %s", got, n, h.State)
		}
		var eb errBody
		if code := e.do("POST", "/api/v1/hosts/node01/reimage", map[string]any{"profile": "agent-clean"}, &eb); code != 409 ||
			eb.Error != "node01 is flagged for reimage; cancel it first to change its profile or options" {
			t.Errorf("reimage with another profile = %d %+v", code, eb)
		}
		if code, _ := e.boot("node01", tok, mac1); code != 200 {
			t.Fatalf("boot: %d", code)
		}
		if code := e.do("POST", "/api/v1/hosts/node01/reimage", nil, &eb); code != 409 ||
			eb.Error != "node01 is installing (attempt 1); cancel it first" {
			t.Errorf("reimage while installing = %d %+v, want 409 saying to cancel", code, eb)
		}
		if code := e.do("POST", "/api/v1/hosts/node01/release", nil, &eb); code != 409 ||
			eb.Error != "node01 is installing (attempt 1); cancel it first" {
			t.Errorf("release while installing = %d %+v", code, eb)
		}
		if code := e.do("POST", "/api/v1/hosts/node01/hold", map[string]any{"profile": "rocky9"}, &eb); code != 400 || eb.Field != "profile" {
			t.Errorf("hold with a profile = %d %+v, want 400 on profile", code, eb)
		}

		e.mustDo(200, "POST", "/api/v1/hosts/node01/cancel", map[string]any{"reason": "wrong disk layout"}, nil)
		e.mustDo(200, "POST", "/api/v1/hosts/node01/hold", map[string]any{"reason": "rack move"}, nil)
		e.mustDo(200, "POST", "/api/v1/hosts/node01/cancel", nil, nil)
		if _, err := e.db.UpdateHost(t.Context(), "node01", func(h *host.Host) ([]host.Record, error) {
			h.State = host.StateFailed
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/retry", map[string]any{"reason": "disk replaced"}, nil)
		got := map[string]string{}
		for _, ev := range e.apiEvents("node01") {
			if r, ok := ev["reason"].(string); ok && got[ev["event"].(string)] == "" {
				got[ev["event"].(string)] = r
			}
		}
		for ev, want := range map[string]string{"cancel": "wrong disk layout", "hold": "rack move", "retry": "disk replaced"} {
			if got[ev] != want {
				t.Errorf("%s event reason = %q, want %q (all: %v)", ev, got[ev], want, got)
			}
		}
	})
}

// TestDuplicatesNameOwner: a taken name, MAC or address is a 409 that names
// the host that has it and the field, on create and on PATCH.
func TestDuplicatesNameOwner(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		e.addRocky()
		e.mustDo(201, "POST", "/api/v1/hosts", map[string]any{"name": "node01", "macs": []string{mac1}, "ipv4": "10.0.2.15/24",
			"gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}, "ipv6": "2001:db8::15/64"}, nil)
		e.addPlainHost("node02", "52:54:00:00:00:02", "10.0.2.16/24", "rocky9")
		base := func() map[string]any {
			return map[string]any{"name": "node03", "macs": []string{"52:54:00:00:00:03"}, "ipv4": "10.0.2.17/24",
				"gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}}
		}
		tests := []struct {
			key   string
			value any
			field string
			want  string
		}{
			{"name", "node01", "name", "host node01 already exists"},
			{"macs", []string{"52-54-00-12-34-56"}, "macs", "MAC 52:54:00:12:34:56 already belongs to host node01"},
			{"ipv4", "10.0.2.15/16", "ipv4", "IPv4 address 10.0.2.15 is already used by host node01"},
			{"ipv6", "2001:db8::15/48", "ipv6", "IPv6 address 2001:db8::15 is already used by host node01"},
		}
		for _, tt := range tests {
			m := base()
			m[tt.key] = tt.value
			if tt.key == "ipv4" {
				m["gateway"] = "10.0.0.1"
			}
			var eb errBody
			if code := e.do("POST", "/api/v1/hosts", m, &eb); code != 409 || eb.Error != tt.want || eb.Field != tt.field {
				t.Errorf("POST with %s of node01 = %d %+v, want 409 %q on %s", tt.key, code, eb, tt.want, tt.field)
			}
			if tt.key == "name" {
				continue
			}
			patch := map[string]any{tt.key: tt.value}
			if tt.key == "ipv4" {
				patch["gateway"] = "10.0.0.1"
			}
			if code := e.do("PATCH", "/api/v1/hosts/node02", patch, &eb); code != 409 || eb.Error != tt.want || eb.Field != tt.field {
				t.Errorf("PATCH node02 with %s of node01 = %d %+v, want 409 %q", tt.key, code, eb, tt.want)
			}
		}
		if code := e.do("GET", "/api/v1/hosts/node03", nil, nil); code != 404 {
			t.Errorf("node03 after refused creates: %d, want 404", code)
		}
	})
}

// TestEventShape: every event has one "event" field (no "action"), and an
// update names only the fields that changed, never their values.
func TestEventShape(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.addHost("node01", mac1, "10.0.2.15/24")
	hash := strings.Repeat("c", 64)
	e.mustDo(200, "PATCH", "/api/v1/hosts/node01", map[string]any{"vlan": 42, "dns": []string{"10.0.2.3"},
		"ipv4": "10.0.2.15/24", "token_hash": hash}, nil)
	e.mustDo(200, "PATCH", "/api/v1/hosts/node01", map[string]any{"vlan": 42}, nil) // nothing changes: no event
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)

	var raw json.RawMessage
	e.mustDo(200, "GET", "/api/v1/hosts/node01/events", nil, &raw)
	if strings.Contains(string(raw), `"action"`) || strings.Contains(string(raw), hash) {
		t.Errorf("events = %s, want no action field and no token hash", raw)
	}
	evs := e.apiEvents("node01")
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev["event"].(string))
	}
	if want := []string{"reimage", "update", "token-rotate", "create"}; !slices.Equal(kinds, want) {
		t.Fatalf("events = %v, want %v", kinds, want)
	}
	fields, _ := json.Marshal(evs[1]["fields"])
	if string(fields) != `["token_hash","vlan"]` {
		t.Errorf("update fields = %s, want [token_hash vlan]", fields)
	}
	if evs[0]["from"] != "ready" || evs[0]["to"] != "reimage" {
		t.Errorf("reimage event = %v, want from ready to reimage", evs[0])
	}
}

// TestBMCFailureAudited: a Redfish step that fails is a redfish-failed
// event naming the step, without credentials or signed URLs.
func TestBMCFailureAudited(t *testing.T) {
	e := newRFEnv(t, "sqlite", 64<<10)
	bmc := newSimBMC(t, bmcsim.Quirks{Flaky5xx: 1000, FlakyStatus: 500, FlakyPath: "InsertMedia"}, e.client)
	e.addHost("node01", mac1, "10.0.2.15/24")
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": bmcPass, "ca_pem": bmc.caPEM()}, nil)
	if code, body := e.raw("POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "redfish"}); code != 502 {
		t.Fatalf("reimage via a failing BMC = %d %s, want 502", code, body)
	}
	bmc.srv.Close()
	if code, _ := e.raw("POST", "/api/v1/hosts/node01/media/eject", nil); code != 502 {
		t.Errorf("eject with the BMC gone = %d, want 502", code)
	}
	var failed []string
	for _, ev := range e.apiEvents("node01") {
		if ev["event"] == "redfish-failed" {
			failed = append(failed, ev["reason"].(string))
		}
	}
	if len(failed) != 2 || !strings.HasPrefix(failed[1], "insert virtual media failed: ") ||
		!strings.Contains(failed[1], "HTTP 500") || !strings.HasPrefix(failed[0], "connect to the BMC failed: ") {
		t.Fatalf("redfish-failed events = %q, want insert, then connect (the BMC is gone)", failed)
	}
	for _, r := range failed {
		for _, secret := range []string{bmcPass, "sig=", "exp="} {
			if strings.Contains(r, secret) {
				t.Errorf("event %q contains %q", r, secret)
			}
		}
	}
}
