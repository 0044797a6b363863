package host_test

import (
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

// TestNextBoot: the preview's action and attempt are PlanBoot's, and the
// host is left alone.
func TestNextBoot(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	p := host.Policy{MaxAttempts: 3, InstallTimeout: time.Hour, CleanTimeout: time.Hour}
	cases := []struct {
		state   host.State
		attempt int
		expired bool
		action  host.Action
		next    int
	}{
		{host.StateReady, 2, false, host.ActionLocalboot, 2},
		{host.StateReimage, 0, false, host.ActionInstall, 1},
		{host.StateInstalling, 1, false, host.ActionInstall, 2},
		{host.StateInstalling, 3, false, host.ActionLocalboot, 3},
		{host.StateInstalling, 1, true, host.ActionLocalboot, 1},
		{host.StateClean, 0, false, host.ActionClean, 1},
		{host.StateCleaning, 2, false, host.ActionClean, 3},
		{host.StateHold, 0, false, host.ActionHold, 0},
		{host.StateFailed, 3, false, host.ActionLocalboot, 3},
		{host.StateDiscovered, 0, false, host.ActionLocalboot, 0},
	}
	for _, tc := range cases {
		h := host.Host{Name: "node01", State: tc.state, Attempt: tc.attempt, Deadline: now.Add(time.Minute)}
		if tc.expired {
			h.Deadline = now.Add(-time.Minute)
		}
		a, n := host.NextBoot(h, now, p)
		if a != tc.action || n != tc.next {
			t.Errorf("NextBoot(%s, attempt %d, expired %v) = %q, %d, want %q, %d", tc.state, tc.attempt, tc.expired, a, n, tc.action, tc.next)
		}
	}
}
