package attack_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestBMCPlaintextRefused — finding 4: `bmc set --url http://…` was
// accepted, and every Redfish call then sent the BMC credentials in clear.
// An http:// URL needs insecure_plaintext (API) / --insecure-plaintext
// (CLI).
func TestBMCPlaintextRefused(t *testing.T) {
	s := startServer(t, serverOptions{secretKey: true})
	s.addHost("node01", 1, "")
	for _, u := range []string{"http://127.0.0.1:1", "HTTP://127.0.0.1:1/redfish/v1", "http://bmc.example"} {
		body := map[string]any{"url": u, "username": "admin", "password": "bmc-pw"}
		if a := s.api("PUT", "/api/v1/hosts/node01/bmc", body); a.code != http.StatusBadRequest || a.field() != "url" {
			t.Errorf("PUT bmc with url %s: %s, want 400 naming url", u, a)
		}
	}
	pw := filepath.Join(t.TempDir(), "bmc.pw")
	if err := os.WriteFile(pw, []byte("bmc-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := s.cli("bmc", "set", "node01", "--url", "http://127.0.0.1:1", "--username", "admin",
		"--password-file", pw); err == nil {
		t.Errorf("bootpilot bmc set --url http://…: succeeded, want an error\n%s%s", out, errOut)
	}
	if a := s.api("GET", "/api/v1/hosts/node01/bmc", nil); a.code != http.StatusNotFound {
		t.Errorf("GET bmc after the refused sets: %s, want 404 (nothing stored)", a)
	}
	// The control: https:// is accepted, so the refusals above were about
	// the scheme.
	body := map[string]any{"url": "https://127.0.0.1:1", "username": "admin", "password": "bmc-pw"}
	if a := s.api("PUT", "/api/v1/hosts/node01/bmc", body); a.code != http.StatusOK {
		t.Errorf("PUT bmc with an https URL: %s, want 200", a)
	}
}
