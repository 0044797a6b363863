package console_test

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

func TestAuditVisibleToAuditorsOnly(t *testing.T) {
	e := newPagesEnv(t)
	e.mustHost(host.Host{Name: "node01", MACs: []string{"52:54:00:00:00:01"}, IPv4: "10.0.0.11/24", Gateway: "10.0.0.1", DNS: []string{"10.0.0.1"}})
	ed := e.login("editor")
	if code, body := e.post(ed, "/profiles/rocky9", url.Values{"kernel": {"https://mirror.example/rocky9/vmlinuz2"},
		"initrds": {"https://mirror.example/rocky9/initrd.img"}, "installer": {"kickstart"}}); code != 303 {
		t.Fatalf("POST /profiles/rocky9 as editor = %d:\n%s", code, clip(body))
	}
	for _, user := range []string{"auditor", "admin"} {
		ck := e.login(user)
		code, body := e.get(ck, "/audit")
		if code != 200 {
			t.Fatalf("GET /audit as %s = %d, want 200", user, code)
		}
		mustContain(t, "/audit as "+user, body, "local:editor", "profile:rocky9", "profile-update", `href="/audit"`,
			`href="/api/v1/audit?format=csv"`)
		code, body = e.get(ck, "/audit?actor=local%3Aeditor&action=profile-update&since=2000-01-01T00%3A00")
		if code != 200 {
			t.Fatalf("GET /audit filtered = %d", code)
		}
		if n := strings.Count(body, `class="audit-record"`); n != 1 {
			t.Errorf("filtered audit as %s: %d records, want 1:\n%s", user, n, clip(body))
		}
		mustNotContain(t, "filtered audit", body, "login-failed")
		csvURL := regexp.MustCompile(`id="audit-csv" href="([^"]+)"|href="([^"]+)" class="button plain" id="audit-csv"`).FindStringSubmatch(body)
		if csvURL == nil {
			t.Fatalf("no CSV link in:\n%s", clip(body))
		}
		link := strings.ReplaceAll(csvURL[1]+csvURL[2], "&amp;", "&")
		mustContain(t, "CSV link", link, "format=csv", "actor=local%3Aeditor", "since=2000-01-01T00%3A00%3A00Z")
		code, csv, hdr := e.do(ck, "GET", link, "", nil)
		if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") {
			t.Fatalf("GET %s with the session cookie = %d %s", link, code, hdr.Get("Content-Type"))
		}
		if lines := strings.Count(strings.TrimSpace(csv), "\n"); lines != 1 || !strings.Contains(csv, "profile:rocky9") {
			t.Errorf("CSV export = %q, want a header and the one record", csv)
		}
	}
	for _, user := range []string{"operator", "viewer", "editor"} {
		ck := e.login(user)
		if code, _ := e.get(ck, "/audit"); code != 403 {
			t.Errorf("GET /audit as %s = %d, want 403", user, code)
		}
		_, body := e.get(ck, "/profiles")
		mustNotContain(t, "nav of "+user, body, `href="/audit"`)
	}
}

func TestAuditPaging(t *testing.T) {
	e := newPagesEnv(t)
	recs := make([]host.Record, 55)
	for i := range recs {
		recs[i] = host.Record{Actor: "local:admin", Action: "user-update", Subject: "local:bob", Time: time.Now().UTC()}
	}
	if err := e.db.AppendEvents(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	ck := e.login("auditor")
	code, body := e.get(ck, "/audit?action=user-update")
	if code != 200 {
		t.Fatalf("GET /audit = %d", code)
	}
	if n := strings.Count(body, `class="audit-record"`); n != 50 {
		t.Errorf("first page: %d records, want 50", n)
	}
	m := regexp.MustCompile(`<a href="([^"]+)" id="audit-next">`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no next link on a full page:\n%s", clip(body))
	}
	_, body = e.get(ck, strings.ReplaceAll(m[1], "&amp;", "&"))
	if n := strings.Count(body, `class="audit-record"`); n != 5 {
		t.Errorf("second page: %d records, want 5", n)
	}
	mustNotContain(t, "last page", body, `id="audit-next"`)
}

func TestProfilesRoleAware(t *testing.T) {
	e := newPagesEnv(t)
	e.mustHost(host.Host{Name: "node01", MACs: []string{"52:54:00:00:00:01"}, IPv4: "10.0.0.11/24", Gateway: "10.0.0.1",
		DNS: []string{"10.0.0.1"}, Profile: "rocky9"})
	vw := e.login("viewer")
	for _, path := range []string{"/profiles", "/profiles/rocky9", "/images"} {
		code, body := e.get(vw, path)
		if code != 200 {
			t.Fatalf("GET %s as viewer = %d", path, code)
		}
		mustNotContain(t, path+" as viewer", body, "New profile", `id="edit-profile"`, `id="delete-profile"`,
			`id="upload-image"`, `id="fetch-image"`)
	}
	_, body := e.get(vw, "/profiles/rocky9")
	mustContain(t, "preview", body, `href="/hosts/node01"`, "#!ipxe")
	form := url.Values{"name": {"forged"}, "kernel": {"https://x/vmlinuz"}, "initrds": {"https://x/initrd"}, "installer": {"kickstart"}}
	for _, path := range []string{"/profiles", "/profiles/rocky9", "/profiles/rocky9/delete", "/images/fetch"} {
		if code, _ := e.post(vw, path, form); code != 403 {
			t.Errorf("forged POST %s as viewer = %d, want 403", path, code)
		}
	}
	if p, err := e.db.GetProfile(context.Background(), "rocky9"); err != nil || p.Kernel != "https://mirror.example/rocky9/vmlinuz" {
		t.Errorf("rocky9 after forged posts = %+v, %v; want unchanged", p, err)
	}

	ed := e.login("editor")
	_, body = e.get(ed, "/profiles")
	mustContain(t, "/profiles as editor", body, "New profile", `action="/profiles"`)
	bad := url.Values{"name": {"deb12"}, "kernel": {"https://x/vmlinuz"}, "installer": {"kickstart"}, "config": {"{{.Nope"}}
	code, body := e.post(ed, "/profiles", bad)
	if code != 400 {
		t.Fatalf("POST /profiles with a broken template = %d, want 400", code)
	}
	if !regexp.MustCompile(`data-field="(config|initrds)"`).MatchString(body) {
		t.Errorf("no field error next to the field:\n%s", clip(body))
	}
	mustContain(t, "kept values", body, `value="deb12"`)
	good := url.Values{"name": {"deb12"}, "kernel": {"https://x/vmlinuz"}, "initrds": {"https://x/initrd.gz"}, "installer": {"preseed"},
		"config": {"d-i debian-installer/locale string en_US\n"}}
	if code, body := e.post(ed, "/profiles", good); code != 303 {
		t.Fatalf("POST /profiles = %d:\n%s", code, clip(body))
	}
	_, body = e.get(ed, "/profiles/deb12")
	mustContain(t, "new profile", body, "No host you can see uses this profile", "d-i debian-installer/locale", `id="edit-profile"`)
}

func TestAdminUsersAndTokenShownOnce(t *testing.T) {
	e := newPagesEnv(t)
	for _, user := range []string{"operator", "auditor", "editor"} {
		ck := e.login(user)
		if code, _ := e.get(ck, "/admin"); code != 403 {
			t.Errorf("GET /admin as %s = %d, want 403", user, code)
		}
		if code, _ := e.post(ck, "/admin/users", url.Values{"name": {"mallory"}, "password": {pagesPassword}, "grants": {"admin"}}); code != 403 {
			t.Errorf("forged POST /admin/users as %s = %d, want 403", user, code)
		}
	}
	ck := e.login("admin")
	code, body := e.post(ck, "/admin/users", url.Values{"name": {"bob"}, "password": {pagesPassword}, "grants": {"operator@team=lab\nbogus"}})
	if code != 400 {
		t.Fatalf("POST /admin/users with a bad grant = %d, want 400", code)
	}
	mustContain(t, "bad grant", body, `data-field="grants"`, "line 2 (bogus)")
	code, body = e.post(ck, "/admin/users", url.Values{"name": {"bob"}, "password": {pagesPassword}, "grants": {"operator@team=lab\nviewer"}})
	if code != 303 {
		t.Fatalf("POST /admin/users = %d:\n%s", code, clip(body))
	}
	_, body = e.get(ck, "/admin?done=user-created")
	mustContain(t, "/admin", body, "User created.", `data-user="local:bob"`, "operator@team=lab")
	if bob := e.login("bob"); bob == "" {
		t.Fatal("bob cannot log in")
	}
	if code, _ := e.post(ck, "/admin/users/local/bob/disable", nil); code != 303 {
		t.Errorf("disable bob = %d, want 303", code)
	}

	code, body = e.post(ck, "/admin/tokens", url.Values{"name": {"ci-builder"}, "grants": {"operator"}, "expires_in": {"720h"}})
	if code != 201 {
		t.Fatalf("POST /admin/tokens = %d:\n%s", code, clip(body))
	}
	m := regexp.MustCompile(`<pre id="new-token">([^<]+)</pre>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no token on the result page:\n%s", clip(body))
	}
	tok := m[1]
	if _, err := e.auth.Authenticate(context.Background(), tok); err != nil {
		t.Fatalf("the shown token does not work: %v", err)
	}
	for _, path := range []string{"/admin", "/audit", "/profiles", "/images", "/import", "/audit?action=token-create"} {
		e.get(ck, path)
	}
	for what, page := range e.pages {
		if strings.Contains(page, tok) && what != "POST /admin/tokens" {
			t.Errorf("%s shows the token again", what)
		}
	}
	_, body = e.get(ck, "/admin")
	mustContain(t, "/admin after token", body, "ci-builder", `action="/admin/tokens/`)
}
