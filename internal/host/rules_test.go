package host_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

func TestRequireProfiles(t *testing.T) {
	have := func(names ...string) func(string) bool {
		return func(n string) bool { return slices.Contains(names, n) }
	}
	tests := []struct {
		state        host.State
		profile      string
		thenInstall  bool
		clean        string
		exists       func(string) bool
		wantProfile  string // "" with wantErr false: no error
		wantClean    bool
		wantErr      bool
		wantContains string
	}{
		{state: host.StateReady, exists: have()},
		{state: host.StateHold, exists: have()},
		{state: host.StateReimage, profile: "rocky9", clean: "agent-clean", exists: have("rocky9")},
		{state: host.StateReimage, clean: "agent-clean", exists: have("rocky9"), wantErr: true, wantContains: "has no profile"},
		{state: host.StateReimage, profile: "gone", exists: have("rocky9"), wantErr: true, wantProfile: "gone", wantContains: `profile "gone" of host node01 does not exist`},
		{state: host.StateInstalling, profile: "gone", exists: have(), wantErr: true, wantProfile: "gone"},
		{state: host.StateClean, clean: "agent-clean", exists: have("agent-clean")},
		{state: host.StateClean, clean: "agent-clean", exists: have("rocky9"), wantErr: true, wantClean: true, wantProfile: "agent-clean",
			wantContains: "create it with POST /api/v1/profiles (name agent-clean"},
		{state: host.StateClean, exists: have("rocky9"), wantErr: true, wantClean: true, wantContains: "--clean-profile"},
		{state: host.StateCleaning, clean: "agent-clean", exists: have(), wantErr: true, wantClean: true, wantProfile: "agent-clean"},
		{state: host.StateClean, thenInstall: true, clean: "agent-clean", exists: have("agent-clean"), wantErr: true, wantContains: "has no profile"},
		{state: host.StateClean, thenInstall: true, profile: "rocky9", clean: "agent-clean", exists: have("agent-clean", "rocky9")},
	}
	for _, tt := range tests {
		h := host.Host{Name: "node01", State: tt.state, Profile: tt.profile, CleanThenInstall: tt.thenInstall}
		err := host.RequireProfiles(h, tt.clean, tt.exists)
		if !tt.wantErr {
			if err != nil {
				t.Errorf("RequireProfiles(%s, profile %q, clean %q) = %v, want nil", tt.state, tt.profile, tt.clean, err)
			}
			continue
		}
		var pe *host.ProfileError
		if !errors.As(err, &pe) || !errors.Is(err, host.ErrConflict) || pe.Clean != tt.wantClean || pe.Profile != tt.wantProfile ||
			!strings.Contains(err.Error(), tt.wantContains) {
			t.Errorf("RequireProfiles(%s, profile %q, clean %q) = %#v (%v), want ProfileError{Clean: %v, Profile: %q} containing %q",
				tt.state, tt.profile, tt.clean, pe, err, tt.wantClean, tt.wantProfile, tt.wantContains)
		}
	}
}

// TestAdmitEveryAdminPair: Admit agrees with Next on every (state, admin
// event) pair, and every refusal says what to do.
func TestAdmitEveryAdminPair(t *testing.T) {
	admin := []host.Event{host.EventReimage, host.EventClean, host.EventCancel, host.EventRetry,
		host.EventHold, host.EventRelease, host.EventAdopt}
	for _, s := range host.States {
		for _, e := range admin {
			h := host.Host{Name: "node01", State: s, Attempt: 1}
			err := host.Admit(h, e)
			_, nerr := host.Next(s, e)
			if (err == nil) != (nerr == nil) {
				t.Errorf("Admit(%s, %s) = %v, Next says %v", s, e, err, nerr)
				continue
			}
			var te *host.TransitionError
			if err != nil && (!errors.As(err, &te) || !errors.Is(err, host.ErrInvalidTransition) ||
				!strings.HasPrefix(err.Error(), "node01 is ") || !strings.Contains(err.Error(), "; ")) {
				t.Errorf("Admit(%s, %s) = %v, want a TransitionError saying what to do", s, e, err)
			}
		}
	}
	for _, tt := range []struct {
		state host.State
		e     host.Event
		want  string
	}{
		{host.StateInstalling, host.EventReimage, "node01 is installing (attempt 1); cancel it first"},
		{host.StateCleaning, host.EventClean, "node01 is cleaning (attempt 1); cancel it first"},
		{host.StateReady, host.EventCancel, "node01 is ready; there is nothing to cancel"},
		{host.StateReady, host.EventRetry, "node01 is ready; retry only restarts a failed host (use reimage)"},
		{host.StateDiscovered, host.EventReimage, "node01 is discovered; adopt it first"},
		{host.StateFailed, host.EventRelease, "node01 is failed; only a host on hold can be released"},
	} {
		if got := host.Admit(host.Host{Name: "node01", State: tt.state, Attempt: 1}, tt.e); got == nil || got.Error() != tt.want {
			t.Errorf("Admit(%s, %s) = %v, want %q", tt.state, tt.e, got, tt.want)
		}
	}
}

func TestRepeated(t *testing.T) {
	for _, s := range host.States {
		for _, e := range host.Events {
			got := host.Repeated(host.Host{State: s}, e)
			want := (s == host.StateReimage && e == host.EventReimage) || (s == host.StateClean && e == host.EventClean) ||
				(s == host.StateHold && e == host.EventHold)
			if got != want {
				t.Errorf("Repeated(%s, %s) = %v, want %v", s, e, got, want)
			}
		}
	}
}

func TestChanged(t *testing.T) {
	old := validHost()
	old.TokenHash = strings.Repeat("a", 64)
	h := old
	h.MACs = slices.Clone(old.MACs)
	if got := host.Changed(old, h); len(got) != 0 {
		t.Errorf("Changed(same) = %v, want none", got)
	}
	h.IPv4, h.DNS, h.TokenHash, h.VLAN = "10.0.2.16/24", []string{"10.0.2.4"}, strings.Repeat("b", 64), 7
	h.State, h.Attempt = host.StateReimage, 2 // not configuration
	if got, want := host.Changed(old, h), []string{"dns", "ipv4", "token_hash", "vlan"}; !slices.Equal(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
}

// TestRecordJSON: a record has one "event" field naming what happened, and
// both the old and the new shape read back into the same Record.
func TestRecordJSON(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		rec  host.Record
		json string
		old  string // the shape of servers before one "event" field
	}{
		{host.Record{ID: 1, Host: "node01", Actor: "admin", Event: host.EventReimage, From: "ready", To: "reimage", Reason: "r", Time: at},
			`{"id":1,"host":"node01","actor":"admin","event":"reimage","from":"ready","to":"reimage","reason":"r","time":"2026-12-01T10:00:00Z"}`,
			`{"id":1,"host":"node01","actor":"admin","event":"reimage","from":"ready","to":"reimage","reason":"r","time":"2026-12-01T10:00:00Z"}`},
		{host.Record{ID: 2, Host: "node01", Actor: "admin", Action: "update", Fields: []string{"dns", "ipv4"}, Time: at},
			`{"id":2,"host":"node01","actor":"admin","event":"update","fields":["dns","ipv4"],"time":"2026-12-01T10:00:00Z"}`,
			`{"id":2,"host":"node01","actor":"admin","event":"","action":"update","fields":["dns","ipv4"],"time":"2026-12-01T10:00:00Z"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.rec)
		if err != nil || string(b) != tt.json {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", tt.rec, b, err, tt.json)
		}
		for _, in := range []string{tt.json, tt.old} {
			var got host.Record
			if err := json.Unmarshal([]byte(in), &got); err != nil || got.Kind() != tt.rec.Kind() ||
				got.Event != tt.rec.Event || got.Action != tt.rec.Action || !slices.Equal(got.Fields, tt.rec.Fields) {
				t.Errorf("Unmarshal(%s) = %+v, %v; want %+v", in, got, err, tt.rec)
			}
		}
	}
}
