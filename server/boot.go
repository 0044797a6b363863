package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/token"
)

const scriptTimeoutMS = 30000 // --timeout of every fetch in a stage-1 script

// ipxe writes a script answer.
func ipxe(c *gin.Context, script []byte) {
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", script)
}

// localboot serves the fail-safe script.
func (s *Server) localboot(c *gin.Context) {
	ipxe(c, []byte(bootscripts.Localboot))
}

// bootScript answers GET /boot/v1/script: authenticate the host (HTTP Basic,
// name + boot token), record its inventory, decide from its state, store the
// transition, serve the script. Every failure ends in a 5xx or localboot.
func (s *Server) bootScript(c *gin.Context) {
	ctx := c.Request.Context()
	name, tok, ok := c.Request.BasicAuth()
	if !ok {
		// iPXE sends credentials only after a challenge.
		c.Header("WWW-Authenticate", `Basic realm="bootpilot"`)
		c.String(http.StatusUnauthorized, "credentials required\n")
		return
	}
	h, err := s.store.GetHost(ctx, name)
	if err != nil {
		if errors.Is(err, host.ErrNotFound) {
			s.metrics.boot("unauthorized")
			c.Header("WWW-Authenticate", `Basic realm="bootpilot"`)
			c.String(http.StatusUnauthorized, "unknown host or bad token\n")
			return
		}
		s.bootError(c, name, "load host", err)
		return
	}
	if !token.Match(h.TokenHash, tok) {
		s.metrics.boot("unauthorized")
		s.log.Warn("boot: bad token", "host", name, "request_id", requestID(c))
		c.Header("WWW-Authenticate", `Basic realm="bootpilot"`)
		c.String(http.StatusUnauthorized, "unknown host or bad token\n")
		return
	}
	inv, err := inventory(c, s.now())
	if err != nil {
		s.metrics.boot("refused")
		c.String(http.StatusBadRequest, "%s\n", err)
		return
	}
	if inv.MAC == "" {
		// Stage 0 always sends the MAC it booted from; a request without
		// one would skip the check below.
		s.metrics.boot("refused")
		c.String(http.StatusBadRequest, "mac is required\n")
		return
	}
	if !slices.Contains(h.MACs, inv.MAC) {
		s.metrics.boot("refused")
		s.log.Warn("boot: MAC not registered for host", "host", name, "mac", inv.MAC, "request_id", requestID(c))
		c.String(http.StatusForbidden, "MAC %s does not belong to host %s\n", inv.MAC, name)
		return
	}
	s.recordInventory(c, h, inv)

	plan := host.PlanBoot(h, s.now(), s.opt.Policy)
	if plan.Event == "" {
		s.serveStatic(c, h, plan.Action)
		return
	}

	// A transition: render inside the locked update so the script served is
	// exactly the attempt stored; a template error aborts the transaction.
	// Profiles are read first: the transaction must not wait for a second
	// connection while it holds the row lock.
	profiles, err := s.bootProfiles(ctx, h)
	if err != nil {
		s.bootError(c, name, "load profile", err)
		return
	}
	cb, cbHash := token.New()
	if plan.Action == host.ActionInstall && !s.installConfigRenders(c, h, plan.Attempt, cb, profiles) {
		return
	}
	var script []byte
	var served host.Action
	after, err := s.store.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
		plan := host.PlanBoot(*h, s.now(), s.opt.Policy) // re-plan on the locked row
		if plan.Event == "" {
			return nil, errNoop
		}
		// The attempt first, so the audit record names the attempt served.
		h.Attempt, h.Deadline = plan.Attempt, plan.Deadline
		recs, err := s.transition(h, plan.Event, "boot", requestID(c), plan.Reason)
		if err != nil {
			return nil, err
		}
		served, script = plan.Action, nil
		if plan.Action == host.ActionLocalboot {
			return recs, nil
		}
		h.CallbackHash, h.LastCallback = cbHash, ""
		h.LastError = "" // served: whatever stopped an earlier boot is fixed
		script, err = s.renderAction(*h, plan.Action, cb, profiles)
		if err != nil {
			return nil, err
		}
		if plan.Action == host.ActionInstall && profiles[h.Profile].FlipOnServe {
			more, err := s.transition(h, host.EventInstalled, "boot", requestID(c), "profile flips on serve")
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
		h, err := s.store.GetHost(ctx, name)
		if err != nil {
			s.bootError(c, name, "reload host", err)
			return
		}
		s.serveStatic(c, h, host.PlanBoot(h, s.now(), s.opt.Policy).Action)
	case err != nil:
		s.bootError(c, name, "apply boot plan", err)
	case served == host.ActionLocalboot:
		s.metrics.boot(string(host.ActionLocalboot))
		s.localboot(c)
		s.afterTransition(after) // attempts exhausted or past the deadline: failed
	default:
		s.metrics.boot(string(served))
		s.log.Info("boot: served", "host", name, "action", served, "request_id", requestID(c))
		ipxe(c, script)
		s.afterTransition(after) // flip on serve: eject the virtual media
	}
}

// serveStatic serves an action that changes no state: localboot or hold. A
// state that needs a transition is never served from here.
func (s *Server) serveStatic(c *gin.Context, h host.Host, a host.Action) {
	if a == host.ActionHold {
		script, err := s.renderAction(h, a, "", nil)
		if err != nil {
			s.log.Error("boot: render hold script", "host", h.Name, "err", err)
			script = []byte(bootscripts.Localboot)
		}
		s.metrics.boot(string(a))
		ipxe(c, script)
		return
	}
	s.metrics.boot(string(host.ActionLocalboot))
	s.localboot(c)
}

// bootError answers a server-side failure on the boot path: 503, which the
// stage-0 script maps to "exit 1" (the local disk).
func (s *Server) bootError(c *gin.Context, name, step string, err error) {
	s.metrics.boot("error")
	var ve *host.ValidationError
	if errors.As(err, &ve) || errors.Is(err, host.ErrNotFound) || errors.As(err, new(*host.ProfileError)) {
		// A profile or template problem: nothing will fix itself by retrying.
		s.log.Error("boot: cannot build script; serving localboot", "host", name, "step", step, "request_id", requestID(c), "err", err)
		s.recordBootFailure(c, name, bootFailureReason(requestID(c), err))
		s.localboot(c)
		return
	}
	s.log.Error("boot: failed; answering 503 (host boots its disk)", "host", name, "step", step, "request_id", requestID(c), "err", err)
	c.String(http.StatusServiceUnavailable, "temporarily unavailable\n")
}

// bootProfiles loads the profiles a boot of h may need: its install profile
// and the clean profile, by name.
func (s *Server) bootProfiles(ctx context.Context, h host.Host) (map[string]host.Profile, error) {
	ps := map[string]host.Profile{}
	for _, name := range []string{h.Profile, s.opt.CleanProfile} {
		if name == "" {
			continue
		}
		p, err := s.store.GetProfile(ctx, name)
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
func (s *Server) scriptData(h host.Host, a host.Action, cb string, profiles map[string]host.Profile) (bootscripts.ScriptData, error) {
	d := bootscripts.ScriptData{
		Action: a, Host: h, Attempt: h.Attempt, ServerURL: s.opt.ExternalURL,
		CAPEM: s.caPEM, CAFingerprint: s.caFP, HoldSeconds: s.opt.HoldSeconds,
		Timeout: scriptTimeoutMS, After: s.opt.AgentAfter,
	}
	if cb != "" {
		d.CallbackURL = fmt.Sprintf("%s/boot/v1/callback/%s/%s", s.opt.ExternalURL, h.Name, cb)
		d.ConfigURL = fmt.Sprintf("%s/boot/v1/config/%s/%s", s.opt.ExternalURL, h.Name, cb)
	}
	profile := ""
	switch a {
	case host.ActionInstall:
		profile = h.Profile
		if profile == "" {
			return d, &host.ProfileError{Host: h.Name}
		}
	case host.ActionClean:
		profile = s.opt.CleanProfile
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
			u, err := s.servedImage(p)
			if err != nil {
				return d, host.Invalid("image", "%v", err)
			}
			p.Image = u
		}
		d.Profile = p
	}
	return d, nil
}

func (s *Server) renderAction(h host.Host, a host.Action, cb string, profiles map[string]host.Profile) ([]byte, error) {
	d, err := s.scriptData(h, a, cb, profiles)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := s.render.Script(&buf, d); err != nil {
		return nil, host.Invalid("template", "render %s script: %v", a, err)
	}
	return buf.Bytes(), nil
}

// installConfigRenders renders the profile's own installer config for the
// install attempt about to be served (within the user-template budget,
// output discarded) and reports whether the boot may go on. When it cannot
// render, the host boots its disk and the failure is an audit event; the
// state does not change, so fixing the profile lets the next boot install.
// It runs before the boot's transaction, which must not hold the host row
// while a user template renders.
func (s *Server) installConfigRenders(c *gin.Context, h host.Host, attempt int, cb string, profiles map[string]host.Profile) bool {
	h.Attempt = attempt
	d, err := s.scriptData(h, host.ActionInstall, cb, profiles)
	if err != nil {
		return true // renderAction reports it, in the transaction
	}
	err = s.render.CheckProfileConfig(c.Request.Context(), d)
	switch {
	case err == nil:
		return true
	case errors.Is(err, context.Canceled):
		c.Abort() // the host went away
	case errors.Is(err, bootscripts.ErrBusy):
		s.bootError(c, h.Name, "render config", err) // 503: the host boots its disk, the next boot retries
	default:
		s.log.Error("boot: profile config does not render; serving localboot", "host", h.Name, "profile", d.Profile.Name,
			"request_id", requestID(c), "err", err)
		s.recordRenderFailure(c, h.Name, d.Profile.Name, "", err)
		s.metrics.boot(string(host.ActionLocalboot))
		s.localboot(c)
	}
	return false
}

// recordRenderFailure stores the audit event of a profile config (file ""
// for all of them) that could not be rendered for host name.
func (s *Server) recordRenderFailure(c *gin.Context, name, profile, file string, err error) {
	s.recordBootFailure(c, name, renderFailureReason(profile, file, requestID(c), err))
}

// recordBootFailure stores why host name could not be served what its state
// asks for: a render-failed event and the host's last_error (cleared by the
// next served script). reason must hold no secrets.
func (s *Server) recordBootFailure(c *gin.Context, name, reason string) {
	_, uerr := s.store.UpdateHost(c.Request.Context(), name, func(h *host.Host) ([]host.Record, error) {
		h.LastError = reason
		return []host.Record{{Host: h.Name, Actor: "boot", Action: "render-failed", Attempt: h.Attempt,
			Reason: reason, RequestID: requestID(c), Time: s.now().UTC()}}, nil
	})
	if uerr != nil {
		s.log.Error("boot: record render failure", "host", name, "request_id", requestID(c), "err", uerr)
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

// inventory reads what iPXE said about the machine.
func inventory(c *gin.Context, now time.Time) (host.Inventory, error) {
	inv := host.Inventory{
		UUID: c.Query("uuid"), Serial: c.Query("serial"), Asset: c.Query("asset"),
		Arch: c.Query("arch"), Platform: c.Query("platform"), SeenAt: now.UTC(),
	}
	if m := c.Query("mac"); m != "" {
		n, err := host.NormalizeMAC(m)
		if err != nil {
			return inv, fmt.Errorf("mac %q is not a MAC address", m)
		}
		inv.MAC = n
	}
	for _, v := range []*string{&inv.UUID, &inv.Serial, &inv.Asset, &inv.Arch, &inv.Platform} {
		*v = host.CleanText(*v, host.MaxInventoryText) // no terminal escapes reach the CLI
	}
	return inv, nil
}

// recordInventory stores what the host reported, at most once a minute when
// nothing changed, so a boot storm does not become a write storm.
func (s *Server) recordInventory(c *gin.Context, h host.Host, inv host.Inventory) {
	old := h.Inventory
	same := old.MAC == inv.MAC && old.UUID == inv.UUID && old.Serial == inv.Serial &&
		old.Asset == inv.Asset && old.Arch == inv.Arch && old.Platform == inv.Platform
	if same && inv.SeenAt.Sub(old.SeenAt) < time.Minute {
		return
	}
	if err := s.store.SetInventory(c.Request.Context(), h.Name, inv); err != nil {
		s.log.Warn("boot: record inventory", "host", h.Name, "err", err)
	}
}

// callbackBody is what installers and the agent POST.
type callbackBody struct {
	Event  host.Event `json:"event"`  // "installed", "cleaned", "failed", "progress"
	Detail string     `json:"detail"` // free text, at most 1000 bytes kept
}

// callback answers POST /boot/v1/callback/{name}/{token}.
func (s *Server) callback(c *gin.Context) {
	name, tok := c.Param("name"), c.Param("token")
	var body callbackBody
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err := dec.Decode(&body); err != nil {
		s.fail(c, host.Invalid("body", "want JSON like {\"event\":\"installed\"}: %v", err))
		return
	}
	switch body.Event {
	case host.EventInstalled, host.EventCleaned, host.EventFailed, "progress":
	default:
		s.fail(c, host.Invalid("event", "%q is not installed, cleaned, failed or progress", body.Event))
		return
	}
	body.Detail = host.CleanText(body.Detail, host.MaxDetailText) // no terminal escapes reach the CLI
	h, err := s.store.UpdateHost(c.Request.Context(), name, func(h *host.Host) ([]host.Record, error) {
		// Unknown host and wrong token answer alike (host.ErrStaleToken,
		// nothing more), so the callback cannot enumerate host names.
		if !token.Match(h.CallbackHash, tok) {
			return nil, host.ErrStaleToken
		}
		if h.LastCallback == "" && h.State != host.StateInstalling && h.State != host.StateCleaning {
			// The attempt this token belonged to was cancelled, failed or
			// timed out: it reports nothing any more.
			return nil, host.ErrStaleToken
		}
		if body.Event == "progress" {
			if h.LastCallback != "" {
				return nil, errNoop
			}
			return []host.Record{{Host: h.Name, Actor: "callback", Action: "progress", Attempt: h.Attempt,
				Reason: body.Detail, RequestID: requestID(c), Time: s.now().UTC()}}, nil
		}
		if h.LastCallback == body.Event {
			return nil, errNoop // a repeated callback: already applied
		}
		if h.LastCallback != "" {
			return nil, fmt.Errorf("%w: this attempt already reported %s", host.ErrConflict, h.LastCallback)
		}
		reason := body.Detail
		if reason == "" {
			reason = fmt.Sprintf("attempt %d reported %s", h.Attempt, body.Event)
		}
		recs, err := s.transition(h, body.Event, "callback", requestID(c), reason)
		if err != nil {
			return nil, err
		}
		h.LastCallback = body.Event
		if body.Event == host.EventCleaned && h.CleanThenInstall {
			h.CleanThenInstall = false
			more, err := s.transition(h, host.EventReimage, "callback", requestID(c), "clean then install")
			if err != nil {
				return nil, err
			}
			recs = append(recs, more...)
		}
		return recs, nil
	})
	switch {
	case errors.Is(err, errNoop):
		c.JSON(http.StatusOK, gin.H{"status": "already recorded"})
	case errors.Is(err, host.ErrNotFound):
		s.fail(c, host.ErrStaleToken) // do not reveal which hosts exist
	case err != nil:
		s.fail(c, err)
	default:
		s.metrics.callback(string(body.Event))
		s.log.Info("callback", "host", name, "event", body.Event, "state", h.State, "request_id", requestID(c))
		c.JSON(http.StatusOK, gin.H{"status": "recorded", "state": h.State})
		s.afterTransition(h) // ready or failed: eject the virtual media, clear the boot override
	}
}

// installerConfig answers GET /boot/v1/config/{name}/{token}/{file}: the
// kickstart, preseed or user-data of the attempt the token belongs to.
func (s *Server) installerConfig(c *gin.Context) {
	ctx := c.Request.Context()
	name, tok, file := c.Param("name"), c.Param("token"), c.Param("file")
	h, err := s.store.GetHost(ctx, name)
	if err != nil || !token.Match(h.CallbackHash, tok) || h.State != host.StateInstalling {
		if err != nil && !errors.Is(err, host.ErrNotFound) {
			s.fail(c, err)
			return
		}
		s.fail(c, host.ErrStaleToken)
		return
	}
	profiles, err := s.bootProfiles(ctx, h)
	if err != nil {
		s.fail(c, err)
		return
	}
	d, err := s.scriptData(h, host.ActionInstall, tok, profiles)
	if err != nil {
		s.fail(c, err)
		return
	}
	var buf bytes.Buffer
	if err := s.render.ConfigContext(ctx, &buf, file, d); err != nil {
		switch {
		case errors.Is(err, host.ErrNotFound), errors.Is(err, bootscripts.ErrBusy):
			s.fail(c, err) // 404: no such file; 503: the installer retries
		case errors.Is(err, context.Canceled):
			c.Abort() // the installer went away
		default:
			// The profile's config (or the host's data) cannot make this
			// file: the installer gets the error, the host an audit event.
			s.recordRenderFailure(c, name, d.Profile.Name, file, err)
			s.fail(c, fmt.Errorf("render %s for %s: %w", file, name, err))
		}
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", buf.Bytes())
}
