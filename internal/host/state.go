package host

import (
	"fmt"
	"time"
)

// State is a host's lifecycle state. States are plain strings so database rows
// and JSON stay readable.
type State string

// The lifecycle states (DESIGN §3).
const (
	StateReady      State = "ready"      // next boot: local disk
	StateReimage    State = "reimage"    // next boot: install, attempt 1
	StateInstalling State = "installing" // an install attempt was served
	StateClean      State = "clean"      // next boot: clean, attempt 1
	StateCleaning   State = "cleaning"   // a clean attempt was served
	StateFailed     State = "failed"     // local disk until an admin acts
	StateHold       State = "hold"       // wait and retry
	StateDiscovered State = "discovered" // seen but not adopted; local disk
)

// States lists every state, in lifecycle order.
var States = []State{StateReady, StateReimage, StateInstalling, StateClean,
	StateCleaning, StateFailed, StateHold, StateDiscovered}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, x := range States {
		if s == x {
			return true
		}
	}
	return false
}

// Event is something that happens to a host: an admin action, a boot being
// served, an installer callback or a deadline passing.
type Event string

// The events.
const (
	EventReimage   Event = "reimage"   // admin: install on next boot
	EventClean     Event = "clean"     // admin: wipe disks on next boot
	EventCancel    Event = "cancel"    // admin: back to ready
	EventRetry     Event = "retry"     // admin: failed → reimage
	EventHold      Event = "hold"      // admin: park the host
	EventRelease   Event = "release"   // admin: hold → ready
	EventAdopt     Event = "adopt"     // admin: discovered → ready
	EventServe     Event = "serve"     // an install or clean script was served
	EventInstalled Event = "installed" // callback from the installer
	EventCleaned   Event = "cleaned"   // callback from the agent
	EventFailed    Event = "failed"    // callback: the install or clean failed
	EventExhausted Event = "exhausted" // a boot came in after the last attempt
	EventTimeout   Event = "timeout"   // the attempt's deadline passed
)

// Events lists every event.
var Events = []Event{EventReimage, EventClean, EventCancel, EventRetry, EventHold,
	EventRelease, EventAdopt, EventServe, EventInstalled, EventCleaned, EventFailed,
	EventExhausted, EventTimeout}

// Valid reports whether e is a known event.
func (e Event) Valid() bool {
	for _, x := range Events {
		if e == x {
			return true
		}
	}
	return false
}

type edge struct {
	from State
	on   Event
}

// transitions is the whole lifecycle as data. Anything not listed is invalid.
var transitions = map[edge]State{
	{StateReady, EventReimage}: StateReimage,
	{StateReady, EventClean}:   StateClean,
	{StateReady, EventHold}:    StateHold,

	{StateReimage, EventServe}:  StateInstalling,
	{StateReimage, EventCancel}: StateReady,
	{StateReimage, EventClean}:  StateClean,
	{StateReimage, EventHold}:   StateHold,

	{StateInstalling, EventServe}:     StateInstalling,
	{StateInstalling, EventInstalled}: StateReady,
	{StateInstalling, EventFailed}:    StateFailed,
	{StateInstalling, EventExhausted}: StateFailed,
	{StateInstalling, EventTimeout}:   StateFailed,
	{StateInstalling, EventCancel}:    StateReady,

	{StateClean, EventServe}:   StateCleaning,
	{StateClean, EventCancel}:  StateReady,
	{StateClean, EventReimage}: StateReimage,
	{StateClean, EventHold}:    StateHold,

	{StateCleaning, EventServe}:     StateCleaning,
	{StateCleaning, EventCleaned}:   StateReady,
	{StateCleaning, EventFailed}:    StateFailed,
	{StateCleaning, EventExhausted}: StateFailed,
	{StateCleaning, EventTimeout}:   StateFailed,
	{StateCleaning, EventCancel}:    StateReady,

	{StateFailed, EventRetry}:   StateReimage,
	{StateFailed, EventReimage}: StateReimage,
	{StateFailed, EventClean}:   StateClean,
	{StateFailed, EventCancel}:  StateReady,
	{StateFailed, EventHold}:    StateHold,

	{StateHold, EventRelease}: StateReady,
	{StateHold, EventCancel}:  StateReady,
	{StateHold, EventReimage}: StateReimage,
	{StateHold, EventClean}:   StateClean,

	{StateDiscovered, EventAdopt}: StateReady,
	{StateDiscovered, EventHold}:  StateHold,
}

// Next returns the state that follows s on e, or ErrInvalidTransition.
func Next(s State, e Event) (State, error) {
	if to, ok := transitions[edge{s, e}]; ok {
		return to, nil
	}
	return "", fmt.Errorf("%w: %s on %s", ErrInvalidTransition, e, s)
}

// Action is what a boot is served.
type Action string

// The boot actions.
const (
	ActionLocalboot Action = "localboot" // exit 1: the firmware boots the disk
	ActionInstall   Action = "install"   // the profile's installer
	ActionClean     Action = "clean"     // the agent ramdisk, wiping disks
	ActionHold      Action = "hold"      // sleep, then chain again
)

// Policy bounds install and clean attempts.
type Policy struct {
	MaxAttempts    int           // 3
	InstallTimeout time.Duration // 2h: deadline of one install attempt
	CleanTimeout   time.Duration // 6h: deadline of one clean attempt
}

// DefaultPolicy is used where no policy is configured.
var DefaultPolicy = Policy{MaxAttempts: 3, InstallTimeout: 2 * time.Hour, CleanTimeout: 6 * time.Hour}

// BootPlan is the decision for one boot: what to serve and, when Event is not
// empty, the transition to store (compare-and-set on the host's version)
// before serving it.
type BootPlan struct {
	Action   Action
	Event    Event     // "" when the boot changes nothing
	To       State     // state after Event
	Attempt  int       // attempt number after Event
	Deadline time.Time // deadline after Event (zero: none)
	Reason   string    // for the audit event
}

// PlanBoot decides what a boot of h at now is served. It is pure: the caller
// stores the transition (if any) atomically and serves Action only when that
// succeeded.
func PlanBoot(h Host, now time.Time, p Policy) BootPlan {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultPolicy.MaxAttempts
	}
	switch h.State {
	case StateHold:
		return BootPlan{Action: ActionHold}
	case StateReimage:
		return BootPlan{Action: ActionInstall, Event: EventServe, To: StateInstalling,
			Attempt: 1, Deadline: now.Add(p.InstallTimeout), Reason: "install attempt 1 served"}
	case StateClean:
		return BootPlan{Action: ActionClean, Event: EventServe, To: StateCleaning,
			Attempt: 1, Deadline: now.Add(p.CleanTimeout), Reason: "clean attempt 1 served"}
	case StateInstalling, StateCleaning:
		action, timeout := ActionInstall, p.InstallTimeout
		if h.State == StateCleaning {
			action, timeout = ActionClean, p.CleanTimeout
		}
		if !h.Deadline.IsZero() && now.After(h.Deadline) {
			return BootPlan{Action: ActionLocalboot, Event: EventTimeout, To: StateFailed,
				Attempt: h.Attempt, Reason: fmt.Sprintf("attempt %d passed its deadline %s", h.Attempt, h.Deadline.UTC().Format(time.RFC3339))}
		}
		if h.Attempt >= p.MaxAttempts {
			return BootPlan{Action: ActionLocalboot, Event: EventExhausted, To: StateFailed,
				Attempt: h.Attempt, Reason: fmt.Sprintf("booted again after the last of %d attempts", p.MaxAttempts)}
		}
		n := h.Attempt + 1
		return BootPlan{Action: action, Event: EventServe, To: h.State, Attempt: n,
			Deadline: now.Add(timeout), Reason: fmt.Sprintf("%s attempt %d served", action, n)}
	default: // ready, failed, discovered, and anything unknown: the disk
		return BootPlan{Action: ActionLocalboot}
	}
}

// Expired reports whether h is in an attempt whose deadline passed at now; the
// caller then applies EventTimeout.
func Expired(h Host, now time.Time) bool {
	return (h.State == StateInstalling || h.State == StateCleaning) &&
		!h.Deadline.IsZero() && now.After(h.Deadline)
}
