package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

// hostile are bytes a booting host or an installer must not get onto an
// operator's terminal, as they appear in the API's JSON (escaped or raw).
var hostile = []string{"\x1b", `\u001b`, "\x07", `\u0007`, "\r", `\r`, "\u009b", `\u009b`, "\u202e", `\u202e`, `\u202E`}

// TestSanitizeBootText boots a host whose inventory carries an OSC 52
// clipboard write, a C1 CSI and a right-to-left override, then reports
// progress and success with a clear-screen sequence: the API answers with
// the text cleaned, never the raw controls.
func TestSanitizeBootText(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)

		q := url.Values{"mac": {mac1}, "serial": {"\x1b]52;c;cm0gLXJmIH4K\x07"}, "uuid": {"\u202e1234"},
			"asset": {"\u009b2J"}, "arch": {"x86_64\rarm64"}, "platform": {"efi\xff"}}
		req, _ := http.NewRequest("GET", e.url+"/boot/v1/script?"+q.Encode(), nil)
		req.SetBasicAuth("node01", tok)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		script, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("boot: %d %s", resp.StatusCode, script)
		}
		cb := callbackURL(t, string(script))
		for _, ev := range []string{"progress", "installed"} {
			body, _ := json.Marshal(map[string]string{"event": ev, "detail": "\x1b[2J\u202egnp.exe\x07 " + ev})
			if code, answer := e.callback(cb, string(body)); code != 200 {
				t.Fatalf("%s callback: %d %s", ev, code, answer)
			}
		}

		var got struct {
			Host   host.Host
			Events []host.Record
		}
		raw := e.getRaw(t, "/api/v1/hosts/node01", &got.Host) + e.getRaw(t, "/api/v1/hosts/node01/events", &got)
		for _, bad := range hostile {
			if strings.Contains(raw, bad) {
				t.Errorf("API answer holds %q: %q", bad, raw)
			}
		}
		want := host.Inventory{MAC: mac1, Serial: "\uFFFD]52;c;cm0gLXJmIH4K\uFFFD", UUID: "\uFFFD1234", Asset: "\uFFFD2J",
			Arch: "x86_64 arm64", Platform: "efi\uFFFD"}
		inv := got.Host.Inventory
		inv.SeenAt = want.SeenAt
		if inv != want {
			t.Errorf("inventory = %+q, want %+q", inv, want)
		}
		var reasons []string
		for _, r := range got.Events {
			reasons = append(reasons, r.Reason)
		}
		for _, want := range []string{"\uFFFD[2J\uFFFDgnp.exe\uFFFD progress", "\uFFFD[2J\uFFFDgnp.exe\uFFFD installed"} {
			if !slices.Contains(reasons, want) {
				t.Errorf("event reasons %q, want one %q", reasons, want)
			}
		}
	})
}

// getRaw GETs an admin API path, decodes it into out and returns the body.
func (e *env) getRaw(t *testing.T, path string, out any) string {
	t.Helper()
	var raw json.RawMessage
	e.mustDo(200, "GET", path, nil, &raw)
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return string(raw)
}
