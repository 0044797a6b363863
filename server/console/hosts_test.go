package console_test

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/server/console"
)

// hostRowRE finds the host rows of a host list page.
var hostRowRE = regexp.MustCompile(`<tr id="host-([a-z0-9-]+)"`)

// rowNames returns the host rows' names, in page order.
func rowNames(body string) []string {
	var out []string
	for _, m := range hostRowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// seedHosts registers n hosts h000… (every third team=lab, every fifth
// failed) and returns the admin's session.
func seedHosts(t *testing.T, e *consoleEnv, n int) {
	t.Helper()
	for i := range n {
		labels := map[string]string{"team": "ops"}
		if i%3 == 0 {
			labels["team"] = "lab"
		}
		name := fmt.Sprintf("h%03d", i)
		e.addHost(name, fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256), fmt.Sprintf("10.1.%d.%d/8", i/256, i%256+1), labels)
		if i%5 == 0 {
			e.mustAPI(200, "POST", "/api/v1/hosts/"+name+"/reimage", map[string]any{}, nil)
		}
	}
}

// TestHostListQueries: search by name, MAC, IPv4 and label, filters by
// state, profile and label, orders and pages, all server-side; the state
// counts follow the filter.
func TestHostListQueries(t *testing.T) {
	e := newConsoleEnv(t)
	seedHosts(t, e, 12) // h000…h011; lab: 0,3,6,9; reimage: 0,5,10
	e.addUser("ada", auth.Grant{Role: auth.RoleAdmin})
	s := e.httpLogin("ada", testPassword)

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"h000", "h001", "h002", "h003", "h004", "h005", "h006", "h007", "h008", "h009", "h010", "h011"}},
		{"q=h01", []string{"h010", "h011"}},
		{"q=52:54:00:00:00:0b", []string{"h011"}},
		{"q=10.1.0.1", []string{"h000", "h009", "h010", "h011"}}, // 10.1.0.1, .10, .11, .12
		{"q=team%3Dlab", []string{"h000", "h003", "h006", "h009"}},
		{"label=team%3Dlab&state=reimage", []string{"h000"}},
		{"q=h0+team%3Dlab", []string{"h000", "h003", "h006", "h009"}},
		{"state=reimage", []string{"h000", "h005", "h010"}},
		{"profile=rocky9&state=failed", nil},
		{"profile=nosuch", nil},
		{"sort=state", []string{"h001", "h002", "h003", "h004", "h006", "h007", "h008", "h009", "h011", "h000", "h005", "h010"}},
		{"q=team%3Dlab&sort=updated", []string{"h009", "h006", "h003", "h000"}}, // most recently changed first
	} {
		code, h, body := s.get("/hosts?" + tc.query)
		if code != 200 {
			t.Fatalf("GET /hosts?%s = %d", tc.query, code)
		}
		checkHTML(t, "/hosts?"+tc.query, h.Get("Content-Security-Policy"), body)
		if got := rowNames(body); !slices.Equal(got, tc.want) {
			t.Errorf("GET /hosts?%s rows = %v, want %v", tc.query, got, tc.want)
		}
	}

	// The counts at the top follow the filter, whatever its state.
	_, _, body := s.get("/hosts?label=team%3Dlab&state=ready")
	for _, want := range []string{`>all <b>4</b>`, `>ready <b>3</b>`, `>reimage <b>1</b>`, `all 3 matching`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /hosts?label=team=lab&state=ready: no %q in the counts", want)
		}
	}
	if code, _, _ := s.get("/hosts?state=sleeping"); code != 400 {
		t.Errorf("GET /hosts?state=sleeping = %d, want 400", code)
	}
	if code, _, _ := s.get("/hosts?sort=size"); code != 400 {
		t.Errorf("GET /hosts?sort=size = %d, want 400", code)
	}
}

// TestHostListPaging: 100 rows a page, Next and Previous links, and no
// row twice across pages.
func TestHostListPaging(t *testing.T) {
	e := newConsoleEnv(t)
	e.addProfiles()
	for i := range 230 {
		e.mustAPI(201, "POST", "/api/v1/hosts", map[string]any{"name": fmt.Sprintf("p%03d", i),
			"macs": []string{fmt.Sprintf("52:54:00:01:%02x:%02x", i/256, i%256)}, "ipv4": fmt.Sprintf("10.2.%d.%d/16", i/256, i%256+1),
			"gateway": "10.2.0.254", "dns": []string{"10.0.2.3"}}, nil)
	}
	e.addUser("ada", auth.Grant{Role: auth.RoleViewer})
	s := e.httpLogin("ada", testPassword)
	var all []string
	path := "/hosts"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("more than 3 pages for 230 hosts")
		}
		code, _, body := s.get(path)
		if code != 200 {
			t.Fatalf("GET %s = %d", path, code)
		}
		rows := rowNames(body)
		if len(rows) != 100 && len(all)+len(rows) != 230 {
			t.Errorf("GET %s: %d rows, want 100 (or the rest)", path, len(rows))
		}
		all = append(all, rows...)
		path = ""
		if m := regexp.MustCompile(`<a class="button plain" href="([^"]+)">Next`).FindStringSubmatch(body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(all) != 230 || !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != 230 {
		t.Errorf("paging walked %d rows (sorted %v), want 230 distinct in name order", len(all), slices.IsSorted(all))
	}
	if _, _, body := s.get("/hosts?page=2"); !strings.Contains(body, "← Previous") || strings.Contains(body, "Next →") {
		t.Error("last page: want a Previous link and no Next link")
	}
}

// TestHostChanges: the live-update endpoint answers 204 when none of the
// listed hosts changed, and after a change only the changed row, swapped
// out of band, with a new cursor.
func TestHostChanges(t *testing.T) {
	e := newConsoleEnv(t)
	seedHosts(t, e, 3)
	e.addUser("ada", auth.Grant{Role: auth.RoleViewer})
	s := e.httpLogin("ada", testPassword)
	_, _, body := s.get("/hosts")
	m := regexp.MustCompile(`id="live-since" name="since" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no live-update cursor on /hosts")
	}
	if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
		t.Fatalf("cursor %q: %v", m[1], err)
	}
	since := time.Now().UTC().Format(time.RFC3339Nano) // after the seeding
	changes := func(since string) (int, string) {
		code, _, body := s.get("/hosts/changes?"+url.Values{"since": {since}, "names": {"h000 h001 h002"}}.Encode(), "HX-Request", "true")
		return code, body
	}
	if code, body := changes(since); code != 204 || body != "" {
		t.Fatalf("GET /hosts/changes with nothing changed = %d %q, want 204 and no body", code, body)
	}
	e.mustAPI(200, "POST", "/api/v1/hosts/h001/reimage", map[string]any{}, nil)
	code, body := changes(since)
	if code != 200 {
		t.Fatalf("GET /hosts/changes after a change = %d, want 200", code)
	}
	if got := rowNames(body); !slices.Equal(got, []string{"h001"}) {
		t.Errorf("changed rows = %v, want [h001]", got)
	}
	if !strings.Contains(body, `<tr id="host-h001" hx-swap-oob="true">`) || !strings.Contains(body, ">reimage<") ||
		!regexp.MustCompile(`id="live-since" name="since" value="[^"]+" hx-swap-oob="true"`).MatchString(body) {
		t.Errorf("changes answer lacks the swapped row or the new cursor:\n%s", body)
	}
	if len(body) > 2000 {
		t.Errorf("changes answer for one row is %d bytes, want small", len(body))
	}
	if code, _ := changes("yesterday"); code != 400 {
		t.Errorf("GET /hosts/changes?since=yesterday = %d, want 400", code)
	}
}

// TestHostPagesSafe: every host screen answers with the CSP and
// X-Frame-Options, no inline script or event handler, and no secret.
func TestHostPagesSafe(t *testing.T) {
	e := newConsoleEnv(t)
	seedHosts(t, e, 3)
	e.addUser("ada", auth.Grant{Role: auth.RoleAdmin})
	s := e.httpLogin("ada", testPassword)
	var job struct{ ID string }
	e.mustAPI(202, "POST", "/api/v1/bulk/cancel", map[string]any{"selector": map[string]any{"names": []string{"h000"}}}, &job)
	for _, p := range []string{"/hosts", "/hosts?q=h00", "/hosts/h000", "/hosts/new", "/jobs", "/jobs/" + job.ID} {
		code, h, body := s.get(p)
		if code != 200 {
			t.Errorf("GET %s = %d", p, code)
			continue
		}
		if got := h.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s: X-Frame-Options = %q, want DENY", p, got)
		}
		checkHTML(t, p, h.Get("Content-Security-Policy"), body)
	}
	_, h, body := s.post("/hosts/bulk", url.Values{"action": {"reimage"}, "scope": {"all"}, "q": {"h00"}})
	checkHTML(t, "bulk confirmation", h.Get("Content-Security-Policy"), body)
}

var (
	hostInlineScriptRE = regexp.MustCompile(`(?is)<script\b([^>]*)>`)
	hostHandlerRE      = regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`)
	hostStyleAttrRE    = regexp.MustCompile(`(?i)<[^>]+\sstyle\s*=`)
)

// checkHTML fails the test when a page lacks the console's CSP or has an
// inline script, an event-handler or style attribute.
func checkHTML(t *testing.T, what, csp, body string) {
	t.Helper()
	if csp != console.CSP {
		t.Errorf("%s: Content-Security-Policy = %q, want %q", what, csp, console.CSP)
	}
	for _, p := range htmlProblems(body) {
		t.Errorf("%s: %s", what, p)
	}
}

// htmlProblems lists what a strict CSP would refuse in body.
func htmlProblems(body string) []string {
	var out []string
	for _, m := range hostInlineScriptRE.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(m[1], "src=") {
			out = append(out, "inline script: "+m[0])
		}
	}
	if m := hostHandlerRE.FindString(body); m != "" {
		out = append(out, "event-handler attribute: "+m)
	}
	if m := hostStyleAttrRE.FindString(body); m != "" {
		out = append(out, "style attribute: "+m)
	}
	return out
}

// TestHTMLProblemsCatches: the page check finds what it looks for.
func TestHTMLProblemsCatches(t *testing.T) {
	for _, body := range []string{`<script>alert(1)</script>`, `<a href="#" onclick="x()">`, `<p style="color:red">`} {
		if len(htmlProblems(body)) == 0 {
			t.Errorf("htmlProblems(%q) = none, want one", body)
		}
	}
	if p := htmlProblems(`<script src="/static/x.js"></script><a href="/on">on=</a>`); len(p) != 0 {
		t.Errorf("htmlProblems(clean) = %v, want none", p)
	}
}

// TestHostFormsAndRefusals: an edit with a bad field shows the problem
// next to it and keeps the input; a create does the same; a viewer's
// forged action or edit is refused 403 and changes nothing.
func TestHostFormsAndRefusals(t *testing.T) {
	e := newConsoleEnv(t)
	seedHosts(t, e, 2)
	e.addUser("ed", auth.Grant{Role: auth.RoleEditor})
	e.addUser("vic", auth.Grant{Role: auth.RoleViewer})
	ed := e.httpLogin("ed", testPassword)
	code, _, body := ed.post("/hosts/h001", url.Values{"macs": {"52:54:00:00:00:01"}, "ipv4": {"10.1.0.300/16"}, "gateway": {"10.1.0.254"},
		"dns": {"10.0.2.3"}, "profile": {"rocky9"}, "labels": {"team=ops"}})
	if code != 400 || !regexp.MustCompile(`name="ipv4" value="10.1.0.300/16"`).MatchString(body) ||
		!regexp.MustCompile(`<p class="field-error" id="err-ipv4">[^<]+</p>`).MatchString(body) {
		t.Errorf("edit with a bad IPv4 = %d; want 400 with the error next to ipv4 and the input kept:\n%s", code, clipBody(body))
	}
	code, hdr, _ := ed.post("/hosts/h001", url.Values{"macs": {"52:54:00:00:00:01"}, "ipv4": {"10.1.0.99/16"}, "gateway": {"10.1.0.254"},
		"dns": {"10.0.2.3"}, "profile": {"rocky9"}, "labels": {"team=ops;rack=r7"}})
	if code != 303 || hdr.Get("Location") != "/hosts/h001?done=saved" {
		t.Errorf("valid edit = %d → %q, want 303 to the host page", code, hdr.Get("Location"))
	}
	var got struct {
		IPv4   string
		Labels map[string]string
	}
	e.mustAPI(200, "GET", "/api/v1/hosts/h001", nil, &got)
	if got.IPv4 != "10.1.0.99/16" || got.Labels["rack"] != "r7" {
		t.Errorf("after the edit h001 = %+v", got)
	}
	code, _, body = ed.post("/hosts/new", url.Values{"name": {"Bad Name"}, "macs": {"52:54:00:09:09:09"}})
	if code != 400 || !strings.Contains(body, `id="err-name"`) || !strings.Contains(body, `value="Bad Name"`) {
		t.Errorf("create with a bad name = %d; want 400 with the error next to the name:\n%s", code, clipBody(body))
	}
	code, hdr, _ = ed.post("/hosts/new", url.Values{"name": {"fresh01"}, "macs": {"52:54:00:09:09:09"}, "ipv4": {"10.9.0.1/24"},
		"gateway": {"10.9.0.254"}, "dns": {"10.0.2.3"}, "profile": {"rocky9"}})
	if code != 303 || hdr.Get("Location") != "/hosts/fresh01?done=created" {
		t.Errorf("create = %d → %q, want 303 to the new host", code, hdr.Get("Location"))
	}

	vic := e.httpLogin("vic", testPassword)
	_, _, page := vic.get("/hosts/h000")
	for _, label := range []string{">Reimage<", ">Cancel<", ">Power off<", ">Download ISO<", `action="/hosts/h000"`} {
		if strings.Contains(page, label) {
			t.Errorf("viewer's host page shows %s", label)
		}
	}
	for _, p := range []string{"/hosts/h001/reimage", "/hosts/h001/power", "/hosts/h001", "/hosts/bulk/start"} {
		if code, _, _ := vic.post(p, url.Values{"host": {"h001"}, "action": {"reimage"}, "ipv4": {"10.1.0.5/16"}}); code != 403 {
			t.Errorf("viewer POST %s = %d, want 403", p, code)
		}
	}
	if code, _, _ := vic.get("/hosts/h001/iso"); code != 403 {
		t.Errorf("viewer GET /hosts/h001/iso = %d, want 403", code)
	}
	e.mustAPI(200, "GET", "/api/v1/hosts/h001", nil, &got)
	var st struct{ State string }
	e.mustAPI(200, "GET", "/api/v1/hosts/h001", nil, &st)
	if st.State != "ready" || got.IPv4 != "10.1.0.99/16" {
		t.Errorf("after the viewer's forged requests h001 = %s %s, want ready and unchanged", st.State, got.IPv4)
	}
}

func clipBody(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}
