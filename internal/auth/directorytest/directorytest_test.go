package directorytest_test

import (
	"testing"

	"github.com/bootpilot/bootpilot/internal/auth/directorytest"
)

// TestSlapdFixture checks the OpenLDAP fixture the auth tests rely on:
// the server answers, and Stop is idempotent.
func TestSlapdFixture(t *testing.T) {
	d := directorytest.StartSlapd(t)
	if d.URL == "" || d.Group("bp-lab-ops") == "" || d.Password("alice") == "" {
		t.Fatalf("incomplete Dir: %+v", d)
	}
	d.Stop()
	d.Stop()
}

// TestSambaADFixture checks the Samba AD fixture starts, stops and restarts.
func TestSambaADFixture(t *testing.T) {
	d := directorytest.StartSambaAD(t)
	if d.Group("lab-team") == "" || d.Password("bob") == "" {
		t.Fatalf("incomplete Dir: %+v", d)
	}
	d.Stop()
	d.Restart(t)
}
