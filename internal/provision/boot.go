package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/token"
)

const scriptTimeoutMS = 30000 // --timeout of every fetch in a stage-1 script

// ErrUnavailable is a server-side failure on the boot path; transports
// answer 503, which the stage-0 script maps to "exit 1" (the local disk).
var ErrUnavailable = errors.New("temporarily unavailable")

// BootRequest is one GET /boot/v1/script: the host's name and boot token
// (HTTP Basic) and what iPXE said about the machine.
type BootRequest struct {
	Name, Token string
	Inventory   host.Inventory
	RequestID   string
	ClientAddr  string
}

// BootResult is the script to serve and the outcome for metrics:
// "localboot", "install", "clean", "hold"; on an error "unauthorized",
// "refused" or "error".
type BootResult struct {
	Outcome string
	Script  []byte
}

// Boot authenticates a booting host, records its inventory, plans its boot
// from its state, stores the transition and returns the script. Errors:
// host.ErrUnauthorized (unknown host or bad token, alike), a
// *host.ValidationError (no or bad MAC), host.ErrForbidden (a MAC not the
// host's), ErrUnavailable (anything that may fix itself: the host boots its
// disk and asks again next boot), context.Canceled. A profile or template
// problem is not an error: the host is served localboot and the problem
// recorded on the host (last_error + a render-failed event).
func (c *Core) Boot(ctx context.Context, r BootRequest) (BootResult, error) {
	cl := Caller{Identity: auth.HostIdentity(r.Name), RequestID: r.RequestID, ClientAddr: r.ClientAddr}
	h, err := c.store.GetHost(ctx, r.Name)
	if err != nil {
		if errors.Is(err, host.ErrNotFound) {
			return BootResult{Outcome: "unauthorized"}, host.ErrUnauthorized
		}
		return c.bootError(ctx, cl, "load host", err)
	}
	if !token.Match(h.TokenHash, r.Token) {
		c.log.Warn("boot: bad token", "host", r.Name, "request_id", r.RequestID)
		return BootResult{Outcome: "unauthorized"}, host.ErrUnauthorized
	}
	inv := r.Inventory
	if inv.MAC == "" {
		// Stage 0 always sends the MAC it booted from; a request without
		// one would skip the check below.
		return BootResult{Outcome: "refused"}, host.Invalid("mac", "mac is required")
	}
	if !slices.Contains(h.MACs, inv.MAC) {
		c.log.Warn("boot: MAC not registered for host", "host", r.Name, "mac", inv.MAC, "request_id", r.RequestID)
		return BootResult{Outcome: "refused"}, fmt.Errorf("%w: MAC %s does not belong to host %s", host.ErrForbidden, inv.MAC, r.Name)
	}
	c.recordInventory(ctx, h, inv)

	plan := host.PlanBoot(h, c.now(), c.opt.Policy)
	if plan.Event == "" {
		return c.serveStatic(h, plan.Action), nil
	}

	// A transition: render inside the locked update so the script served is
	// exactly the attempt stored; a template error aborts the transaction.
	// Profiles are read first: the transaction must not wait for a second
	// connection while it holds the row lock.
	profiles, err := c.bootProfiles(ctx, h)
	if err != nil {
		return c.bootError(ctx, cl, "load profile", err)
	}
	cb, cbHash := token.New()
	if plan.Action == host.ActionInstall {
		if res, err, ok := c.installConfigRenders(ctx, cl, h, plan.Attempt, cb, profiles); !ok {
			return res, err
		}
	}
	var script []byte
	var served host.Action
	after, err := c.store.UpdateHost(ctx, r.Name, func(h *host.Host) ([]host.Record, error) {
		plan := host.PlanBoot(*h, c.now(), c.opt.Policy) // re-plan on the locked row
		if plan.Event == "" {
			return nil, errNoop
		}
		// The attempt first, so the audit record names the attempt served.
		h.Attempt, h.Deadline = plan.Attempt, plan.Deadline
		recs, err := c.transition(h, plan.Event, cl, plan.Reason)
		if err != nil {
			return nil, err
		}
		served, script = plan.Action, nil
		if plan.Action == host.ActionLocalboot {
			return recs, nil
		}
		h.CallbackHash, h.LastCallback = cbHash, ""
		h.LastError = "" // served: whatever stopped an earlier boot is fixed
		script, err = c.renderAction(*h, plan.Action, cb, profiles)
		if err != nil {
			return nil, err
		}
		if plan.Action == host.ActionInstall && profiles[h.Profile].FlipOnServe {
			more, err := c.transition(h, host.EventInstalled, cl, "profile flips on serve")
			if err != nil {
				return nil, err
			}
			h.LastCallback = host.EventInstalled
			recs = append(recs, more...)
		}
		return recs, nil
	})
	switch {
	case errors.Is(err, errNoop):
		// Another boot moved the host first; serve what the state says now.
		h, err := c.store.GetHost(ctx, r.Name)
		if err != nil {
			return c.bootError(ctx, cl, "reload host", err)
		}
		return c.serveStatic(h, host.PlanBoot(h, c.now(), c.opt.Policy).Action), nil
	case err != nil:
		return c.bootError(ctx, cl, "apply boot plan", err)
	case served == host.ActionLocalboot:
		c.afterTransition(after) // attempts exhausted or past the deadline: failed
		return BootResult{Outcome: string(host.ActionLocalboot), Script: []byte(bootscripts.Localboot)}, nil
	default:
		c.log.Info("boot: served", "host", r.Name, "action", served, "request_id", r.RequestID)
		c.afterTransition(after) // flip on serve: eject the virtual media
		return BootResult{Outcome: string(served), Script: script}, nil
	}
}

// serveStatic serves an action that changes no state: localboot or hold. A
// state that needs a transition is never served from here.
func (c *Core) serveStatic(h host.Host, a host.Action) BootResult {
	if a == host.ActionHold {
		script, err := c.renderAction(h, a, "", nil)
		if err != nil {
			c.log.Error("boot: render hold script", "host", h.Name, "err", err)
			script = []byte(bootscripts.Localboot)
		}
		return BootResult{Outcome: string(a), Script: script}
	}
	return BootResult{Outcome: string(host.ActionLocalboot), Script: []byte(bootscripts.Localboot)}
}

// bootError handles a failure on the boot path: a profile or template
// problem (nothing fixes itself by retrying) is served localboot and
// recorded on the host; anything else is ErrUnavailable.
func (c *Core) bootError(ctx context.Context, cl Caller, step string, err error) (BootResult, error) {
	var ve *host.ValidationError
	if errors.As(err, &ve) || errors.Is(err, host.ErrNotFound) || errors.As(err, new(*host.ProfileError)) {
		c.log.Error("boot: cannot build script; serving localboot", "host", cl.Name, "step", step, "request_id", cl.RequestID, "err", err)
		c.recordBootFailure(ctx, cl, bootFailureReason(cl.RequestID, err))
		return BootResult{Outcome: "error", Script: []byte(bootscripts.Localboot)}, nil
	}
	if errors.Is(err, context.Canceled) {
		return BootResult{Outcome: "error"}, err
	}
	c.log.Error("boot: failed; answering 503 (host boots its disk)", "host", cl.Name, "step", step, "request_id", cl.RequestID, "err", err)
	return BootResult{Outcome: "error"}, fmt.Errorf("%w: %s", ErrUnavailable, step)
}

// bootProfiles loads the profiles a boot of h may need: its install profile
// and the clean profile, by name.
func (c *Core) bootProfiles(ctx context.Context, h host.Host) (map[string]host.Profile, error) {
	ps := map[string]host.Profile{}
	for _, name := range []string{h.Profile, c.opt.CleanProfile} {
		if name == "" {
			continue
		}
		p, err := c.store.GetProfile(ctx, name)
		if errors.Is(err, host.ErrNotFound) {
			continue // reported when (and only if) a script needs it
		}
		if err != nil {
			return nil, err
		}
		ps[name] = p
	}
	return ps, nil
}

// scriptData gathers what templates need for h and action a.
func (c *Core) scriptData(h host.Host, a host.Action, cb string, profiles map[string]host.Profile) (bootscripts.ScriptData, error) {
	d := bootscripts.ScriptData{
		Action: a, Host: h, Attempt: h.Attempt, ServerURL: c.opt.ExternalURL,
		CAPEM: c.opt.CAPEM, CAFingerprint: c.opt.CAFingerprint, HoldSeconds: c.opt.HoldSeconds,
		Timeout: scriptTimeoutMS, After: c.opt.AgentAfter,
	}
	if cb != "" {
		d.CallbackURL = fmt.Sprintf("%s/boot/v1/callback/%s/%s", c.opt.ExternalURL, h.Name, cb)
		d.ConfigURL = fmt.Sprintf("%s/boot/v1/config/%s/%s", c.opt.ExternalURL, h.Name, cb)
	}
	profile := ""
	switch a {
	case host.ActionInstall:
		profile = h.Profile
		if profile == "" {
			return d, &host.ProfileError{Host: h.Name}
		}
	case host.ActionClean:
		profile = c.opt.CleanProfile
		if profile == "" {
			return d, &host.ProfileError{Host: h.Name, Clean: true}
		}
	}
	if profile != "" {
		p, ok := profiles[profile]
		if !ok {
			return d, &host.ProfileError{Host: h.Name, Clean: a == host.ActionClean, Profile: profile}
		}
		if p.Installer == host.InstallerImage && a == host.ActionInstall {
			u, err := c.servedImage(p)
			if err != nil {
				return d, host.Invalid("image", "%v", err)
			}
			p.Image = u
		}
		d.Profile = p
	}
	return d, nil
}

func (c *Core) renderAction(h host.Host, a host.Action, cb string, profiles map[string]host.Profile) ([]byte, error) {
	d, err := c.scriptData(h, a, cb, profiles)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := c.render.Script(&buf, d); err != nil {
		return nil, host.Invalid("template", "render %s script: %v", a, err)
	}
	return buf.Bytes(), nil
}

// installConfigRenders renders the profile's own installer config for the
// install attempt about to be served (within the user-template budget,
// output discarded) and reports whether the boot may go on; when not, it
// returns what to answer. When the config cannot render, the host boots its
// disk and the failure is an audit event; the state does not change, so
// fixing the profile lets the next boot install. It runs before the boot's
// transaction, which must not hold the host row while a user template renders.
func (c *Core) installConfigRenders(ctx context.Context, cl Caller, h host.Host, attempt int, cb string, profiles map[string]host.Profile) (BootResult, error, bool) {
	h.Attempt = attempt
	d, err := c.scriptData(h, host.ActionInstall, cb, profiles)
	if err != nil {
		return BootResult{}, nil, true // renderAction reports it, in the transaction
	}
	err = c.render.CheckProfileConfig(ctx, d)
	switch {
	case err == nil:
		return BootResult{}, nil, true
	case errors.Is(err, context.Canceled):
		return BootResult{Outcome: "error"}, err, false // the host went away
	case errors.Is(err, bootscripts.ErrBusy):
		res, err := c.bootError(ctx, cl, "render config", err) // 503: the next boot retries
		return res, err, false
	default:
		c.log.Error("boot: profile config does not render; serving localboot", "host", h.Name, "profile", d.Profile.Name,
			"request_id", cl.RequestID, "err", err)
		c.recordBootFailure(ctx, cl, renderFailureReason(d.Profile.Name, "", cl.RequestID, err))
		return BootResult{Outcome: string(host.ActionLocalboot), Script: []byte(bootscripts.Localboot)}, nil, false
	}
}

// recordBootFailure stores why host cl.Name could not be served what its
// state asks for: a render-failed event and the host's last_error (cleared
// by the next served script). reason must hold no secrets.
func (c *Core) recordBootFailure(ctx context.Context, cl Caller, reason string) {
	_, uerr := c.store.UpdateHost(context.WithoutCancel(ctx), cl.Name, func(h *host.Host) ([]host.Record, error) {
		h.LastError = reason
		rec := cl.record(c.now(), h.Name, "render-failed", reason)
		rec.Attempt = h.Attempt
		return []host.Record{rec}, nil
	})
	if uerr != nil {
		c.log.Error("boot: record render failure", "host", cl.Name, "request_id", cl.RequestID, "err", uerr)
	}
}

// bootFailureReason is the audit text of a boot that fell back to the disk
// for a profile or template problem: a missing profile says which and how
// to create it (names only); anything else points to the log, which has
// the details (template errors may quote the rendered data).
func bootFailureReason(rid string, err error) string {
	var pe *host.ProfileError
	if errors.As(err, &pe) {
		return "the disk was booted: " + pe.Error()
	}
	what := "the boot script cannot be rendered"
	var ve *host.ValidationError
	if errors.As(err, &ve) && ve.Field != "" {
		what += " (" + ve.Field + ")"
	}
	return fmt.Sprintf("the disk was booted: %s; details in the server log (request id %s)", what, rid)
}

// renderFailureReason is the audit text of a render failure: the bound a
// *bootscripts.BudgetError names (never a value), else a pointer to the log,
// which has the details (template errors may quote the rendered data).
func renderFailureReason(profile, file, rid string, err error) string {
	what := "profile " + profile + " config"
	if file != "" {
		what += " " + file
	}
	var be *bootscripts.BudgetError
	if errors.As(err, &be) {
		return fmt.Sprintf("%s cannot be rendered: %v", what, be)
	}
	return fmt.Sprintf("%s cannot be rendered; details in the server log (request id %s)", what, rid)
}

// recordInventory stores what the host reported, at most once a minute when
// nothing changed, so a boot storm does not become a write storm.
func (c *Core) recordInventory(ctx context.Context, h host.Host, inv host.Inventory) {
	old := h.Inventory
	same := old.MAC == inv.MAC && old.UUID == inv.UUID && old.Serial == inv.Serial &&
		old.Asset == inv.Asset && old.Arch == inv.Arch && old.Platform == inv.Platform
	if same && inv.SeenAt.Sub(old.SeenAt) < time.Minute {
		return
	}
	if err := c.store.SetInventory(ctx, h.Name, inv); err != nil {
		c.log.Warn("boot: record inventory", "host", h.Name, "err", err)
	}
}

// CallbackResult says what a callback did: Recorded false for a repeat
// that was already applied.
type CallbackResult struct {
	Recorded bool
	State    host.State
}

// Callback applies what an installer or the agent reports with its
// one-time token: "installed", "cleaned", "failed" or "progress". Unknown
// host and wrong or stale token answer alike, host.ErrStaleToken, so the
// callback cannot enumerate host names.
func (c *Core) Callback(ctx context.Context, name, tok string, ev host.Event, detail, requestID, clientAddr string) (CallbackResult, error) {
	switch ev {
	case host.EventInstalled, host.EventCleaned, host.EventFailed, "progress":
	default:
		return CallbackResult{}, host.Invalid("event", "%q is not installed, cleaned, failed or progress", ev)
	}
	cl := Caller{Identity: auth.HostIdentity(name), RequestID: requestID, ClientAddr: clientAddr}
	detail = host.CleanText(detail, host.MaxDetailText) // no terminal escapes reach the CLI
	h, err := c.store.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
		if !token.Match(h.CallbackHash, tok) {
			return nil, host.ErrStaleToken
		}
		if h.LastCallback == "" && h.State != host.StateInstalling && h.State != host.StateCleaning {
			// The attempt this token belonged to was cancelled, failed or
			// timed out: it reports nothing any more.
			return nil, host.ErrStaleToken
		}
		if ev == "progress" {
			if h.LastCallback != "" {
				return nil, errNoop
			}
			rec := cl.record(c.now(), h.Name, "progress", detail)
			rec.Attempt = h.Attempt
			return []host.Record{rec}, nil
		}
		if h.LastCallback == ev {
			return nil, errNoop // a repeated callback: already applied
		}
		if h.LastCallback != "" {
			return nil, fmt.Errorf("%w: this attempt already reported %s", host.ErrConflict, h.LastCallback)
		}
		reason := detail
		if reason == "" {
			reason = fmt.Sprintf("attempt %d reported %s", h.Attempt, ev)
		}
		recs, err := c.transition(h, ev, cl, reason)
		if err != nil {
			return nil, err
		}
		h.LastCallback = ev
		if ev == host.EventCleaned && h.CleanThenInstall {
			h.CleanThenInstall = false
			more, err := c.transition(h, host.EventReimage, cl, "clean then install")
			if err != nil {
				return nil, err
			}
			recs = append(recs, more...)
		}
		return recs, nil
	})
	switch {
	case errors.Is(err, errNoop):
		return CallbackResult{}, nil
	case errors.Is(err, host.ErrNotFound):
		return CallbackResult{}, host.ErrStaleToken // do not reveal which hosts exist
	case err != nil:
		return CallbackResult{}, err
	}
	c.log.Info("callback", "host", name, "event", ev, "state", h.State, "request_id", requestID)
	c.afterTransition(h) // ready or failed: eject the virtual media, clear the boot override
	return CallbackResult{Recorded: true, State: h.State}, nil
}

// InstallerConfig renders file (kickstart, preseed, user-data…) for the
// install attempt that token tok belongs to. Errors: host.ErrStaleToken
// (unknown host, wrong token, attempt over), host.ErrNotFound (no such
// file), bootscripts.ErrBusy (retry), context.Canceled, else a render error
// (also recorded on the host).
func (c *Core) InstallerConfig(ctx context.Context, name, tok, file, requestID, clientAddr string) ([]byte, error) {
	h, err := c.store.GetHost(ctx, name)
	if err != nil || !token.Match(h.CallbackHash, tok) || h.State != host.StateInstalling {
		if err != nil && !errors.Is(err, host.ErrNotFound) {
			return nil, err
		}
		return nil, host.ErrStaleToken
	}
	profiles, err := c.bootProfiles(ctx, h)
	if err != nil {
		return nil, err
	}
	d, err := c.scriptData(h, host.ActionInstall, tok, profiles)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := c.render.ConfigContext(ctx, &buf, file, d); err != nil {
		if errors.Is(err, host.ErrNotFound) || errors.Is(err, bootscripts.ErrBusy) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		// The profile's config (or the host's data) cannot make this file:
		// the installer gets the error, the host an audit event.
		cl := Caller{Identity: auth.HostIdentity(name), RequestID: requestID, ClientAddr: clientAddr}
		c.recordBootFailure(ctx, cl, renderFailureReason(d.Profile.Name, file, requestID, err))
		return nil, fmt.Errorf("render %s for %s: %w", file, name, err)
	}
	return buf.Bytes(), nil
}
