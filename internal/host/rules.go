package host

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ProfileError means a host cannot be flagged, or served, because a profile
// its next boots need does not exist. It is an ErrConflict: the request is
// fine, the server's profiles are not there yet.
type ProfileError struct {
	Host    string // "node01"
	Clean   bool   // the server's clean profile, not the host's install profile
	Profile string // "agent-clean"; "" when none is set
}

// Error says which profile is missing and how to get it, in API terms
// (routes and JSON fields), which the CLI turns into its commands and flags.
func (e *ProfileError) Error() string {
	switch {
	case e.Clean && e.Profile == "":
		return "this server has no clean profile: start it with --clean-profile NAME"
	case e.Clean:
		return fmt.Sprintf("clean profile %q does not exist: create it with POST /api/v1/profiles (name %s, installer none, "+
			"clean_method metadata, the kernel and initrd of the agent ramdisk: see \"The agent\" in the README), "+
			"or start the server with --clean-profile NAME", e.Profile, e.Profile)
	case e.Profile == "":
		return fmt.Sprintf("host %s has no profile to install; pass {\"profile\": …} or set one with PATCH /api/v1/hosts/%s", e.Host, e.Host)
	default:
		return fmt.Sprintf("profile %q of host %s does not exist: create it with POST /api/v1/profiles, "+
			"or pass {\"profile\": …} naming another", e.Profile, e.Host)
	}
}

// FieldName names the request field at fault: "profile" for the host's
// install profile, "" for the clean profile (a server setting).
func (e *ProfileError) FieldName() string {
	if e.Clean {
		return ""
	}
	return "profile"
}

// Unwrap makes a ProfileError an ErrConflict.
func (e *ProfileError) Unwrap() error { return ErrConflict }

// RequireProfiles is the one rule for which profiles a host needs: in
// reimage or installing (and in clean or cleaning with CleanThenInstall) its
// own profile, in clean or cleaning cleanProfile. exists reports whether a
// profile of that name exists. It returns a *ProfileError naming the first
// missing one; the clean profile is checked first.
func RequireProfiles(h Host, cleanProfile string, exists func(name string) bool) error {
	cleaning := h.State == StateClean || h.State == StateCleaning
	installing := h.State == StateReimage || h.State == StateInstalling || (cleaning && h.CleanThenInstall)
	if cleaning && (cleanProfile == "" || !exists(cleanProfile)) {
		return &ProfileError{Host: h.Name, Clean: true, Profile: cleanProfile}
	}
	if installing && (h.Profile == "" || !exists(h.Profile)) {
		return &ProfileError{Host: h.Name, Profile: h.Profile}
	}
	return nil
}

// ConflictError is an ErrConflict with a message for people: what is taken,
// and by whom ("MAC 52:54:00:12:34:56 already belongs to host node02").
type ConflictError struct {
	Field  string // "macs"
	Reason string // "MAC 52:54:00:12:34:56 already belongs to host node02"
}

func (e *ConflictError) Error() string { return e.Reason }

// FieldName names the field whose value is taken.
func (e *ConflictError) FieldName() string { return e.Field }

// Unwrap makes a ConflictError an ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Conflict returns a *ConflictError for field.
func Conflict(field, format string, args ...any) error {
	return &ConflictError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// TransitionError is an admin event refused in the host's current state,
// with what to do instead ("node01 is installing (attempt 1); cancel it
// first"). It is an ErrInvalidTransition.
type TransitionError struct {
	Host    string // "node01"
	State   State  // "installing"
	Attempt int    // 1
	Event   Event  // "reimage"
}

func (e *TransitionError) Error() string {
	return describe(e.Host, e.State, e.Attempt) + "; " + e.hint()
}

// Unwrap makes a TransitionError an ErrInvalidTransition.
func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }

// describe says where a host is, in words: "node01 is installing (attempt 1)".
func describe(name string, s State, attempt int) string {
	what := string(s)
	switch s {
	case StateReimage, StateClean:
		what = "flagged for " + what
	case StateHold:
		what = "on hold"
	case StateInstalling, StateCleaning:
		if attempt > 0 {
			what += fmt.Sprintf(" (attempt %d)", attempt)
		}
	}
	return name + " is " + what
}

func (e *TransitionError) hint() string {
	switch {
	case e.State == StateInstalling || e.State == StateCleaning:
		return "cancel it first"
	case e.State == StateDiscovered && e.Event != EventAdopt:
		return "adopt it first"
	case e.Event == EventRetry:
		return "retry only restarts a failed host (use reimage)"
	case e.Event == EventRelease:
		return "only a host on hold can be released"
	case e.Event == EventAdopt:
		return "only a discovered host can be adopted"
	case e.Event == EventCancel:
		return "there is nothing to cancel"
	case after(e.State, e.Event):
		return "cancel it first to change its profile or options"
	}
	return fmt.Sprintf("%s is not possible now (possible: %s)", e.Event, strings.Join(adminEvents(e.State), ", "))
}

// after reports whether admin event e leads to state s.
func after(s State, e Event) bool {
	for k, to := range transitions {
		if k.on == e && to == s {
			return true
		}
	}
	return false
}

// admin lists the events an admin applies, in the order they are shown.
var admin = []Event{EventReimage, EventClean, EventCancel, EventRetry, EventHold, EventRelease, EventAdopt}

// adminEvents lists the admin events state s allows.
func adminEvents(s State) []string {
	var out []string
	for _, e := range admin {
		if _, ok := transitions[edge{s, e}]; ok {
			out = append(out, string(e))
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// Admit reports whether admin event e may be applied to h now: nil, or a
// *TransitionError that says what to do instead.
func Admit(h Host, e Event) error {
	if _, err := Next(h.State, e); err != nil {
		return &TransitionError{Host: h.Name, State: h.State, Attempt: h.Attempt, Event: e}
	}
	return nil
}

// Repeated reports whether admin event e would put h where it already is:
// reimage of a host flagged for reimage, clean of one flagged for clean,
// hold of one on hold. Repeating such an event changes nothing.
func Repeated(h Host, e Event) bool {
	switch e {
	case EventReimage:
		return h.State == StateReimage
	case EventClean:
		return h.State == StateClean
	case EventHold:
		return h.State == StateHold
	}
	return false
}

// Changed returns the JSON names of the configuration fields that differ
// between old and h, sorted: names only, never values (token_hash is named
// when the boot token changed).
func Changed(old, h Host) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("macs", !slices.Equal(old.MACs, h.MACs))
	add("ipv4", old.IPv4 != h.IPv4)
	add("gateway", old.Gateway != h.Gateway)
	add("dns", !slices.Equal(old.DNS, h.DNS))
	add("ipv6", old.IPv6 != h.IPv6)
	add("gateway6", old.Gateway6 != h.Gateway6)
	add("vlan", old.VLAN != h.VLAN)
	add("hostname", old.Hostname != h.Hostname)
	add("domain", old.Domain != h.Domain)
	add("profile", old.Profile != h.Profile)
	add("clean_then_install", old.CleanThenInstall != h.CleanThenInstall)
	add("token_hash", old.TokenHash != h.TokenHash)
	add("labels", !maps.Equal(old.Labels, h.Labels))
	slices.Sort(out)
	return out
}
