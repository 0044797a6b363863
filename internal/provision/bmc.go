package provision

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/mediaurl"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
)

// BMCStore is what the BMC operations need from the database besides
// Store. GetBMC, DeleteBMC and SetBMCMedia return host.ErrNotFound for a
// host without a BMC; SetBMC for an unknown host.
type BMCStore interface {
	SetBMC(ctx context.Context, name string, b store.BMC, rec host.Record) error
	GetBMC(ctx context.Context, name string) (store.BMC, error)
	DeleteBMC(ctx context.Context, name string, rec host.Record) error
	SetBMCMedia(ctx context.Context, name string, inserted bool, rec host.Record) error
}

var _ BMCStore = (*store.DB)(nil)

// BMCOptions configure the BMC operations: Redfish virtual media, power and
// bulk jobs. Without Secrets they answer ErrNotConfigured saying how to
// configure a key.
type BMCOptions struct {
	Secrets     *secretbox.Keyring      // seals BMC passwords
	BMCs        BMCStore                // nil: Options.Store, when it implements BMCStore
	MediaKey    []byte                  // HMAC key of media URLs, ≥ 32 bytes
	MediaURL    string                  // base of media URLs, "http://10.0.0.5:8081"; "": Options.ExternalURL
	MediaTTL    time.Duration           // media URL lifetime; 0: install timeout + 1h
	MediaDir    string                  // ignored since schema v7: published ISOs live in the database
	Concurrency int                     // BMC operations at once, all BMCs; 0: 50
	Endpoint    func(*redfish.Endpoint) // optional tuning of every BMC endpoint (tests)

	// DBCert is the Secure Boot db certificate the ISOs are signed with,
	// which Secure Boot enrolment adds to hosts' db through their BMCs;
	// nil: enrolment answers ErrNotConfigured.
	DBCert *x509.Certificate

	// Shared keeps bulk jobs and published media; nil: Options.Store,
	// when it implements SharedStore.
	Shared SharedStore
	// Replica names this replica in the jobs it runs; "": the host name
	// and a random suffix.
	Replica string
	// JobLease is how long a job's replica may go without a heartbeat
	// before the sweep of any replica fails the job's unfinished hosts;
	// 0: 2 minutes. Running jobs heartbeat every JobLease/4.
	JobLease time.Duration
	// Context is the replica's lifetime (nil: forever): when it ends, the
	// jobs running here stop, without recording anything more, and their
	// heartbeats stop, as when the replica dies.
	Context context.Context
}

// EnableBMC configures the BMC operations and registers the media eject
// after transitions (a host that reaches ready or failed with bootpilot's
// media inserted gets it ejected). Call it once, before serving; without
// it every BMC operation answers ErrNotConfigured.
func (c *Core) EnableBMC(o BMCOptions) {
	if o.Concurrency <= 0 {
		o.Concurrency = 50
	}
	if o.BMCs == nil {
		o.BMCs, _ = c.store.(BMCStore)
	}
	if o.MediaURL == "" {
		o.MediaURL = c.opt.ExternalURL
	}
	if o.MediaTTL <= 0 {
		o.MediaTTL = c.opt.Policy.InstallTimeout + time.Hour
	}
	if o.Shared == nil {
		o.Shared, _ = c.store.(SharedStore)
	}
	if o.Replica == "" {
		o.Replica = replicaName()
	}
	if o.JobLease <= 0 {
		o.JobLease = 2 * time.Minute
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	c.bmc = &redfishOps{opt: o, bmcs: o.BMCs, shared: o.Shared,
		slots: make(chan struct{}, o.Concurrency), locks: map[string]chan struct{}{}}
	c.warnPlainMedia(o)
	c.OnTransition(c.ejectAfter)
}

// redfishOps holds the BMC operations' state: the store of bulk jobs and
// published media (shared by replicas), and this replica's per-BMC locks
// and global concurrency limit (in memory).
type redfishOps struct {
	opt    BMCOptions
	bmcs   BMCStore
	shared SharedStore
	slots  chan struct{} // global concurrency limit

	mu    sync.Mutex
	locks map[string]chan struct{} // per-BMC lock, keyed by scheme://host:port
}

var (
	errNoSecretKey = ErrNotConfigured{"BMC credentials need a secret key: create one with " +
		"`bootpilot secret-key init FILE` and start the server with --secret-key-file FILE " +
		"(or BOOTPILOT_SECRET_KEY_FILE)"}
	errNoBMCStore = ErrNotConfigured{"this server's store cannot keep BMC records"}
	errNoMediaISO = ErrNotConfigured{"virtual media needs ISO builds: start the server with --db-key/--db-cert (or --iso-unsigned)"}
	errNoMediaKey = ErrNotConfigured{"media URLs need a key of at least 32 bytes (derived from --secret-key-file)"}
)

// The audit actions of BMC steps (the calls' own actions are in the policy
// table).
const (
	actionPower  = "redfish-power"
	actionInsert = "redfish-insert"
	actionBoot   = "redfish-boot"
	actionEject  = "redfish-eject"
	actionFailed = "redfish-failed"
)

// plaintextReason is the audit reason's part for a BMC on http://.
const plaintextReason = "BMC settings set with insecure plaintext (credentials travel in clear)"

// ready reports why BMC operations cannot run, if they cannot.
func (o *redfishOps) ready() error {
	if o == nil || o.opt.Secrets == nil {
		return errNoSecretKey
	}
	if o.bmcs == nil {
		return errNoBMCStore
	}
	return nil
}

// readyStore reports why BMC records cannot be read or deleted, if they
// cannot (no secret key is needed for that).
func (o *redfishOps) readyStore() error {
	if o == nil || o.bmcs == nil {
		return o.ready()
	}
	return nil
}

// readyMedia reports why virtual media cannot be served, if it cannot.
func (c *Core) readyMedia() error {
	if err := c.bmc.ready(); err != nil {
		return err
	}
	if c.opt.ISO == nil {
		return errNoMediaISO
	}
	if len(c.bmc.opt.MediaKey) < mediaurl.MinKeyLen {
		return errNoMediaKey
	}
	if c.bmc.shared == nil {
		return errNoSharedStore
	}
	return nil
}

func viewBMC(b store.BMC) host.BMCInfo {
	return host.BMCInfo{Host: b.Host, URL: b.URL, Username: b.Username, HasPassword: b.SealedPassword != "",
		HasCA: b.CAPEM != "", Insecure: b.Insecure, InsecurePlaintext: b.InsecurePlaintext, Session: b.Session,
		MediaInserted: b.MediaInserted, MediaSince: b.MediaSince, UpdatedAt: b.UpdatedAt}
}

// SetBMC sets host name's BMC endpoint and credentials and returns what is
// stored (never the password). An empty password keeps the stored one; a
// new record needs one. Insecure settings are allowed, audited and logged.
func (c *Core) SetBMC(ctx context.Context, cl Caller, name string, s host.BMCSettings) (host.BMCInfo, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBMCSet, name); err != nil {
		return host.BMCInfo{}, err
	}
	o := c.bmc
	if err := o.ready(); err != nil {
		return host.BMCInfo{}, err
	}
	if err := s.Validate(); err != nil {
		return host.BMCInfo{}, err
	}
	b := store.BMC{Host: name, URL: strings.TrimRight(s.URL, "/"), Username: s.Username,
		CAPEM: s.CAPEM, Insecure: s.Insecure, InsecurePlaintext: s.InsecurePlaintext, Session: s.Session}
	if s.Password != "" {
		b.SealedPassword = o.opt.Secrets.Seal([]byte(s.Password), secretbox.BMCPasswordContext(name))
	} else {
		old, err := o.bmcs.GetBMC(ctx, name)
		if err != nil {
			if errors.Is(err, host.ErrNotFound) {
				err = host.Invalid("password", "required for a new BMC record")
			}
			return host.BMCInfo{}, err
		}
		b.SealedPassword = old.SealedPassword
	}
	reason := fmt.Sprintf("BMC %s, user %s", b.URL, b.Username)
	switch {
	case b.InsecurePlaintext:
		reason += ", " + plaintextReason
		c.log.Warn("bmc: BMC settings set with insecure plaintext, credentials travel in clear", "host", name,
			"actor", cl.Actor(), "request_id", cl.RequestID)
	case b.Insecure:
		reason += ", TLS verification DISABLED (insecure)"
		c.log.Warn("bmc: TLS verification disabled", "host", name, "actor", cl.Actor(), "request_id", cl.RequestID)
	case b.CAPEM != "":
		reason += ", pinned CA"
	}
	if s.Password != "" {
		reason += ", password changed"
	}
	if err := o.bmcs.SetBMC(ctx, name, b, cl.record(c.now(), name, auth.RuleFor(auth.OpBMCSet).Audit, reason)); err != nil {
		return host.BMCInfo{}, err
	}
	b, err := o.bmcs.GetBMC(ctx, name)
	if err != nil {
		return host.BMCInfo{}, err
	}
	return viewBMC(b), nil
}

// GetBMC returns host name's BMC settings, never the password (sealed or
// not); host.ErrNotFound when it has none.
func (c *Core) GetBMC(ctx context.Context, cl Caller, name string) (host.BMCInfo, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBMCGet, name); err != nil {
		return host.BMCInfo{}, err
	}
	if err := c.bmc.readyStore(); err != nil {
		return host.BMCInfo{}, err
	}
	b, err := c.bmc.bmcs.GetBMC(ctx, name)
	if err != nil {
		return host.BMCInfo{}, err
	}
	return viewBMC(b), nil
}

// DeleteBMC forgets host name's BMC and unpublishes its media;
// host.ErrNotFound when it has none.
func (c *Core) DeleteBMC(ctx context.Context, cl Caller, name string) error {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBMCDelete, name); err != nil {
		return err
	}
	if err := c.bmc.readyStore(); err != nil {
		return err
	}
	if err := c.bmc.bmcs.DeleteBMC(ctx, name, cl.record(c.now(), name, auth.RuleFor(auth.OpBMCDelete).Audit, "")); err != nil {
		return err
	}
	c.unpublish(ctx, name)
	return nil
}

// bmcOf loads host name's BMC and its endpoint (password opened).
func (c *Core) bmcOf(ctx context.Context, name string) (store.BMC, redfish.Endpoint, error) {
	o := c.bmc
	if err := o.ready(); err != nil {
		return store.BMC{}, redfish.Endpoint{}, err
	}
	b, err := o.bmcs.GetBMC(ctx, name)
	if err != nil {
		if errors.Is(err, host.ErrNotFound) {
			if _, herr := c.store.GetHost(ctx, name); herr != nil {
				return b, redfish.Endpoint{}, herr
			}
			return b, redfish.Endpoint{}, fmt.Errorf("host %s has no BMC (set one with PUT /api/v1/hosts/%s/bmc): %w", name, name, host.ErrNotFound)
		}
		return b, redfish.Endpoint{}, err
	}
	pw, err := o.opt.Secrets.Open(b.SealedPassword, secretbox.BMCPasswordContext(name))
	if err != nil {
		return b, redfish.Endpoint{}, fmt.Errorf("open the BMC password of %s (sealed by another key? see bootpilot bmc rotate-key): %w", name, err)
	}
	ep := redfish.Endpoint{URL: b.URL, Username: b.Username, Password: string(pw), CAPEM: []byte(b.CAPEM),
		Insecure: b.Insecure, InsecurePlaintext: b.InsecurePlaintext, Session: b.Session, Logger: c.log}
	if o.opt.Endpoint != nil {
		o.opt.Endpoint(&ep)
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

// withBMC runs fn holding the BMC's lock and a global slot; running, if not
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
func (c *Core) dialDo(ctx context.Context, name string, running func(), fn func(rc *redfish.Client) error) error {
	b, ep, err := c.bmcOf(ctx, name)
	if err != nil {
		return err
	}
	return c.bmc.withBMC(ctx, bmcKey(b.URL), running, func() error {
		rc, err := redfish.Dial(ctx, ep)
		if err != nil {
			return err
		}
		defer rc.Close()
		return fn(rc)
	})
}

// auditHost stores rec as one of host name's events (as a host change, so
// the host's version moves and watchers see it); a failure is logged.
func (c *Core) auditHost(ctx context.Context, name string, rec host.Record) {
	_, err := c.store.UpdateHost(ctx, name, func(*host.Host) ([]host.Record, error) { return []host.Record{rec}, nil })
	if err != nil {
		c.log.Error("redfish: store audit event", "host", name, "action", rec.Action, "err", err)
	}
}

// BMCTest is what TestBMC found: the answer of POST
// /api/v1/hosts/{name}/bmc/test.
type BMCTest struct {
	BMC        string      `json:"bmc"`         // "https://10.0.0.10:443"
	PowerState string      `json:"power_state"` // "On"
	SecureBoot *bool       `json:"secure_boot"` // null when the BMC does not say
	Boot       BootView    `json:"boot"`
	Media      *MediaState `json:"media,omitempty"` // null without a CD/DVD slot
}

// BootView is a BMC's boot override.
type BootView struct {
	Target  string `json:"target"`         // "Cd", "None"
	Enabled string `json:"enabled"`        // "Once", "Disabled"
	Mode    string `json:"mode,omitempty"` // "UEFI"
}

// MediaState is the state of a BMC's CD/DVD virtual media slot.
type MediaState struct {
	Slot         string   `json:"slot"`
	MediaTypes   []string `json:"media_types"`
	Inserted     bool     `json:"inserted"`
	Image        string   `json:"image,omitempty"` // without its query: signed URLs are capabilities
	InsertAction bool     `json:"insert_action"`
}

func viewMedia(m redfish.MediaStatus) *MediaState {
	img := m.Image
	if u, err := url.Parse(img); err == nil && u.RawQuery != "" {
		u.RawQuery = ""
		img = u.String() + "?…"
	}
	return &MediaState{Slot: m.Slot, MediaTypes: m.MediaTypes, Inserted: m.Inserted, Image: img, InsertAction: m.InsertAction}
}

// TestBMC dials host name's BMC and reads its power, Secure Boot, boot
// override and virtual media state. It changes nothing; a test that got
// through is audited (bmc-test: the stored credentials were used).
func (c *Core) TestBMC(ctx context.Context, cl Caller, name string) (BMCTest, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBMCTest, name); err != nil {
		return BMCTest{}, err
	}
	var res BMCTest
	err := c.dialDo(ctx, name, nil, func(rc *redfish.Client) error {
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
		res.Boot = BootView{bo.Target, bo.Enabled, bo.Mode}
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
		return BMCTest{}, err
	}
	c.audit(ctx, cl.record(c.now(), name, auth.RuleFor(auth.OpBMCTest).Audit,
		fmt.Sprintf("BMC %s answered: power %s", res.BMC, res.PowerState)))
	return res, nil
}

// PowerRequest is a power action. It is also the wire type of POST
// /api/v1/hosts/{name}/power.
type PowerRequest struct {
	Action string `json:"action"` // "on", "off", "restart", "status"
	Reason string `json:"reason"` // for the audit trail
}

// PowerResult is the power state after a power action.
type PowerResult struct {
	Host       string `json:"host"`
	Action     string `json:"action"`
	PowerState string `json:"power_state"` // "On", "Off"
}

// resetTypes maps power actions to Redfish ResetType.
var resetTypes = map[string]string{"on": "On", "off": "ForceOff", "restart": "ForceRestart"}

// Power turns host name on or off or restarts it through its BMC (audited
// as redfish-power), or with action status only reads the power state.
func (c *Core) Power(ctx context.Context, cl Caller, name string, r PowerRequest) (PowerResult, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpPower, name); err != nil {
		return PowerResult{}, err
	}
	kind, ok := resetTypes[r.Action]
	if !ok && r.Action != "status" {
		return PowerResult{}, host.Invalid("action", "%q is not on, off, restart or status", r.Action)
	}
	res := PowerResult{Host: name, Action: r.Action}
	err := c.dialDo(ctx, name, nil, func(rc *redfish.Client) error {
		if r.Action != "status" {
			if err := rc.Reset(ctx, kind); err != nil {
				return err
			}
			reason := "power " + r.Action + " (" + kind + ")"
			if r.Reason != "" {
				reason += ": " + r.Reason
			}
			c.auditHost(ctx, name, cl.record(c.now(), name, actionPower, reason))
		}
		var err error
		res.PowerState, err = rc.PowerState(ctx)
		return err
	})
	if err != nil {
		return PowerResult{}, err
	}
	return res, nil
}

// MediaResult is what a virtual-media insert did: the answer of POST
// /api/v1/hosts/{name}/media/insert, and the redfish part of an action
// taken via redfish.
type MediaResult struct {
	Host       string      `json:"host"`
	Expires    time.Time   `json:"media_expires"`         // when the media URL stops working
	Media      *MediaState `json:"media,omitempty"`       // the slot after the insert, when the BMC says
	PowerState string      `json:"power_state,omitempty"` // after the restart (via redfish only)
	EnrollDB   string      `json:"enroll_db,omitempty"`   // with enroll_db: "added" (the restart applies it) or "already in db"
}

// InsertMedia builds host name's ISO (rotating its boot token), publishes
// it on a signed, expiring media URL and inserts it as virtual media,
// leaving the boot override alone. Each step is audited.
func (c *Core) InsertMedia(ctx context.Context, cl Caller, name, reason string) (MediaResult, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpMediaIn, name); err != nil {
		return MediaResult{}, err
	}
	if err := c.readyMedia(); err != nil {
		return MediaResult{}, err
	}
	return c.provisionBMC(ctx, cl, name, bmcRun{reason: reason})
}

// EjectMedia unpublishes host name's media (its URLs answer 404 from then
// on, whether or not the BMC answers) and ejects it; audited as
// redfish-eject, or redfish-failed with the step that failed.
func (c *Core) EjectMedia(ctx context.Context, cl Caller, name, reason string) error {
	if _, err := c.authorizeHost(ctx, cl, auth.OpMediaOut, name); err != nil {
		return err
	}
	why := "media ejected"
	if reason != "" {
		why += ": " + reason
	}
	return c.eject(ctx, cl, name, false, why)
}

// checkVia refuses a via other than redfish, or redfish without the setup
// it needs (or for a host without a BMC), before anything is flagged.
func (c *Core) checkVia(ctx context.Context, name, via string) error {
	if via != "redfish" {
		return host.Invalid("via", "%q is not a delivery method (want redfish)", via)
	}
	if err := c.readyMedia(); err != nil {
		return err
	}
	_, _, err := c.bmcOf(ctx, name)
	return err
}

// viaRedfish finishes a reimage or clean flagged with via redfish (h is the
// host after it; the caller was authorized by Act): with EnrollDB enrol the
// db certificate, then insert the ISO, set a one-time boot override to the
// CD, restart.
func (c *Core) viaRedfish(ctx context.Context, cl Caller, h host.Host, o ActionOptions) (MediaResult, error) {
	if err := c.readyMedia(); err != nil {
		return MediaResult{}, err
	}
	return c.provisionBMC(ctx, cl, h.Name, bmcRun{boot: true, enrollDB: o.EnrollDB, reason: o.Reason})
}

// bmcRun says what provisionBMC does besides inserting the ISO.
type bmcRun struct {
	boot     bool   // set a one-time UEFI boot override to the CD and restart
	enrollDB bool   // first enrol the db certificate (so that the restart applies it)
	reason   string // for the audit trail

	// Bulk jobs pass hooks: running is called once the BMC is ours, before
	// runs first (and may fail the whole thing).
	running func()
	before  func() error
}

// provisionBMC builds host name's ISO (rotating its boot token), publishes
// it on a signed media URL and inserts it; with boot it also sets a
// one-time UEFI boot override to the CD and restarts the host (powering it
// on when off). With enrollDB it first enrols the db certificate in the
// host's db (when missing), so that the restart applies it. Each step is
// audited; a failed BMC step as redfish-failed.
func (c *Core) provisionBMC(ctx context.Context, cl Caller, name string, r bmcRun) (_ MediaResult, err error) {
	res := MediaResult{Host: name}
	reason := r.reason
	step := "connect to the BMC" // the step that failed, for the audit event; "": not a BMC step
	defer func() {
		if step != "" {
			c.auditFailure(ctx, cl, name, step, err)
		}
	}()
	err = c.dialDo(ctx, name, r.running, func(rc *redfish.Client) error {
		step = ""
		if r.before != nil {
			if err := r.before(); err != nil {
				return err
			}
		}
		if r.enrollDB {
			cert, err := c.dbCert()
			if err != nil {
				return err
			}
			step = "enroll the db certificate"
			added, err := c.enrollDB(ctx, cl, rc, name, cert, reason)
			if err != nil {
				return err
			}
			res.EnrollDB = map[bool]string{true: "added", false: "already in db"}[len(added) > 0]
		}
		step = "build the ISO"
		data, err := c.buildISO(ctx, name, cl.record(c.now(), name, auth.RuleFor(auth.OpHostISO).Audit,
			"ISO built for virtual media; the old boot token stops working"))
		if err != nil {
			return err
		}
		u, exp, err := c.publish(ctx, name, data)
		if err != nil {
			return err
		}
		res.Expires = exp
		step = "insert virtual media"
		if err := rc.InsertMedia(ctx, u); err != nil {
			c.unpublish(ctx, name)
			return err
		}
		why := fmt.Sprintf("ISO inserted as virtual media through %s (URL valid until %s)", rc.BMC(), exp.Format(time.RFC3339))
		if reason != "" {
			why += ": " + reason
		}
		step = "record the inserted media"
		if err := c.bmc.bmcs.SetBMCMedia(ctx, name, true, cl.record(c.now(), name, actionInsert, why)); err != nil {
			return err
		}
		if ms, err := rc.MediaStatus(ctx); err == nil {
			res.Media = viewMedia(ms)
		}
		if !r.boot {
			step = ""
			return nil
		}
		step = "set the boot override to the CD"
		if err := rc.SetBootOverride(ctx, "Cd", "Once"); err != nil {
			return err
		}
		step = "read the power state"
		was, err := rc.PowerState(ctx)
		if err != nil {
			return err
		}
		kind := "ForceRestart"
		if was == "Off" {
			kind = "On"
		}
		step = "power " + kind
		if err := rc.Reset(ctx, kind); err != nil {
			return err
		}
		step = ""
		c.auditHost(ctx, name, cl.record(c.now(), name, actionBoot,
			fmt.Sprintf("boot override Cd once (UEFI), power %s → %s", was, kind)))
		res.PowerState, _ = rc.PowerState(ctx)
		return nil
	})
	return res, err
}

// publish keeps data as host name's media and returns its signed URL.
func (c *Core) publish(ctx context.Context, name string, data []byte) (string, time.Time, error) {
	o := c.bmc
	exp := c.now().Add(o.opt.MediaTTL).Truncate(time.Second)
	id, err := c.publishMedia(ctx, name, data, exp)
	if err != nil {
		return "", exp, err
	}
	return mediaurl.Sign(o.opt.MediaKey, o.opt.MediaURL, name, id, exp), exp, nil
}

// eject unpublishes host name's media once it holds the BMC's lock (its
// URLs answer 404 from then on, whatever the BMC answers or whether it
// answers at all), ejects the virtual media and, with clearBoot, disables
// the boot override; the step is audited.
func (c *Core) eject(ctx context.Context, cl Caller, name string, clearBoot bool, reason string) error {
	unpublish := func() { c.unpublish(ctx, name) }
	step := "connect to the BMC"
	err := c.dialDo(ctx, name, unpublish, func(rc *redfish.Client) error {
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
		return c.bmc.bmcs.SetBMCMedia(ctx, name, false, cl.record(c.now(), name, actionEject, reason))
	})
	c.auditFailure(ctx, cl, name, step, err)
	return err
}

// auditFailure stores a failed BMC step of host name as a redfish-failed
// event: the step and the error, with URL credentials, queries (signed
// media URLs) and terminal escapes removed. Nothing is stored for a nil
// err, or when nothing was tried: the host has no BMC, the server no key.
func (c *Core) auditFailure(ctx context.Context, cl Caller, name, step string, err error) {
	if err == nil || errors.Is(err, host.ErrNotFound) || errors.As(err, new(ErrNotConfigured)) {
		return
	}
	detail := host.CleanText(images.RedactText(err.Error()), host.MaxDetailText)
	c.auditHost(context.WithoutCancel(ctx), name, cl.record(c.now(), name, actionFailed, step+" failed: "+detail))
}

// ejectAfter runs after a committed state change of h (registered by
// EnableBMC): when a host reaches ready or failed with bootpilot's media
// still inserted (the install or clean reported, was cancelled, ran out of
// attempts or time), the media is ejected and the boot override cleared, in
// the background with a timeout, audited either way as the system.
func (c *Core) ejectAfter(h host.Host) {
	o := c.bmc
	if (h.State != host.StateReady && h.State != host.StateFailed) || o.ready() != nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		b, err := o.bmcs.GetBMC(ctx, h.Name)
		if err != nil || !b.MediaInserted {
			return
		}
		err = c.eject(ctx, SystemCaller, h.Name, true, fmt.Sprintf("host is %s: media ejected, boot override cleared", h.State))
		if err != nil {
			c.log.Error("redfish: eject after install", "host", h.Name, "err", err) // eject stored the event
			return
		}
		c.log.Info("redfish: media ejected, boot override cleared", "host", h.Name)
	}()
}
