package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/token"
)

// HostUpdate is a typed partial update of a host's configuration: nil
// fields are left alone. State, attempt and version change only through
// lifecycle actions. It is also the wire type of PATCH /api/v1/hosts/{name}.
type HostUpdate struct {
	MACs             *[]string    `json:"macs,omitempty"`
	IPv4             *string      `json:"ipv4,omitempty"`
	Gateway          *string      `json:"gateway,omitempty"`
	DNS              *[]string    `json:"dns,omitempty"`
	IPv6             *string      `json:"ipv6,omitempty"`
	Gateway6         *string      `json:"gateway6,omitempty"`
	VLAN             *int         `json:"vlan,omitempty"`
	Hostname         *string      `json:"hostname,omitempty"`
	Domain           *string      `json:"domain,omitempty"`
	Profile          *string      `json:"profile,omitempty"`
	CleanThenInstall *bool        `json:"clean_then_install,omitempty"`
	Labels           *host.Labels `json:"labels,omitempty"`
	// TokenHash sets the boot token by its SHA-256 (hex): imports of ISOs
	// built offline. The token itself never reaches the server.
	TokenHash *string `json:"token_hash,omitempty"`
}

var hexHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// apply overlays u onto h.
func (u HostUpdate) apply(h *host.Host) error {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	if u.MACs != nil {
		h.MACs = slices.Clone(*u.MACs)
	}
	if u.DNS != nil {
		h.DNS = slices.Clone(*u.DNS)
	}
	set(&h.IPv4, u.IPv4)
	set(&h.Gateway, u.Gateway)
	set(&h.IPv6, u.IPv6)
	set(&h.Gateway6, u.Gateway6)
	set(&h.Hostname, u.Hostname)
	set(&h.Domain, u.Domain)
	set(&h.Profile, u.Profile)
	if u.VLAN != nil {
		h.VLAN = *u.VLAN
	}
	if u.CleanThenInstall != nil {
		h.CleanThenInstall = *u.CleanThenInstall
	}
	if u.Labels != nil {
		h.Labels = maps.Clone(*u.Labels)
		if len(h.Labels) == 0 {
			h.Labels = nil
		}
	}
	if u.TokenHash != nil {
		if !hexHashRE.MatchString(*u.TokenHash) {
			return host.Invalid("token_hash", "must be the SHA-256 of the token as 64 lower-case hex digits")
		}
		h.TokenHash = *u.TokenHash
	}
	return nil
}

// NewHost is a host to register: its name, its first state (ready or
// discovered; "" is ready) and its configuration. It is also the wire type
// of POST /api/v1/hosts.
type NewHost struct {
	Name  string     `json:"name"`
	State host.State `json:"state,omitempty"`
	HostUpdate
}

// ListHosts returns the hosts cl may see, filtered and paged by f.
func (c *Core) ListHosts(ctx context.Context, cl Caller, f store.HostFilter) ([]host.Host, error) {
	if err := cl.Authorize(auth.OpHostList, nil); err != nil {
		return nil, err
	}
	if f.State != "" && !f.State.Valid() {
		return nil, host.Invalid("state", "%q is not a state", f.State)
	}
	scopeHosts(&f, cl.Scopes(auth.PermRead))
	return c.store.ListHosts(ctx, f)
}

// scopeHosts limits f to the hosts the selectors match (none: no limit).
func scopeHosts(f *store.HostFilter, sels []auth.Selector) {
	for _, s := range sels {
		if len(s) == 0 {
			return // an unscoped grant: every host
		}
	}
	f.Scoped = true
	for _, s := range sels {
		f.Scopes = append(f.Scopes, map[string]string(s))
	}
}

// GetHost returns host name if cl may see it.
func (c *Core) GetHost(ctx context.Context, cl Caller, name string) (host.Host, error) {
	return c.authorizeHost(ctx, cl, auth.OpHostGet, name)
}

// checkProfile refuses a profile name that does not exist.
func (c *Core) checkProfile(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	if _, err := c.store.GetProfile(ctx, name); err != nil {
		if errors.Is(err, host.ErrNotFound) {
			return host.Invalid("profile", "no profile named %q", name)
		}
		return err
	}
	return nil
}

// CreateHost registers a host. A caller with a scoped grant can only
// register hosts whose labels fall within it.
func (c *Core) CreateHost(ctx context.Context, cl Caller, n NewHost) (host.Host, error) {
	if err := cl.Authorize(auth.OpHostCreate, nil); err != nil {
		return host.Host{}, err
	}
	h := host.Host{Name: n.Name, State: n.State}
	if err := n.HostUpdate.apply(&h); err != nil {
		return host.Host{}, err
	}
	if h.State == "" {
		h.State = host.StateReady
	}
	if h.State != host.StateReady && h.State != host.StateDiscovered {
		return host.Host{}, host.Invalid("state", "a new host starts ready or discovered")
	}
	if err := h.Normalize(); err != nil {
		return host.Host{}, err
	}
	if !cl.Can(auth.PermEdit, labelsOf(h)) {
		return host.Host{}, fmt.Errorf("%w: labels: your grants do not let you create a host labelled %q", host.ErrForbidden, host.FormatLabels(h.Labels))
	}
	if err := c.checkProfile(ctx, h.Profile); err != nil {
		return host.Host{}, err
	}
	if h.TokenHash == "" {
		_, h.TokenHash = token.New() // nobody knows it until a rotation
	}
	h.Version, h.Attempt = 0, 0
	return c.store.CreateHost(ctx, h, cl.record(c.now(), h.Name, auth.RuleFor(auth.OpHostCreate).Audit, ""))
}

// UpdateHost changes host name's configuration. Labels can only move a host
// within the caller's edit grants (no escalation into another team's scope).
func (c *Core) UpdateHost(ctx context.Context, cl Caller, name string, u HostUpdate) (host.Host, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpHostUpdate, name); err != nil {
		return host.Host{}, err
	}
	if u.Profile != nil {
		if err := c.checkProfile(ctx, *u.Profile); err != nil {
			return host.Host{}, err
		}
	}
	h, err := c.store.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
		if !cl.Can(auth.PermEdit, labelsOf(*h)) {
			return nil, host.ErrForbidden // relabelled meanwhile
		}
		old := *h
		old.MACs, old.DNS, old.Labels = slices.Clone(h.MACs), slices.Clone(h.DNS), maps.Clone(h.Labels)
		if err := u.apply(h); err != nil {
			return nil, err
		}
		if err := h.Normalize(); err != nil {
			return nil, err
		}
		changed := host.Changed(old, *h)
		if len(changed) == 0 {
			return nil, errNoop
		}
		if !cl.Can(auth.PermEdit, labelsOf(*h)) {
			return nil, fmt.Errorf("%w: labels: your grants do not let you label a host %q", host.ErrForbidden, host.FormatLabels(h.Labels))
		}
		if slices.Contains(changed, "profile") && h.Profile == "" {
			// Taking the profile of a host about to install leaves it
			// nothing to install. (A new profile was checked above.)
			onlyClean := func(p string) bool { return p != "" && p == c.opt.CleanProfile }
			if err := host.RequireProfiles(*h, c.opt.CleanProfile, onlyClean); err != nil {
				return nil, err
			}
		}
		rec := cl.record(c.now(), h.Name, auth.RuleFor(auth.OpHostUpdate).Audit, "changed "+strings.Join(changed, ", "))
		rec.Fields = changed
		return []host.Record{rec}, nil
	})
	if errors.Is(err, errNoop) {
		return c.store.GetHost(ctx, name)
	}
	return h, err
}

// DeleteHost forgets host name; its events stay.
func (c *Core) DeleteHost(ctx context.Context, cl Caller, name string) error {
	if _, err := c.authorizeHost(ctx, cl, auth.OpHostDelete, name); err != nil {
		return err
	}
	return c.store.DeleteHost(ctx, name, cl.record(c.now(), name, auth.RuleFor(auth.OpHostDelete).Audit, ""))
}

// RotateBootToken gives host name a new boot token and returns it (shown
// once); the old one stops working.
func (c *Core) RotateBootToken(ctx context.Context, cl Caller, name string) (string, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBootToken, name); err != nil {
		return "", err
	}
	plain, hash := token.New()
	if err := c.setBootToken(ctx, name, hash, cl.record(c.now(), name, auth.RuleFor(auth.OpBootToken).Audit,
		"boot token rotated; the old one stops working")); err != nil {
		return "", err
	}
	return plain, nil
}

// StoreBootToken sets host name's boot token by its hash: ISO builds outside
// the server (bootpilot iso build --from-db) make the token, write the ISO,
// and only then store the hash here, so a failed build leaves the old ISO
// working.
func (c *Core) StoreBootToken(ctx context.Context, cl Caller, name, hash, reason string) error {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBootToken, name); err != nil {
		return err
	}
	if !hexHashRE.MatchString(hash) {
		return host.Invalid("token_hash", "must be the SHA-256 of the token as 64 lower-case hex digits")
	}
	return c.setBootToken(ctx, name, hash, cl.record(c.now(), name, auth.RuleFor(auth.OpBootToken).Audit, reason))
}

// setBootToken is the one place a boot token changes.
func (c *Core) setBootToken(ctx context.Context, name, hash string, rec host.Record) error {
	_, err := c.store.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
		h.TokenHash = hash
		return []host.Record{rec}, nil
	})
	return err
}

// HostEvents returns host name's audit trail, newest first.
func (c *Core) HostEvents(ctx context.Context, cl Caller, name string, limit int) ([]host.Record, error) {
	if limit < 1 || limit > 10000 {
		return nil, host.Invalid("limit", "must be a number from 1 to 10000")
	}
	if _, err := c.authorizeHost(ctx, cl, auth.OpHostEvents, name); err != nil {
		return nil, err
	}
	return c.store.Events(ctx, name, limit)
}

// ActionOptions are the options of a lifecycle action. It is also the wire
// type of POST /api/v1/hosts/{name}/{action}.
type ActionOptions struct {
	Profile     string `json:"profile,omitempty"`      // reimage/clean/retry: switch profile first
	Reason      string `json:"reason,omitempty"`       // for the audit trail
	ThenInstall bool   `json:"then_install,omitempty"` // clean: reimage after a successful clean
	Via         string `json:"via,omitempty"`          // reimage/clean: "redfish" inserts the ISO and restarts
	EnrollDB    bool   `json:"enroll_db,omitempty"`    // reimage via redfish: enrol the db certificate through the BMC before the restart
}

// check refuses options the event does not take.
func (o ActionOptions) check(e host.Event) error {
	if len(o.Reason) > 1000 {
		return host.Invalid("reason", "longer than 1000 characters")
	}
	if o.Profile != "" {
		if e != host.EventReimage && e != host.EventClean && e != host.EventRetry {
			return host.Invalid("profile", "only reimage, retry and clean take a profile")
		}
		if err := host.ValidName("profile", o.Profile); err != nil {
			return err
		}
	}
	if o.ThenInstall && e != host.EventClean {
		return host.Invalid("then_install", "only clean takes then_install")
	}
	if o.Via != "" && e != host.EventReimage && e != host.EventClean {
		return host.Invalid("via", "only reimage and clean go via a BMC")
	}
	if o.EnrollDB && (e != host.EventReimage || o.Via != "redfish") {
		return host.Invalid("enroll_db", "only reimage via redfish enrols the db certificate")
	}
	return nil
}

// actionOps maps each admin lifecycle event to its op.
var actionOps = map[host.Event]auth.Op{
	host.EventReimage: auth.OpHostReimage, host.EventClean: auth.OpHostClean,
	host.EventCancel: auth.OpHostCancel, host.EventRetry: auth.OpHostRetry,
	host.EventHold: auth.OpHostHold, host.EventRelease: auth.OpHostRelease,
	host.EventAdopt: auth.OpHostAdopt,
}

// AdminEvents lists the lifecycle events an admin can apply.
func AdminEvents() []host.Event {
	return []host.Event{host.EventReimage, host.EventClean, host.EventCancel,
		host.EventRetry, host.EventHold, host.EventRelease, host.EventAdopt}
}

// OpOf returns the op of admin lifecycle event e.
func OpOf(e host.Event) auth.Op { return actionOps[e] }

// ActResult is what a lifecycle action did: the host after it, whether it
// changed (a repeated reimage, clean or hold does not), and with via
// redfish, what the BMC sequence did.
type ActResult struct {
	Host    host.Host    `json:"host"`
	Changed bool         `json:"-"`
	Redfish *MediaResult `json:"redfish,omitempty"`
}

// Act applies admin lifecycle event e to host name.
func (c *Core) Act(ctx context.Context, cl Caller, name string, e host.Event, o ActionOptions) (ActResult, error) {
	op, ok := actionOps[e]
	if !ok {
		return ActResult{}, host.Invalid("action", "%q is not an admin action", e)
	}
	if err := o.check(e); err != nil {
		return ActResult{}, err
	}
	h, err := c.authorizeHost(ctx, cl, op, name)
	if err != nil {
		return ActResult{}, err
	}
	if err := c.checkProfile(ctx, o.Profile); err != nil {
		return ActResult{}, err
	}
	if o.EnrollDB {
		if err := cl.Authorize(auth.OpSecureBootEnroll, labelsOf(h)); err != nil {
			return ActResult{}, err
		}
		if _, err := c.dbCert(); err != nil {
			return ActResult{}, err
		}
	}
	if o.Via != "" {
		if err := c.checkVia(ctx, name, o.Via); err != nil {
			return ActResult{}, err
		}
	}
	known, err := c.knownProfiles(ctx, h, o.Profile)
	if err != nil {
		return ActResult{}, err
	}
	h, err = c.store.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
		if err := cl.Authorize(op, labelsOf(*h)); err != nil {
			return nil, err // relabelled meanwhile
		}
		if o.EnrollDB {
			if err := cl.Authorize(auth.OpSecureBootEnroll, labelsOf(*h)); err != nil {
				return nil, err
			}
		}
		return c.admin(h, e, o, known, cl)
	})
	changed := err == nil
	if errors.Is(err, errNoop) {
		h, err = c.store.GetHost(ctx, name)
	}
	if err != nil {
		return ActResult{}, err
	}
	if changed {
		c.log.Info("host action", "host", h.Name, "event", e, "state", h.State, "actor", cl.Actor(), "request_id", cl.RequestID)
	}
	res := ActResult{Host: h, Changed: changed}
	if o.Via != "" {
		mr, err := c.viaRedfish(ctx, cl, h, o)
		if err != nil {
			return res, fmt.Errorf("host %s is flagged %s, but the BMC sequence failed (it installs on its next boot from the ISO; cancel to undo): %w", h.Name, h.State, err)
		}
		res.Redfish = &mr
		return res, nil
	}
	if changed {
		c.afterTransition(h) // cancel → ready: eject media we inserted
	}
	return res, nil
}

// knownProfiles reports which of the profiles an admin event on h may need
// exist: the option's, the host's and the clean profile. They are read
// before the event's transaction, which must not wait for a second
// connection while it holds the host row; a profile the locked row names
// that was not read here counts as missing.
func (c *Core) knownProfiles(ctx context.Context, h host.Host, profile string) (func(string) bool, error) {
	have := map[string]bool{}
	for _, p := range []string{profile, h.Profile, c.opt.CleanProfile} {
		if p == "" || have[p] {
			continue
		}
		_, err := c.store.GetProfile(ctx, p)
		switch {
		case err == nil:
			have[p] = true
		case !errors.Is(err, host.ErrNotFound):
			return nil, err
		}
	}
	return func(p string) bool { return have[p] }, nil
}

// admin applies admin event e with options o to h, in an UpdateHost
// callback: the one place for the rules of admin events (and bulk jobs). A
// repeated reimage, clean or hold returns errNoop (not with via: a BMC
// sequence is not run again for a host already flagged); an event the state
// does not allow a *host.TransitionError that says what to do; a host left
// without the profiles its next boot needs a *host.ProfileError.
func (c *Core) admin(h *host.Host, e host.Event, o ActionOptions, known func(string) bool, cl Caller) ([]host.Record, error) {
	if host.Repeated(*h, e) && (o.Profile == "" || o.Profile == h.Profile) && o.Via == "" &&
		(e != host.EventClean || o.ThenInstall == h.CleanThenInstall) {
		return nil, errNoop
	}
	if err := host.Admit(*h, e); err != nil {
		return nil, err
	}
	if o.Profile != "" {
		h.Profile = o.Profile
	}
	recs, err := c.transition(h, e, cl, o.Reason)
	if err != nil {
		return nil, err
	}
	h.CleanThenInstall = e == host.EventClean && o.ThenInstall
	if err := host.RequireProfiles(*h, c.opt.CleanProfile, known); err != nil {
		return nil, err
	}
	return recs, nil
}

// HostISO builds host name's ISO with a fresh boot token; only once the ISO
// is complete is the token's hash stored (the old token stops working).
func (c *Core) HostISO(ctx context.Context, cl Caller, name string) ([]byte, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpHostISO, name); err != nil {
		return nil, err
	}
	return c.buildISO(ctx, name, cl.record(c.now(), name, auth.RuleFor(auth.OpHostISO).Audit, "ISO built; the old boot token stops working"))
}

// buildISO builds host name's ISO with a fresh boot token and, only once the
// ISO is complete, stores the token's hash with rec.
func (c *Core) buildISO(ctx context.Context, name string, rec host.Record) ([]byte, error) {
	if c.opt.ISO == nil {
		return nil, errNoISOBuilder
	}
	h, err := c.store.GetHost(ctx, name)
	if err != nil {
		return nil, err
	}
	plain, hash := token.New()
	var buf bytes.Buffer
	if err := c.opt.ISO(&buf, h, plain); err != nil {
		return nil, fmt.Errorf("build ISO for %s: %w", h.Name, err)
	}
	if err := c.setBootToken(ctx, h.Name, hash, rec); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
