package console_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

// mustHost stores h as it is (no audit record).
func (e *pagesEnv) mustHost(h host.Host) {
	e.t.Helper()
	if h.State == "" {
		h.State = host.StateReady
	}
	if err := h.Normalize(); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.CreateHost(context.Background(), h, host.Record{}); err != nil {
		e.t.Fatal(err)
	}
}

// hostIn returns host name from the store, or ok false.
func (e *pagesEnv) hostIn(name string) (host.Host, bool) {
	e.t.Helper()
	h, err := e.db.GetHost(context.Background(), name)
	if errors.Is(err, host.ErrNotFound) {
		return h, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return h, true
}

// hiddenRE finds a hidden input's name and value.
var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// applyForm returns the hidden fields of the page's apply form.
func applyForm(t *testing.T, body string) url.Values {
	t.Helper()
	i := strings.Index(body, `action="/import/apply"`)
	if i < 0 {
		t.Fatalf("no apply form in:\n%s", clip(body))
	}
	f := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(body[i:], -1) {
		if m[1] == "file" || m[1] == "csv" || m[1] == "digest" {
			f.Set(m[1], html.UnescapeString(m[2]))
		}
	}
	return f
}

const importHeader = "name,mac,ipv4,gateway,dns,profile,labels\n"

func TestImportBadRowAppliesNothing(t *testing.T) {
	e := newPagesEnv(t)
	e.mustHost(host.Host{Name: "node09", MACs: []string{"52:54:00:00:00:09"}, IPv4: "10.0.9.9/24", Gateway: "10.0.9.1", DNS: []string{"10.0.9.1"}})
	before, _ := e.hostIn("node09")
	ck := e.login("editor")
	csv := importHeader +
		"node01,52:54:00:00:00:01,10.0.0.11/24,10.0.0.1,10.0.0.1,rocky9,team=lab\n" +
		"node02,zz:54:00:00:00:02,10.0.0.12/24,10.0.0.1,10.0.0.1,rocky9,team=lab\n" + // line 3: a bad MAC
		"node09,52:54:00:00:00:09,10.0.9.19/24,10.0.9.1,10.0.9.1,rocky9,team=lab\n"
	code, body := e.upload(ck, "/import", "csv", "hosts.csv", []byte(csv), nil)
	if code != 400 {
		t.Errorf("POST /import with a bad row = %d, want 400", code)
	}
	mustContain(t, "dry run", body, "line 3", "column mac", "nothing was applied", "zz:54:00:00:00:02")
	mustNotContain(t, "dry run", body, `action="/import/apply"`)

	// A forged apply of the same file is refused the same way.
	f := url.Values{"file": {"hosts.csv"}, "csv": {b64(csv)}, "digest": {sha(csv)}}
	code, body = e.post(ck, "/import/apply", f)
	if code != 400 {
		t.Errorf("POST /import/apply with a bad row = %d, want 400", code)
	}
	mustContain(t, "apply", body, "line 3", "column mac")
	for _, n := range []string{"node01", "node02"} {
		if _, ok := e.hostIn(n); ok {
			t.Errorf("%s exists after a refused import", n)
		}
	}
	if after, _ := e.hostIn("node09"); after.IPv4 != before.IPv4 || after.Version != before.Version {
		t.Errorf("node09 = %s v%d after a refused import, want %s v%d", after.IPv4, after.Version, before.IPv4, before.Version)
	}

	// A row the core refuses (an unknown profile, a MAC of another host)
	// refuses the whole file too, with its line and column.
	csv = importHeader +
		"node01,52:54:00:00:00:01,10.0.0.11/24,10.0.0.1,10.0.0.1,rocky9,\n" +
		"node02,52:54:00:00:00:02,10.0.0.12/24,10.0.0.1,10.0.0.1,nosuch,\n" +
		"node03,52:54:00:00:00:09,10.0.0.13/24,10.0.0.1,10.0.0.1,rocky9,\n"
	code, body = e.post(ck, "/import/apply", url.Values{"csv": {b64(csv)}, "digest": {sha(csv)}})
	if code != 400 {
		t.Errorf("POST /import/apply with a bad profile = %d, want 400", code)
	}
	mustContain(t, "apply", body, "line 3", "column profile", `no profile named &#34;nosuch&#34;`,
		"line 4", "column mac", "already belongs to host node09")
	if _, ok := e.hostIn("node01"); ok {
		t.Errorf("node01 exists after a refused import")
	}
}

func TestImportDryRunAndApply(t *testing.T) {
	e := newPagesEnv(t)
	e.mustHost(host.Host{Name: "node02", MACs: []string{"52:54:00:00:00:02"}, IPv4: "10.0.0.99/24", Gateway: "10.0.0.1",
		DNS: []string{"10.0.0.1"}, Profile: "rocky9", Labels: host.Labels{"team": "lab"}})
	e.mustHost(host.Host{Name: "node03", MACs: []string{"52:54:00:00:00:03"}, IPv4: "10.0.0.13/24", Gateway: "10.0.0.1",
		DNS: []string{"10.0.0.1"}, Profile: "rocky9", Labels: host.Labels{"team": "lab"}})
	ck := e.login("editor")
	csv := "# hosts of the lab\n" + importHeader +
		"node01,52:54:00:00:00:01,10.0.0.11/24,10.0.0.1,10.0.0.1,rocky9,team=lab;site=dc1\n" +
		"node02,52:54:00:00:00:02,10.0.0.12/24,10.0.0.1,10.0.0.1,rocky9,team=lab;site=dc1\n" +
		"node03,52:54:00:00:00:03,10.0.0.13/24,10.0.0.1,10.0.0.1,rocky9,team=lab\n"
	code, body := e.upload(ck, "/import", "csv", "lab.csv", []byte(csv), nil)
	if code != 200 {
		t.Fatalf("POST /import = %d, want 200:\n%s", code, clip(body))
	}
	for _, w := range []struct{ name, action, fields string }{
		{"node01", "create", ""}, {"node02", "update", "ipv4, labels"}, {"node03", "unchanged", ""},
	} {
		re := regexp.MustCompile(`(?s)<tr class="import-` + w.action + `" data-host="` + w.name + `">.*?</tr>`)
		row := re.FindString(body)
		if row == "" {
			t.Errorf("dry run: no %s row for %s in:\n%s", w.action, w.name, clip(body))
			continue
		}
		if w.fields != "" && !strings.Contains(row, "<td>"+w.fields+"</td>") {
			t.Errorf("dry run: %s row = %s, want fields %q", w.name, row, w.fields)
		}
	}
	mustContain(t, "dry run", body, "1 to create, 1 to update, 1 unchanged", `data-confirm="confirm-apply"`)
	if _, ok := e.hostIn("node01"); ok {
		t.Fatal("node01 exists after a dry run")
	}
	if h, _ := e.hostIn("node02"); h.IPv4 != "10.0.0.99/24" {
		t.Fatalf("node02 ipv4 = %s after a dry run, want unchanged", h.IPv4)
	}

	f := applyForm(t, body)
	// Another file under the dry run's digest is refused.
	bad := url.Values{"file": f["file"], "csv": {b64(strings.Replace(csv, "10.0.0.11", "10.0.0.21", 1))}, "digest": f["digest"]}
	if code, body := e.post(ck, "/import/apply", bad); code != 400 || !strings.Contains(body, "not the one of the dry run") {
		t.Errorf("apply of another file = %d, want 400 saying so:\n%s", code, clip(body))
	}
	if _, ok := e.hostIn("node01"); ok {
		t.Fatal("node01 exists after a refused apply")
	}

	code, body = e.post(ck, "/import/apply", f)
	if code != 200 {
		t.Fatalf("POST /import/apply = %d, want 200:\n%s", code, clip(body))
	}
	mustContain(t, "apply", body, "Applied lab.csv: 1 created, 1 updated, 1 unchanged")
	h1, ok := e.hostIn("node01")
	if !ok || h1.IPv4 != "10.0.0.11/24" || h1.Labels["site"] != "dc1" || h1.Profile != "rocky9" {
		t.Errorf("node01 = %+v (exists %v), want created from the file", h1, ok)
	}
	if h2, _ := e.hostIn("node02"); h2.IPv4 != "10.0.0.12/24" || h2.Labels["site"] != "dc1" {
		t.Errorf("node02 = %s %v, want 10.0.0.12/24 with site=dc1", h2.IPv4, h2.Labels)
	}
	if h3, _ := e.hostIn("node03"); h3.Version != 1 {
		t.Errorf("node03 version = %d, want 1 (unchanged)", h3.Version)
	}
	for _, w := range []struct{ host, action string }{{"node01", "create"}, {"node02", "update"}} {
		recs, err := e.auth.Audit(context.Background(), auth.System, auth.AuditFilter{Host: w.host})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(recs, func(r host.Record) bool { return r.Action == w.action && r.Actor == "local:editor" }) {
			t.Errorf("audit of %s = %+v, want a %s by local:editor", w.host, recs, w.action)
		}
	}
	// An editor may not build ISOs (operate): the archive is not offered.
	mustNotContain(t, "apply as editor", body, `action="/import/isos"`)
	if code, _ := e.post(ck, "/import/isos", url.Values{"host": {"node01"}}); code != 403 {
		t.Errorf("POST /import/isos as editor = %d, want 403", code)
	}
}

func TestImportISOArchive(t *testing.T) {
	e := newPagesEnv(t)
	ck := e.login("admin")
	csv := importHeader +
		"node01,52:54:00:00:00:01,10.0.0.11/24,10.0.0.1,10.0.0.1,rocky9,\n" +
		"node02,52:54:00:00:00:02,10.0.0.12/24,10.0.0.1,10.0.0.1,rocky9,\n"
	code, body := e.upload(ck, "/import", "csv", "hosts.csv", []byte(csv), nil)
	if code != 200 {
		t.Fatalf("POST /import = %d:\n%s", code, clip(body))
	}
	code, body = e.post(ck, "/import/apply", applyForm(t, body))
	if code != 200 {
		t.Fatalf("POST /import/apply = %d:\n%s", code, clip(body))
	}
	mustContain(t, "apply as admin", body, `action="/import/isos"`, "rotates that host's boot token")
	before, _ := e.hostIn("node01")
	code, zipped, hdr := e.do(ck, "POST", "/import/isos", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"host": {"node01", "node02"}}.Encode()))
	if code != 200 || hdr.Get("Content-Type") != "application/zip" {
		t.Fatalf("POST /import/isos = %d %s, want 200 application/zip", code, hdr.Get("Content-Type"))
	}
	zr, err := zip.NewReader(bytes.NewReader([]byte(zipped)), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	if want := []string{"node01.iso", "node02.iso"}; !slices.Equal(names, want) {
		t.Errorf("archive = %q, want %q", names, want)
	}
	if after, _ := e.hostIn("node01"); after.TokenHash == before.TokenHash {
		t.Error("node01's boot token was not rotated by its ISO build")
	}
}

func TestImportForbidden(t *testing.T) {
	e := newPagesEnv(t)
	for _, user := range []string{"viewer", "operator", "auditor"} {
		ck := e.login(user)
		if code, _ := e.get(ck, "/import"); code != 403 {
			t.Errorf("GET /import as %s = %d, want 403", user, code)
		}
		csv := importHeader + "node01,52:54:00:00:00:01,10.0.0.11/24,10.0.0.1,10.0.0.1,rocky9,\n"
		if code, _ := e.post(ck, "/import/apply", url.Values{"csv": {b64(csv)}, "digest": {sha(csv)}}); code != 403 {
			t.Errorf("POST /import/apply as %s = %d, want 403", user, code)
		}
		if _, ok := e.hostIn("node01"); ok {
			t.Fatalf("node01 created by %s", user)
		}
		_, hosts := e.get(ck, "/profiles")
		mustNotContain(t, "nav of "+user, hosts, `href="/import"`)
	}
}
