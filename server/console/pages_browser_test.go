package console_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// TestBrowserImportBadRow uploads a CSV with one bad row in a real
// browser: the error shows its line and column, no Apply is offered, and
// nothing is stored. Then the auditor's /audit and the admin's /admin.
func TestBrowserImportBadRow(t *testing.T) {
	e := newConsoleEnv(t)
	e.addProfiles()
	e.addUser("eddie", auth.Grant{Role: auth.RoleEditor})
	e.addUser("audrey", auth.Grant{Role: auth.RoleAuditor})
	e.addUser("ada", auth.Grant{Role: auth.RoleAdmin})
	csv := filepath.Join(t.TempDir(), "hosts.csv")
	if err := os.WriteFile(csv, []byte(importHeader+
		"node01,52:54:00:00:00:01,10.0.0.11/24,10.0.0.1,10.0.0.1,rocky9,team=lab\n"+
		"node02,52:54:00:00:00:02,10.0.0.12/33,10.0.0.1,10.0.0.1,rocky9,team=lab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, e)
	b.login("eddie", testPassword)
	// The dry run of a bad file answers 400 (a form error); Chromium logs it.
	b.allowError("status of 400 (Bad Request) " + e.url + "/import")
	b.navigate("/import")
	b.screenshot("import")
	b.do(chromedp.SetUploadFiles(chromedp.CSS(`input[name=csv]`), []string{csv}))
	b.submit(`#upload-form button[type=submit]`, "/import")
	b.waitText(`#row-errors`, "line 3", 10e9)
	if got := b.text(`#row-errors`); !strings.Contains(got, "column ipv4") {
		t.Errorf("row errors = %q, want line 3, column ipv4", got)
	}
	if n := eval[int](b, `document.querySelectorAll('form[action="/import/apply"]').length`); n != 0 {
		t.Errorf("%d apply forms after a bad row, want 0", n)
	}
	b.screenshot("import-bad-row")
	if code := e.api("GET", "/api/v1/hosts/node01", nil, nil); code != 404 {
		t.Errorf("GET node01 after a refused import = %d, want 404", code)
	}
	b.navigate("/profiles")
	b.screenshot("profiles")
	b.navigate("/profiles/rocky9")
	b.screenshot("profile")
	b.navigate("/images")
	b.screenshot("images")

	a := newBrowser(t, e)
	a.login("audrey", testPassword)
	a.navigate("/audit")
	a.waitText(`#audit-log`, "local:eddie", 10e9)
	a.screenshot("audit")

	ad := newBrowser(t, e)
	ad.login("ada", testPassword)
	ad.navigate("/admin")
	ad.waitText(`#users`, "audrey", 10e9)
	ad.click(`tr[data-user="local:audrey"] button[data-confirm^="confirm-disable"]`)
	ad.waitFor("the confirm dialog", 5e9, func() bool {
		return eval[bool](ad, `!!document.querySelector('tr[data-user="local:audrey"] dialog[open]')`)
	})
	ad.screenshot("admin-confirm")
	ad.submit(`tr[data-user="local:audrey"] dialog[open] button[type=submit]`, "/admin?done=user-disabled")
	ad.screenshot("admin")
}
