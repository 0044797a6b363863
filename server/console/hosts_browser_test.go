package console_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// hostButtons are the host page's action buttons an operator sees, in
// page order; editors see editButtons (what the firmware trusts is an
// edit), admins all of them.
var (
	hostButtons = []string{"Reimage", "Clean", "Cancel", "Retry", "Hold", "Release", "Adopt",
		"Power on", "Power off", "Restart", "Insert media", "Eject media", "Download ISO"}
	editButtons  = []string{"Enrol db certificate"}
	adminButtons = []string{"Reimage", "Clean", "Cancel", "Retry", "Hold", "Release", "Adopt",
		"Power on", "Power off", "Restart", "Insert media", "Eject media", "Enrol db certificate", "Download ISO"}
)

// visibleButtons returns the labels of the host page's action buttons.
func visibleButtons(b *browser) []string {
	return b.texts(`#host-actions button, #host-actions a`)
}

// TestBrowserRoles: local users of each role log in through the form and
// see exactly the actions their grants allow on a host page; a hidden
// action forged with the viewer's session cookie is refused 403, and so
// is one sent from the viewer's page by fetch.
func TestBrowserRoles(t *testing.T) {
	e := newConsoleEnv(t)
	e.addHost("node01", "52:54:00:12:34:56", "10.0.2.15/24", map[string]string{"team": "lab"})
	e.addUser("vera", auth.Grant{Role: auth.RoleViewer})
	e.addUser("otto", auth.Grant{Role: auth.RoleOperator})
	e.addUser("edna", auth.Grant{Role: auth.RoleEditor})
	e.addUser("alma", auth.Grant{Role: auth.RoleAdmin})
	e.addUser("olga", auth.Grant{Role: auth.RoleOperator, Hosts: "team=ops"}, auth.Grant{Role: auth.RoleViewer})

	for _, tc := range []struct {
		user     string
		want     []string
		editForm bool
	}{
		{"vera", nil, false},
		{"otto", hostButtons, false},
		{"edna", editButtons, true},
		{"alma", adminButtons, true},
		{"olga", nil, false}, // operator elsewhere, viewer here
	} {
		t.Run(tc.user, func(t *testing.T) {
			b := newBrowser(t, e)
			b.login(tc.user, testPassword)
			b.navigate("/hosts/node01")
			b.waitText("#host-state", "ready", 10*time.Second)
			if got := visibleButtons(b); !slices.Equal(got, tc.want) {
				t.Errorf("%s sees buttons %q, want %q", tc.user, got, tc.want)
			}
			if got := eval[bool](b, `!!document.querySelector("form#edit")`); got != tc.editForm {
				t.Errorf("%s sees the edit form: %v, want %v", tc.user, got, tc.editForm)
			}
			if tc.user != "vera" {
				return
			}
			// Forged: the viewer's own cookie, straight to the server.
			req, _ := http.NewRequest("POST", e.url+"/hosts/node01/reimage", strings.NewReader(url.Values{"reason": {"forged"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: "bootpilot_session", Value: b.cookie()})
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("forged reimage with the viewer's cookie = %d, want 403", resp.StatusCode)
			}
			// Forged from the page itself (same origin, the cookie sent).
			b.allowError("status of 403")
			status := eval[int](b, `fetch("/hosts/node01/reimage", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "reason=forged"}).then(function (r) { return r.status; })`)
			if status != http.StatusForbidden {
				t.Errorf("forged reimage by fetch from the viewer's page = %d, want 403", status)
			}
			var h struct{ State string }
			e.mustAPI(200, "GET", "/api/v1/hosts/node01", nil, &h)
			if h.State != "ready" {
				t.Errorf("node01 after the forged requests is %s, want ready", h.State)
			}
		})
	}
}

// TestBrowserReimageLive: an operator flags a host for reimage from its
// page (dialog, reason, Confirm); an iPXE-like client boots it and the
// installer calls back, and the open page follows reimage → installing →
// ready without reloading.
func TestBrowserReimageLive(t *testing.T) {
	e := newConsoleEnv(t)
	tok := e.addHost("node01", "52:54:00:12:34:56", "10.0.2.15/24", map[string]string{"team": "lab"})
	e.addUser("otto", auth.Grant{Role: auth.RoleOperator})
	b := newBrowser(t, e)
	b.login("otto", testPassword)
	b.navigate("/hosts/node01")
	b.waitText("#host-state", "ready", 10*time.Second)

	b.click(`button[data-confirm="dlg-reimage"]`)
	if !eval[bool](b, `document.getElementById("dlg-reimage").open`) {
		t.Fatal("Reimage did not open its dialog")
	}
	if eval[string](b, `document.getElementById("host-state").textContent`) != "ready" {
		t.Fatal("the dialog alone changed the host")
	}
	b.typeInto(`#dlg-reimage input[name=reason]`, "ticket-42")
	b.submit(`#dlg-reimage button[type=submit]`, "/hosts/node01?done=reimage")
	b.waitText("#host-state", "reimage", 10*time.Second)
	b.waitText("#timeline", "ticket-42", 5*time.Second)
	b.screenshot("host-page-reimage")

	// Mark the document: a reload would lose the mark.
	eval[bool](b, `window.bootpilotMark = true`)
	code, script := e.boot("node01", tok, "52:54:00:12:34:56")
	if code != 200 || !strings.Contains(script, "bootpilot.callback=") {
		t.Fatalf("boot = %d:\n%s", code, script)
	}
	b.waitText("#host-state", "installing", 30*time.Second)
	if !eval[bool](b, `window.bootpilotMark === true`) {
		t.Fatal("the page reloaded to show installing")
	}
	if code := e.callback(callbackURL(t, script), `{"event":"installed"}`); code != 200 {
		t.Fatalf("callback = %d", code)
	}
	b.waitText("#host-state", "ready", 30*time.Second)
	if !eval[bool](b, `window.bootpilotMark === true`) {
		t.Fatal("the page reloaded to show ready")
	}
	b.waitText("#timeline", "installing → ready", 10*time.Second)
	b.screenshot("host-page")
}

// TestBrowserBulkFrozen: a bulk reimage of "all matching" on a list
// filtered by label team=lab shows the names it resolved to in a
// confirmation before anything runs; a team=lab host added before
// Confirm is not part of the job, which runs exactly the confirmed list.
func TestBrowserBulkFrozen(t *testing.T) {
	e := newConsoleEnv(t)
	e.addHost("lab01", "52:54:00:00:00:01", "10.0.2.11/24", map[string]string{"team": "lab"})
	e.addHost("lab02", "52:54:00:00:00:02", "10.0.2.12/24", map[string]string{"team": "lab"})
	e.addHost("ops01", "52:54:00:00:00:03", "10.0.2.13/24", map[string]string{"team": "ops"})
	e.addUser("otto", auth.Grant{Role: auth.RoleOperator})
	b := newBrowser(t, e)
	b.login("otto", testPassword)
	b.navigate("/hosts")
	b.screenshot("hosts")
	b.navigate("/hosts?label=team%3Dlab")
	if got := b.texts(`#host-rows td a`); !slices.Equal(got, []string{"lab01", "lab02"}) {
		t.Fatalf("filtered rows = %v, want [lab01 lab02]", got)
	}
	b.click(`#bulk input[name=scope][value=all]`)
	b.submit(`#bulk-review`, "/hosts/bulk")
	names := b.texts(`#bulk-names li`)
	if !slices.Equal(names, []string{"lab01", "lab02"}) {
		t.Fatalf("confirmation lists %v, want [lab01 lab02]", names)
	}
	b.screenshot("bulk-confirm")
	for _, n := range []string{"lab01", "lab02"} {
		var h struct{ State string }
		e.mustAPI(200, "GET", "/api/v1/hosts/"+n, nil, &h)
		if h.State != "ready" {
			t.Fatalf("%s is %s before Confirm, want ready (nothing runs before)", n, h.State)
		}
	}

	// The data changes underneath: a third team=lab host.
	e.addHost("lab03", "52:54:00:00:00:04", "10.0.2.14/24", map[string]string{"team": "lab"})

	b.typeInto(`input[name=reason]`, "rack refresh")
	b.submit(`#bulk-confirm`, "/jobs/")
	b.waitText("#job-finished", "ago", 30*time.Second)
	if got := b.texts(`#job-hosts td.job-host`); !slices.Equal(got, []string{"lab01", "lab02"}) {
		t.Errorf("job page lists %v, want exactly [lab01 lab02]", got)
	}
	b.screenshot("job")
	id := strings.TrimPrefix(mustURL(t, b.location()).Path, "/jobs/")
	var job struct {
		Hosts []struct{ Host, Status string }
	}
	e.mustAPI(200, "GET", "/api/v1/jobs/"+id, nil, &job)
	var ran []string
	for _, h := range job.Hosts {
		ran = append(ran, h.Host)
		if h.Status != "done" {
			t.Errorf("job host %s = %s, want done", h.Host, h.Status)
		}
	}
	if !slices.Equal(ran, []string{"lab01", "lab02"}) {
		t.Errorf("the job ran %v, want exactly [lab01 lab02]", ran)
	}
	for n, want := range map[string]string{"lab01": "reimage", "lab02": "reimage", "lab03": "ready", "ops01": "ready"} {
		var h struct{ State string }
		e.mustAPI(200, "GET", "/api/v1/hosts/"+n, nil, &h)
		if h.State != want {
			t.Errorf("%s is %s, want %s", n, h.State, want)
		}
	}

	// The list follows state changes row by row, without reloading.
	b.navigate("/hosts")
	b.waitText("#host-lab01", "reimage", 10*time.Second)
	eval[bool](b, `window.bootpilotMark = true`)
	e.mustAPI(200, "POST", "/api/v1/hosts/lab01/cancel", map[string]any{}, nil)
	b.waitText("#host-lab01", "ready", 30*time.Second)
	if !eval[bool](b, `window.bootpilotMark === true`) {
		t.Fatal("the list reloaded to show lab01 ready")
	}
	if got := b.text("#host-lab02"); !strings.Contains(got, "reimage") {
		t.Errorf("lab02's row = %q, want it still reimage", got)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestBrowserIdle: an idle host list asks for changes at most once per
// 10 s, and the answer when nothing changed is empty (204).
func TestBrowserIdle(t *testing.T) {
	e := newConsoleEnv(t)
	e.addHost("node01", "52:54:00:12:34:56", "10.0.2.15/24", nil)
	e.addUser("vera", auth.Grant{Role: auth.RoleViewer})
	b := newBrowser(t, e)
	b.login("vera", testPassword)
	// The list's cursor re-sends changes of the last 2 s once (a change
	// stamped before a look but committed after it is not lost): let the
	// seeding age past that, so the page is truly idle.
	time.Sleep(2500 * time.Millisecond)
	b.navigate("/hosts")
	start := time.Now()
	time.Sleep(12 * time.Second) // observe a rate: the idle page's own requests over 12 s
	type entry struct {
		Name   string  `json:"name"`
		Status int     `json:"status"`
		Body   float64 `json:"body"`
		Start  float64 `json:"start"`
	}
	got := eval[[]entry](b, `performance.getEntriesByType("resource").filter(function (e) { return e.name.indexOf("/hosts/changes") >= 0; }).map(function (e) { return {name: e.name, status: e.responseStatus, body: e.encodedBodySize, start: e.startTime}; })`)
	elapsed := time.Since(start)
	if max := int(elapsed / (10 * time.Second)); len(got) > max || len(got) == 0 {
		t.Errorf("idle list made %d change requests in %v, want 1 (every 10 s): %+v", len(got), elapsed.Round(time.Second), got)
	}
	for _, r := range got {
		if r.Status != 204 || r.Body != 0 {
			t.Errorf("idle change request answered %d with %v bytes, want 204 and none", r.Status, r.Body)
		}
	}
}
