// Package provision is bootpilot's core: boot planning, transition and
// rendering; installer callbacks; admin actions on hosts and profiles; boot
// token rotation and ISO builds; BMC provisioning and bulk jobs. Every call
// takes the caller (an auth.Identity plus request id and client address)
// and is authorized here, through the one policy table in internal/auth,
// before anything is read or changed; every change is one audit record.
// Transports (the REST API, the web console, the CLI's offline paths) parse,
// make one call, and render.
package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/store"
)

// Store is what the core needs from the database. Errors are the domain's
// sentinels: host.ErrNotFound, host.ErrConflict; fn errors from UpdateHost
// and UpdateProfile come back unchanged.
type Store interface {
	CreateHost(ctx context.Context, h host.Host, rec host.Record) (host.Host, error)
	GetHost(ctx context.Context, name string) (host.Host, error)
	ListHosts(ctx context.Context, f store.HostFilter) ([]host.Host, error)
	UpdateHost(ctx context.Context, name string, fn func(h *host.Host) ([]host.Record, error)) (host.Host, error)
	DeleteHost(ctx context.Context, name string, rec host.Record) error
	SetInventory(ctx context.Context, name string, inv host.Inventory) error
	Events(ctx context.Context, name string, limit int) ([]host.Record, error)
	ExpiredHosts(ctx context.Context, now time.Time) ([]host.Host, error)
	CreateProfile(ctx context.Context, p host.Profile) (host.Profile, error)
	GetProfile(ctx context.Context, name string) (host.Profile, error)
	ListProfiles(ctx context.Context) ([]host.Profile, error)
	UpdateProfile(ctx context.Context, name string, fn func(p *host.Profile) error) (host.Profile, error)
	DeleteProfile(ctx context.Context, name string) error
	AppendEvents(ctx context.Context, recs ...host.Record) error
}

var _ Store = (*store.DB)(nil)

// Images is the image cache (implemented by *images.Cache). Fetch returns
// a *host.ValidationError for bad or refused references and a wrapped
// *images.DigestMismatchError for bad digests; Put a *host.ValidationError
// for an interrupted or oversized upload; Lookup host.ErrNotFound.
type Images interface {
	Fetch(ctx context.Context, ref, want string) (images.Entry, error)
	Put(ctx context.Context, r io.Reader, size int64) (images.Entry, error)
	Lookup(hexDigest string) (images.Entry, error)
}

var _ Images = (*images.Cache)(nil)

// ISOBuilder writes host h's boot ISO, embedding boot token tok.
type ISOBuilder func(w io.Writer, h host.Host, tok string) error

// Options configure a Core.
type Options struct {
	Store         Store
	ExternalURL   string      // "https://10.0.2.100:8443"
	CAPEM         string      // the organisation CA, PEM (installer configs pin it)
	CAFingerprint string      // its SHA-256 fingerprint
	Policy        host.Policy // attempts and deadlines
	CleanProfile  string      // "agent-clean"
	HoldSeconds   int         // 300
	AgentAfter    string      // "reboot"
	ISO           ISOBuilder  // nil: ISO builds answer "not configured"
	Images        Images      // nil: no image cache (image profiles cannot boot)
	ImagesPrefix  string      // URL path of cached images under ExternalURL: "/images/v1"
	Logger        *slog.Logger
	Now           func() time.Time // time.Now
}

// Core is the lifecycle core shared by every transport.
type Core struct {
	opt    Options
	store  Store
	render *bootscripts.Renderer
	log    *slog.Logger
	now    func() time.Time
	after  []func(host.Host) // run after a committed transition (BMC media eject)
	bmc    *redfishOps       // BMC operations, media and bulk jobs (EnableBMC; nil: not configured)
}

// New builds a Core; templates are parsed here, once.
func New(o Options) (*Core, error) {
	if o.Store == nil {
		return nil, errors.New("provision: Store is required")
	}
	r, err := bootscripts.New()
	if err != nil {
		return nil, fmt.Errorf("provision: templates: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HoldSeconds == 0 {
		o.HoldSeconds = 300
	}
	if o.AgentAfter == "" {
		o.AgentAfter = "reboot"
	}
	if o.Policy.MaxAttempts == 0 {
		o.Policy = host.DefaultPolicy
	}
	if o.ImagesPrefix == "" {
		o.ImagesPrefix = "/images/v1"
	}
	return &Core{opt: o, store: o.Store, render: r, log: o.Logger, now: o.Now}, nil
}

// OnTransition registers fn to run (in the caller's goroutine; fn must not
// block) after every committed state change.
func (c *Core) OnTransition(fn func(host.Host)) { c.after = append(c.after, fn) }

func (c *Core) afterTransition(h host.Host) {
	for _, fn := range c.after {
		fn(h)
	}
}

// Caller is who calls the core and from where.
type Caller struct {
	auth.Identity
	RequestID  string // X-Request-ID: "3f2a…"
	ClientAddr string // "192.0.2.7"
}

// SystemCaller is the server acting on its own (sweeps).
var SystemCaller = Caller{Identity: auth.System}

// record makes an audit record of this call.
func (cl Caller) record(now time.Time, hostName, action, reason string) host.Record {
	return host.Record{Host: hostName, Actor: cl.Actor(), Action: action, Reason: reason,
		RequestID: cl.RequestID, ClientAddr: cl.ClientAddr, Time: now.UTC()}
}

// ErrNotConfigured means a feature needs server configuration it lacks
// (transports answer 501 with its message).
type ErrNotConfigured struct{ Msg string }

func (e ErrNotConfigured) Error() string { return e.Msg }

// errNoISOBuilder: the ISO endpoints need a db key.
var errNoISOBuilder = ErrNotConfigured{"this server has no ISO builder configured: start it with --db-key/--db-cert (or --iso-unsigned)"}

// errNoop aborts an UpdateHost transaction that has nothing to change.
var errNoop = errors.New("no change")

// authorizeHost loads host name and checks that cl may run op on it: an
// invisible host is host.ErrNotFound (as if it did not exist), a visible
// one without the permission host.ErrForbidden.
func (c *Core) authorizeHost(ctx context.Context, cl Caller, op auth.Op, name string) (host.Host, error) {
	h, err := c.store.GetHost(ctx, name)
	if err != nil {
		return h, err
	}
	if err := cl.Authorize(op, labelsOf(h)); err != nil {
		return host.Host{}, err
	}
	return h, nil
}

// labelsOf returns h's labels, never nil (nil means "no host" to Authorize).
func labelsOf(h host.Host) map[string]string {
	if h.Labels == nil {
		return map[string]string{}
	}
	return h.Labels
}

// Sweep applies the timeout event to every host past its deadline, every
// 30 seconds until ctx ends.
func (c *Core) Sweep(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.SweepOnce(ctx)
		}
	}
}

// SweepOnce applies the timeout event to every host past its deadline,
// then runs SweepJobs. Replicas may sweep at once: each host is re-checked
// on its locked row, so it times out once.
func (c *Core) SweepOnce(ctx context.Context) {
	defer c.SweepJobs(ctx)
	now := c.now()
	hs, err := c.store.ExpiredHosts(ctx, now)
	if err != nil {
		c.log.Error("sweep: list expired hosts", "err", err)
		return
	}
	for _, h := range hs {
		after, err := c.store.UpdateHost(ctx, h.Name, func(h *host.Host) ([]host.Record, error) {
			if !host.Expired(*h, now) {
				return nil, errNoop
			}
			return c.transition(h, host.EventTimeout, SystemCaller, fmt.Sprintf("attempt %d passed its deadline", h.Attempt))
		})
		switch {
		case err == nil:
			c.afterTransition(after)
		case !errors.Is(err, errNoop):
			c.log.Error("sweep: fail expired host", "host", h.Name, "err", err)
		}
	}
}

// transition applies e to h (in an UpdateHost callback) and returns the audit record.
func (c *Core) transition(h *host.Host, e host.Event, cl Caller, reason string) ([]host.Record, error) {
	to, err := host.Next(h.State, e)
	if err != nil {
		return nil, err
	}
	rec := host.Record{Host: h.Name, Actor: cl.Actor(), Event: e, From: h.State, To: to,
		Attempt: h.Attempt, Reason: reason, RequestID: cl.RequestID, ClientAddr: cl.ClientAddr, Time: c.now().UTC()}
	h.State = to
	switch to {
	case host.StateReimage, host.StateClean, host.StateReady, host.StateHold:
		h.Attempt = 0
		h.Deadline = time.Time{}
	case host.StateFailed:
		h.Deadline = time.Time{}
	}
	return []host.Record{rec}, nil
}

// audit stores records that belong to no host change (profiles, images);
// a failure is logged, the call it records has already happened.
func (c *Core) audit(ctx context.Context, recs ...host.Record) {
	if err := c.store.AppendEvents(context.WithoutCancel(ctx), recs...); err != nil {
		c.log.Error("audit: store event", "action", recs[0].Action, "err", err)
	}
}
