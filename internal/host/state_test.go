package host_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

// TestNextEveryPair checks every (state, event) pair against the lifecycle of
// DESIGN §3, written out here independently of the transition table.
func TestNextEveryPair(t *testing.T) {
	want := map[host.State]map[host.Event]host.State{
		host.StateReady:      {"reimage": "reimage", "clean": "clean", "hold": "hold"},
		host.StateReimage:    {"serve": "installing", "cancel": "ready", "clean": "clean", "hold": "hold"},
		host.StateInstalling: {"serve": "installing", "installed": "ready", "failed": "failed", "exhausted": "failed", "timeout": "failed", "cancel": "ready"},
		host.StateClean:      {"serve": "cleaning", "cancel": "ready", "reimage": "reimage", "hold": "hold"},
		host.StateCleaning:   {"serve": "cleaning", "cleaned": "ready", "failed": "failed", "exhausted": "failed", "timeout": "failed", "cancel": "ready"},
		host.StateFailed:     {"retry": "reimage", "reimage": "reimage", "clean": "clean", "cancel": "ready", "hold": "hold"},
		host.StateHold:       {"release": "ready", "cancel": "ready", "reimage": "reimage", "clean": "clean"},
		host.StateDiscovered: {"adopt": "ready", "hold": "hold"},
	}
	for _, s := range host.States {
		for _, e := range host.Events {
			got, err := host.Next(s, e)
			to, ok := want[s][e]
			switch {
			case ok && (err != nil || got != to):
				t.Errorf("Next(%q, %q) = %q, %v; want %q", s, e, got, err, to)
			case !ok && !errors.Is(err, host.ErrInvalidTransition):
				t.Errorf("Next(%q, %q) = %q, %v; want ErrInvalidTransition", s, e, got, err)
			}
		}
	}
}

func TestPlanBoot(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	p := host.Policy{MaxAttempts: 3, InstallTimeout: time.Hour, CleanTimeout: 2 * time.Hour}
	tests := []struct {
		name    string
		h       host.Host
		action  host.Action
		event   host.Event
		to      host.State
		attempt int
	}{
		{"ready boots disk", host.Host{State: "ready"}, "localboot", "", "", 0},
		{"failed never loops", host.Host{State: "failed", Attempt: 3}, "localboot", "", "", 0},
		{"discovered boots disk", host.Host{State: "discovered"}, "localboot", "", "", 0},
		{"hold waits", host.Host{State: "hold"}, "hold", "", "", 0},
		{"reimage serves attempt 1", host.Host{State: "reimage"}, "install", "serve", "installing", 1},
		{"installing serves attempt 2", host.Host{State: "installing", Attempt: 1, Deadline: now.Add(time.Minute)}, "install", "serve", "installing", 2},
		{"installing exhausted", host.Host{State: "installing", Attempt: 3, Deadline: now.Add(time.Minute)}, "localboot", "exhausted", "failed", 3},
		{"installing past deadline", host.Host{State: "installing", Attempt: 1, Deadline: now.Add(-time.Second)}, "localboot", "timeout", "failed", 1},
		{"clean serves attempt 1", host.Host{State: "clean"}, "clean", "serve", "cleaning", 1},
		{"cleaning serves attempt 3", host.Host{State: "cleaning", Attempt: 2}, "clean", "serve", "cleaning", 3},
		{"unknown state boots disk", host.Host{State: "bogus"}, "localboot", "", "", 0},
	}
	for _, tt := range tests {
		got := host.PlanBoot(tt.h, now, p)
		if got.Action != tt.action || got.Event != tt.event || got.To != tt.to || got.Attempt != tt.attempt {
			t.Errorf("%s: PlanBoot = %+v, want action %s event %q to %q attempt %d", tt.name, got, tt.action, tt.event, tt.to, tt.attempt)
		}
		if got.Event != "" {
			if to, err := host.Next(tt.h.State, got.Event); err != nil || to != got.To {
				t.Errorf("%s: plan %s→%s disagrees with Next: %q, %v", tt.name, got.Event, got.To, to, err)
			}
		}
		if got.Event == host.EventServe && !got.Deadline.After(now) {
			t.Errorf("%s: deadline %v not after now", tt.name, got.Deadline)
		}
	}
}
