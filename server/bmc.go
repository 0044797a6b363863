package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/mediaurl"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/token"
)

// BMCStore is what the Redfish operations need from the database besides
// Store. GetBMC, DeleteBMC and SetBMCMedia return host.ErrNotFound for a host
// without a BMC; SetBMC for an unknown host.
type BMCStore interface {
	SetBMC(ctx context.Context, name string, b store.BMC, rec host.Record) error
	GetBMC(ctx context.Context, name string) (store.BMC, error)
	DeleteBMC(ctx context.Context, name string, rec host.Record) error
	SetBMCMedia(ctx context.Context, name string, inserted bool, rec host.Record) error
}

var _ BMCStore = (*store.DB)(nil)

// errNotConfigured means a feature needs server configuration it lacks; it
// maps to 501 with its message.
type errNotConfigured struct{ msg string }

func (e errNotConfigured) Error() string { return e.msg }

var (
	errNoSecretKey = errNotConfigured{"BMC credentials need a secret key: create one with " +
		"`bootpilot secret-key init FILE` and start the server with --secret-key-file FILE " +
		"(or BOOTPILOT_SECRET_KEY_FILE)"}
	errNoISOBuilder = errNotConfigured{"virtual media needs ISO builds: start the server with --db-key/--db-cert (or --iso-unsigned)"}
)

// plaintextReason is the audit reason's part for a BMC on http://.
const plaintextReason = "BMC settings set with insecure plaintext (credentials travel in clear)"

// passwordContext binds a sealed BMC password to its host.
func passwordContext(name string) string { return "bmc-password:" + name }

// redfishOps holds the Redfish operations' state: published media, the
// per-BMC locks, the global concurrency limit and bulk jobs (all in memory).
type redfishOps struct {
	s     *Server
	bmcs  BMCStore
	media *mediaRegistry
	slots chan struct{} // global concurrency limit

	mu    sync.Mutex
	locks map[string]chan struct{} // per-BMC lock, keyed by scheme://host:port
	jobs  *jobs
}

func newRedfishOps(s *Server) *redfishOps {
	n := s.opt.RedfishConcurrency
	if n <= 0 {
		n = 50
	}
	o := &redfishOps{s: s, slots: make(chan struct{}, n), locks: map[string]chan struct{}{},
		media: newMediaRegistry(s.now, s.opt.MediaDir), jobs: newJobs()}
	o.bmcs = s.opt.BMCs
	if o.bmcs == nil {
		o.bmcs, _ = s.store.(BMCStore)
	}
	return o
}

func (s *Server) bmcRoutes(e *gin.Engine, api *gin.RouterGroup) {
	s.rf = newRedfishOps(s)
	s.warnPlainMedia()
	mh := gin.WrapH(s.MediaHandler())
	e.GET("/media/v1/:file", mh)                         // BMCs: the host's ISO on a signed, expiring URL
	e.HEAD("/media/v1/:file", mh)                        // BMCs: its size
	api.PUT("/hosts/:name/bmc", s.putBMC)                // set the host's BMC endpoint and credentials
	api.GET("/hosts/:name/bmc", s.getBMC)                // show it (never the password)
	api.DELETE("/hosts/:name/bmc", s.deleteBMC)          // forget it
	api.POST("/hosts/:name/bmc/test", s.testBMC)         // dial, power and Secure Boot state
	api.POST("/hosts/:name/media/insert", s.insertMedia) // build the ISO and insert it as virtual media
	api.POST("/hosts/:name/media/eject", s.ejectMedia)   // eject it
	api.POST("/hosts/:name/power", s.power)              // on, off, restart, status
	api.POST("/bulk/:action", s.bulk)                    // reimage or clean many hosts through their BMCs
	api.GET("/jobs", s.listJobs)                         // bulk jobs
	api.GET("/jobs/:id", s.getJob)                       // one bulk job, per-host status
}

// ready reports why BMC operations cannot run, if they cannot.
func (o *redfishOps) ready() error {
	if o.s.opt.Secrets == nil {
		return errNoSecretKey
	}
	if o.bmcs == nil {
		return errNotConfigured{"this server's store cannot keep BMC records"}
	}
	return nil
}

// readyMedia reports why virtual media cannot be served, if it cannot.
func (o *redfishOps) readyMedia() error {
	if err := o.ready(); err != nil {
		return err
	}
	if o.s.opt.ISO == nil {
		return errNoISOBuilder
	}
	if len(o.s.opt.MediaKey) < 32 {
		return errNotConfigured{"media URLs need a key of at least 32 bytes (derived from --secret-key-file)"}
	}
	return nil
}

func viewBMC(b store.BMC) host.BMCInfo {
	return host.BMCInfo{Host: b.Host, URL: b.URL, Username: b.Username, HasPassword: b.SealedPassword != "",
		HasCA: b.CAPEM != "", Insecure: b.Insecure, InsecurePlaintext: b.InsecurePlaintext, Session: b.Session,
		MediaInserted: b.MediaInserted, MediaSince: b.MediaSince, UpdatedAt: b.UpdatedAt}
}

func (s *Server) putBMC(c *gin.Context) {
	o := s.rf
	if err := o.ready(); err != nil {
		s.fail(c, err)
		return
	}
	var body host.BMCSettings
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		s.fail(c, host.Invalid("body", "want JSON like {\"url\":…,\"username\":…,\"password\":…}: %v", err))
		return
	}
	name := c.Param("name")
	ctx := c.Request.Context()
	if err := body.Validate(); err != nil {
		s.fail(c, err)
		return
	}
	if _, err := s.store.GetHost(ctx, name); err != nil {
		s.fail(c, err)
		return
	}
	b := store.BMC{Host: name, URL: strings.TrimRight(body.URL, "/"), Username: body.Username,
		CAPEM: body.CAPEM, Insecure: body.Insecure, InsecurePlaintext: body.InsecurePlaintext, Session: body.Session}
	if body.Password != "" {
		b.SealedPassword = s.opt.Secrets.Seal([]byte(body.Password), passwordContext(name))
	} else {
		old, err := o.bmcs.GetBMC(ctx, name)
		if err != nil {
			if errors.Is(err, host.ErrNotFound) {
				err = host.Invalid("password", "required for a new BMC record")
			}
			s.fail(c, err)
			return
		}
		b.SealedPassword = old.SealedPassword
	}
	reason := fmt.Sprintf("BMC %s, user %s", b.URL, b.Username)
	switch {
	case b.InsecurePlaintext:
		reason += ", " + plaintextReason
		s.log.Warn("bmc: BMC settings set with insecure plaintext, credentials travel in clear", "host", name,
			"actor", actor(c), "request_id", requestID(c))
	case b.Insecure:
		reason += ", TLS verification DISABLED (insecure)"
		s.log.Warn("bmc: TLS verification disabled", "host", name, "actor", actor(c), "request_id", requestID(c))
	case b.CAPEM != "":
		reason += ", pinned CA"
	}
	if body.Password != "" {
		reason += ", password changed"
	}
	if err := o.bmcs.SetBMC(ctx, name, b, s.record(c, name, "bmc-set", reason)); err != nil {
		s.fail(c, err)
		return
	}
	b, err := o.bmcs.GetBMC(ctx, name)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewBMC(b))
}

func (s *Server) getBMC(c *gin.Context) {
	if s.rf.bmcs == nil {
		s.fail(c, s.rf.ready())
		return
	}
	b, err := s.rf.bmcs.GetBMC(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewBMC(b))
}

func (s *Server) deleteBMC(c *gin.Context) {
	if s.rf.bmcs == nil {
		s.fail(c, s.rf.ready())
		return
	}
	name := c.Param("name")
	if err := s.rf.bmcs.DeleteBMC(c.Request.Context(), name, s.record(c, name, "bmc-delete", "")); err != nil {
		s.fail(c, err)
		return
	}
	s.rf.media.drop(name)
	c.Status(http.StatusNoContent)
}

// bmcOf loads host name's BMC and its endpoint (password opened).
func (o *redfishOps) bmcOf(ctx context.Context, name string) (store.BMC, redfish.Endpoint, error) {
	if err := o.ready(); err != nil {
		return store.BMC{}, redfish.Endpoint{}, err
	}
	b, err := o.bmcs.GetBMC(ctx, name)
	if err != nil {
		if errors.Is(err, host.ErrNotFound) {
			if _, herr := o.s.store.GetHost(ctx, name); herr != nil {
				return b, redfish.Endpoint{}, herr
			}
			return b, redfish.Endpoint{}, fmt.Errorf("host %s has no BMC (set one with PUT /api/v1/hosts/%s/bmc): %w", name, name, host.ErrNotFound)
		}
		return b, redfish.Endpoint{}, err
	}
	pw, err := o.s.opt.Secrets.Open(b.SealedPassword, passwordContext(name))
	if err != nil {
		return b, redfish.Endpoint{}, fmt.Errorf("open the BMC password of %s (sealed by another key? see bootpilot bmc rotate-key): %w", name, err)
	}
	ep := redfish.Endpoint{URL: b.URL, Username: b.Username, Password: string(pw), CAPEM: []byte(b.CAPEM),
		Insecure: b.Insecure, InsecurePlaintext: b.InsecurePlaintext, Session: b.Session, Logger: o.s.log}
	if o.s.opt.RedfishEndpoint != nil {
		o.s.opt.RedfishEndpoint(&ep)
	}
	return b, ep, nil
}

// bmcKey names the BMC behind an endpoint URL for the per-BMC lock.
func bmcKey(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80"}[u.Scheme]
		if port == "" {
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme + "://" + u.Hostname() + ":" + port)
}

// withBMC runs fn holding the BMC's lock and a global slot; queued, if not
// nil, is called when both are held. Waiting respects ctx.
func (o *redfishOps) withBMC(ctx context.Context, key string, running func(), fn func() error) error {
	o.mu.Lock()
	l, ok := o.locks[key]
	if !ok {
		l = make(chan struct{}, 1)
		o.locks[key] = l
	}
	o.mu.Unlock()
	select {
	case l <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l }()
	select {
	case o.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-o.slots }()
	if running != nil {
		running()
	}
	return fn()
}

// dialDo dials the BMC of name and runs fn under the BMC's lock.
func (o *redfishOps) dialDo(ctx context.Context, name string, running func(), fn func(c *redfish.Client, b store.BMC) error) error {
	b, ep, err := o.bmcOf(ctx, name)
	if err != nil {
		return err
	}
	return o.withBMC(ctx, bmcKey(b.URL), running, func() error {
		c, err := redfish.Dial(ctx, ep)
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(c, b)
	})
}

// audit stores rec as one of host name's events.
func (o *redfishOps) audit(ctx context.Context, name string, rec host.Record) {
	_, err := o.s.store.UpdateHost(ctx, name, func(*host.Host) ([]host.Record, error) { return []host.Record{rec}, nil })
	if err != nil {
		o.s.log.Error("redfish: store audit event", "host", name, "action", rec.Action, "err", err)
	}
}

// rec makes an audit record outside a request.
func (o *redfishOps) rec(name, actor, requestID, action, reason string) host.Record {
	return host.Record{Host: name, Actor: actor, Action: action, Reason: reason, RequestID: requestID, Time: o.s.now().UTC()}
}

// bmcTestResult is the answer of POST /api/v1/hosts/{name}/bmc/test.
type bmcTestResult struct {
	BMC        string     `json:"bmc"`         // "https://10.0.0.10:443"
	PowerState string     `json:"power_state"` // "On"
	SecureBoot *bool      `json:"secure_boot"` // null when the BMC does not say
	Boot       bootView   `json:"boot"`
	Media      *mediaView `json:"media,omitempty"` // null without a CD/DVD slot
}

type bootView struct {
	Target  string `json:"target"`
	Enabled string `json:"enabled"`
	Mode    string `json:"mode,omitempty"`
}

type mediaView struct {
	Slot         string   `json:"slot"`
	MediaTypes   []string `json:"media_types"`
	Inserted     bool     `json:"inserted"`
	Image        string   `json:"image,omitempty"` // without its query: signed URLs are capabilities
	InsertAction bool     `json:"insert_action"`
}

func viewMedia(m redfish.MediaStatus) *mediaView {
	img := m.Image
	if u, err := url.Parse(img); err == nil && u.RawQuery != "" {
		u.RawQuery = ""
		img = u.String() + "?…"
	}
	return &mediaView{Slot: m.Slot, MediaTypes: m.MediaTypes, Inserted: m.Inserted, Image: img, InsertAction: m.InsertAction}
}

func (s *Server) testBMC(c *gin.Context) {
	ctx := c.Request.Context()
	var res bmcTestResult
	err := s.rf.dialDo(ctx, c.Param("name"), nil, func(rc *redfish.Client, b store.BMC) error {
		res.BMC = rc.BMC()
		var err error
		if res.PowerState, err = rc.PowerState(ctx); err != nil {
			return err
		}
		sb, err := rc.SecureBoot(ctx)
		switch {
		case err == nil:
			res.SecureBoot = &sb
		case !errors.Is(err, redfish.ErrUnsupported):
			return err
		}
		bo, err := rc.Boot(ctx)
		if err != nil {
			return err
		}
		res.Boot = bootView{bo.Target, bo.Enabled, bo.Mode}
		ms, err := rc.MediaStatus(ctx)
		switch {
		case err == nil:
			res.Media = viewMedia(ms)
		case !errors.Is(err, redfish.ErrUnsupported):
			return err
		}
		return nil
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, res)
}

// powerBody is the body of POST /api/v1/hosts/{name}/power.
type powerBody struct {
	Action string `json:"action"` // "on", "off", "restart", "status"
	Reason string `json:"reason"`
}

// resetTypes maps power actions to Redfish ResetType.
var resetTypes = map[string]string{"on": "On", "off": "ForceOff", "restart": "ForceRestart"}

func (s *Server) power(c *gin.Context) {
	var body powerBody
	if err := decodeStrict(c, &body); err != nil {
		s.fail(c, err)
		return
	}
	kind, ok := resetTypes[body.Action]
	if !ok && body.Action != "status" {
		s.fail(c, host.Invalid("action", "%q is not on, off, restart or status", body.Action))
		return
	}
	ctx := c.Request.Context()
	name := c.Param("name")
	var state string
	err := s.rf.dialDo(ctx, name, nil, func(rc *redfish.Client, b store.BMC) error {
		if body.Action != "status" {
			if err := rc.Reset(ctx, kind); err != nil {
				return err
			}
			reason := "power " + body.Action + " (" + kind + ")"
			if body.Reason != "" {
				reason += ": " + body.Reason
			}
			s.rf.audit(ctx, name, s.record(c, name, "redfish-power", reason))
		}
		var err error
		state, err = rc.PowerState(ctx)
		return err
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"host": name, "action": body.Action, "power_state": state})
}

// decodeStrict decodes an optional JSON body into v, refusing unknown fields.
func decodeStrict(c *gin.Context, v any) error {
	if c.Request.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return host.Invalid("body", "%v", err)
	}
	return nil
}

// mediaResult is the answer of a media insert.
type mediaResult struct {
	Host       string     `json:"host"`
	Expires    time.Time  `json:"media_expires"`
	Media      *mediaView `json:"media,omitempty"`
	PowerState string     `json:"power_state,omitempty"`
}

func (s *Server) insertMedia(c *gin.Context) {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeStrict(c, &body); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	name := c.Param("name")
	res, err := s.rf.provision(ctx, name, false, actor(c), requestID(c), body.Reason)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, res)
}

func (s *Server) ejectMedia(c *gin.Context) {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeStrict(c, &body); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	name := c.Param("name")
	reason := "media ejected"
	if body.Reason != "" {
		reason += ": " + body.Reason
	}
	if err := s.rf.eject(ctx, name, false, actor(c), requestID(c), reason); err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"host": name, "media_inserted": false})
}

// provision builds host name's ISO (rotating its boot token), publishes it
// on a signed media URL and inserts it; with boot it also sets a one-time
// UEFI boot override to the CD and restarts the host (powering it on when
// off). Each step is audited.
func (o *redfishOps) provision(ctx context.Context, name string, boot bool, actor, reqID, reason string) (mediaResult, error) {
	if err := o.readyMedia(); err != nil {
		return mediaResult{}, err
	}
	return o.provisionLocked(ctx, name, boot, actor, reqID, reason, nil, nil)
}

// provisionLocked is provision with hooks for bulk jobs: running is called
// once the BMC is ours, before runs first (and may fail the whole thing).
func (o *redfishOps) provisionLocked(ctx context.Context, name string, boot bool, actor, reqID, reason string,
	running func(), before func() error) (_ mediaResult, err error) {
	res := mediaResult{Host: name}
	step := "connect to the BMC" // the step that failed, for the audit event; "": not a BMC step
	defer func() {
		if step != "" {
			o.auditFailure(ctx, name, actor, reqID, step, err)
		}
	}()
	err = o.dialDo(ctx, name, running, func(rc *redfish.Client, b store.BMC) error {
		step = ""
		if before != nil {
			if err := before(); err != nil {
				return err
			}
		}
		step = "build the ISO"
		data, err := o.s.buildISO(ctx, name, o.rec(name, actor, reqID, "token-rotate", "ISO built for virtual media; the old boot token stops working"))
		if err != nil {
			return err
		}
		u, exp, err := o.publish(name, data)
		if err != nil {
			return err
		}
		res.Expires = exp
		step = "insert virtual media"
		if err := rc.InsertMedia(ctx, u); err != nil {
			o.media.drop(name)
			return err
		}
		why := fmt.Sprintf("ISO inserted as virtual media through %s (URL valid until %s)", rc.BMC(), exp.Format(time.RFC3339))
		if reason != "" {
			why += ": " + reason
		}
		step = "record the inserted media"
		if err := o.bmcs.SetBMCMedia(ctx, name, true, o.rec(name, actor, reqID, "redfish-insert", why)); err != nil {
			return err
		}
		if ms, err := rc.MediaStatus(ctx); err == nil {
			res.Media = viewMedia(ms)
		}
		if !boot {
			step = ""
			return nil
		}
		step = "set the boot override to the CD"
		if err := rc.SetBootOverride(ctx, "Cd", "Once"); err != nil {
			return err
		}
		step = "read the power state"
		before, err := rc.PowerState(ctx)
		if err != nil {
			return err
		}
		kind := "ForceRestart"
		if before == "Off" {
			kind = "On"
		}
		step = "power " + kind
		if err := rc.Reset(ctx, kind); err != nil {
			return err
		}
		step = ""
		o.audit(ctx, name, o.rec(name, actor, reqID, "redfish-boot",
			fmt.Sprintf("boot override Cd once (UEFI), power %s → %s", before, kind)))
		res.PowerState, _ = rc.PowerState(ctx)
		return nil
	})
	return res, err
}

// publish keeps data as host name's media and returns its signed URL.
func (o *redfishOps) publish(name string, data []byte) (string, time.Time, error) {
	ttl := o.s.opt.MediaTTL
	if ttl <= 0 {
		ttl = o.s.opt.Policy.InstallTimeout + time.Hour
	}
	exp := o.s.now().Add(ttl).Truncate(time.Second)
	base := o.s.opt.MediaURL
	if base == "" {
		base = o.s.opt.ExternalURL
	}
	id, err := o.media.put(name, data, exp)
	if err != nil {
		return "", exp, err
	}
	return mediaurl.Sign(o.s.opt.MediaKey, base, name, id, exp), exp, nil
}

// eject unpublishes host name's media once it holds the BMC's lock (its
// URLs answer 404 from then on, whatever the BMC answers or whether it
// answers at all), ejects the virtual media and, with clearBoot, disables
// the boot override; the step is audited.
func (o *redfishOps) eject(ctx context.Context, name string, clearBoot bool, actor, reqID, reason string) error {
	unpublish := func() { o.media.drop(name) }
	step := "connect to the BMC"
	err := o.dialDo(ctx, name, unpublish, func(rc *redfish.Client, b store.BMC) error {
		step = "eject virtual media"
		if err := rc.EjectMedia(ctx); err != nil {
			return err
		}
		if clearBoot {
			step = "clear the boot override"
			if err := rc.SetBootOverride(ctx, "None", "Disabled"); err != nil {
				return err
			}
		}
		step = "record the ejected media"
		return o.bmcs.SetBMCMedia(ctx, name, false, o.rec(name, actor, reqID, "redfish-eject", reason))
	})
	o.auditFailure(ctx, name, actor, reqID, step, err)
	return err
}

// auditFailure stores a failed BMC step of host name as a redfish-failed
// event: the step and the error, with URL credentials, queries (signed
// media URLs) and terminal escapes removed. Nothing is stored for a nil
// err, or when nothing was tried: the host has no BMC, the server no key.
func (o *redfishOps) auditFailure(ctx context.Context, name, actor, reqID, step string, err error) {
	if err == nil || errors.Is(err, host.ErrNotFound) || errors.As(err, new(errNotConfigured)) {
		return
	}
	detail := host.CleanText(images.RedactText(err.Error()), host.MaxDetailText)
	o.audit(context.WithoutCancel(ctx), name, o.rec(name, actor, reqID, "redfish-failed", step+" failed: "+detail))
}

// afterTransition runs after a committed state change of h: when a host
// reaches ready or failed with bootpilot's media still inserted (the install
// or clean reported, was cancelled, ran out of attempts or time), the media
// is ejected and the boot override cleared, in the background with a
// timeout, audited either way.
func (s *Server) afterTransition(h host.Host) {
	o := s.rf
	if o == nil || (h.State != host.StateReady && h.State != host.StateFailed) || o.ready() != nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		b, err := o.bmcs.GetBMC(ctx, h.Name)
		if err != nil || !b.MediaInserted {
			return
		}
		err = o.eject(ctx, h.Name, true, "system", "", fmt.Sprintf("host is %s: media ejected, boot override cleared", h.State))
		if err != nil {
			s.log.Error("redfish: eject after install", "host", h.Name, "err", err) // eject stored the event
			return
		}
		s.log.Info("redfish: media ejected, boot override cleared", "host", h.Name)
	}()
}

// viaRedfish finishes a reimage or clean flagged through the API with
// {"via":"redfish"}: insert, boot override, restart.
func (s *Server) viaRedfish(c *gin.Context, h host.Host, reason string) {
	res, err := s.rf.provision(c.Request.Context(), h.Name, true, actor(c), requestID(c), reason)
	if err != nil {
		s.fail(c, fmt.Errorf("host %s is flagged %s, but the BMC sequence failed (it installs on its next boot from the ISO; cancel to undo): %w", h.Name, h.State, err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"host": h, "redfish": res})
}

// checkVia refuses a via other than redfish, or redfish without the setup
// it needs, before anything is flagged.
func (s *Server) checkVia(ctx context.Context, name, via string) error {
	if via != "redfish" {
		return host.Invalid("via", "%q is not a delivery method (want redfish)", via)
	}
	if err := s.rf.readyMedia(); err != nil {
		return err
	}
	_, _, err := s.rf.bmcOf(ctx, name)
	return err
}

// buildISO builds host name's ISO with a fresh boot token and, only once the
// ISO is complete, stores the token's hash with rec (action token-rotate).
func (s *Server) buildISO(ctx context.Context, name string, rec host.Record) ([]byte, error) {
	if s.opt.ISO == nil {
		return nil, errNoISOBuilder
	}
	h, err := s.store.GetHost(ctx, name)
	if err != nil {
		return nil, err
	}
	plain, hash := token.New()
	var buf isoBuffer
	if err := s.opt.ISO(&buf, h, plain); err != nil {
		return nil, fmt.Errorf("build ISO for %s: %w", h.Name, err)
	}
	_, err = s.store.UpdateHost(ctx, h.Name, func(h *host.Host) ([]host.Record, error) {
		h.TokenHash = hash
		return []host.Record{rec}, nil
	})
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
