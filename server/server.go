// Package server is bootpilot's HTTP layer: the boot API that iPXE,
// installers and the agent call, the admin REST API, health and metrics. Handlers
// are thin: parse, one call, render; errors map to status codes in one table
// (errors.go).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/net/netutil"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
)

// Store is what the server needs from the database. Errors are the domain's
// sentinels: host.ErrNotFound, host.ErrConflict; fn errors from UpdateHost
// come back unchanged.
type Store interface {
	Ping(ctx context.Context) error
	CreateHost(ctx context.Context, h host.Host, rec host.Record) (host.Host, error)
	GetHost(ctx context.Context, name string) (host.Host, error)
	ListHosts(ctx context.Context, f store.HostFilter) ([]host.Host, error)
	UpdateHost(ctx context.Context, name string, fn func(h *host.Host) ([]host.Record, error)) (host.Host, error)
	DeleteHost(ctx context.Context, name string, rec host.Record) error
	SetInventory(ctx context.Context, name string, inv host.Inventory) error
	Events(ctx context.Context, name string, limit int) ([]host.Record, error)
	ExpiredHosts(ctx context.Context, now time.Time) ([]host.Host, error)
	CountHosts(ctx context.Context) (map[host.State]int, error)
	CheckWrite(ctx context.Context) error
	CreateProfile(ctx context.Context, p host.Profile) (host.Profile, error)
	GetProfile(ctx context.Context, name string) (host.Profile, error)
	ListProfiles(ctx context.Context) ([]host.Profile, error)
	UpdateProfile(ctx context.Context, name string, fn func(p *host.Profile) error) (host.Profile, error)
	DeleteProfile(ctx context.Context, name string) error
	APITokenByHash(ctx context.Context, hash string) (host.APIToken, error)
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
	Handler() http.Handler
}

var _ Images = (*images.Cache)(nil)

// ISOBuilder writes host h's boot ISO, embedding boot token tok.
type ISOBuilder func(w io.Writer, h host.Host, tok string) error

// Options configure a Server.
type Options struct {
	Store        Store
	PKI          *pki.Bundle
	ExternalURL  string      // "https://10.0.2.100:8443"
	Policy       host.Policy // attempts and deadlines
	CleanProfile string      // "agent-clean"
	HoldSeconds  int         // 300
	AgentAfter   string      // "reboot"
	ISO          ISOBuilder  // nil: the ISO endpoint answers 501
	Images       Images      // nil: no image cache (image profiles cannot boot)
	Logger       *slog.Logger
	Now          func() time.Time // time.Now
	DataDir      string           // checked for writes by /readyz; "": not checked

	// Connection and request limits (limits.go).
	MaxConnections int           // open connections at once; 0: 4096
	BodyTimeout    time.Duration // time to read a request body; 0: 30s

	// Redfish virtual media (bmc.go). Without Secrets, BMC operations
	// answer 501 saying how to configure a key.
	Secrets            *secretbox.Keyring      // seals BMC passwords
	BMCs               BMCStore                // nil: Store, when it implements BMCStore
	MediaKey           []byte                  // HMAC key of media URLs, ≥ 32 bytes
	MediaURL           string                  // base of media URLs, "http://10.0.0.5:8081"; "": ExternalURL
	MediaTTL           time.Duration           // media URL lifetime; 0: install timeout + 1h
	MediaDir           string                  // where published ISOs are kept as files; "": in memory
	RedfishConcurrency int                     // BMC operations at once, all BMCs; 0: 50
	RedfishEndpoint    func(*redfish.Endpoint) // optional tuning of every BMC endpoint (tests)
}

// Server serves the boot and admin APIs.
type Server struct {
	opt     Options
	store   Store
	render  *bootscripts.Renderer
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	engine  *gin.Engine
	caPEM   string
	caFP    string
	rf      *redfishOps // BMC operations, media and bulk jobs (bmc.go)
}

// New builds a Server; templates are parsed here, once.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.PKI == nil {
		return nil, errors.New("server: Store and PKI are required")
	}
	r, err := bootscripts.New()
	if err != nil {
		return nil, fmt.Errorf("server: templates: %w", err)
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
	if o.MaxConnections == 0 {
		o.MaxConnections = defaultMaxConns
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = defaultBodyTimeout
	}
	if o.Policy.MaxAttempts == 0 {
		o.Policy = host.DefaultPolicy
	}
	s := &Server{
		opt: o, store: o.Store, render: r, log: o.Logger, now: o.Now,
		caPEM: string(o.PKI.CAPEM()), caFP: pki.Fingerprint(o.PKI.CA),
	}
	s.metrics = newMetrics(o.Store)
	s.engine = s.routes()
	return s, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

// TLSConfig returns the TLS configuration: RSA chain including the CA, TLS 1.2
// at least (iPXE's newest) with ECDHE + AEAD suites only.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		Certificates: []tls.Certificate{s.opt.PKI.TLS},
	}
}

// Serve serves HTTPS on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// Over the cap, new connections wait in the kernel's backlog; the
	// per-route deadlines (limits.go) make sure slow ones make room.
	ln = netutil.LimitListener(ln, s.opt.MaxConnections)
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	go s.sweep(ctx)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	return nil
}

// sweep fails attempts whose deadline passed, so a hung installer does not
// leave a host in installing forever.
func (s *Server) sweep(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.SweepOnce(ctx)
		}
	}
}

// SweepOnce applies the timeout event to every host past its deadline.
func (s *Server) SweepOnce(ctx context.Context) {
	now := s.now()
	hs, err := s.store.ExpiredHosts(ctx, now)
	if err != nil {
		s.log.Error("sweep: list expired hosts", "err", err)
		return
	}
	for _, h := range hs {
		after, err := s.store.UpdateHost(ctx, h.Name, func(h *host.Host) ([]host.Record, error) {
			if !host.Expired(*h, now) {
				return nil, errNoop
			}
			return s.transition(h, host.EventTimeout, "system", "", fmt.Sprintf("attempt %d passed its deadline", h.Attempt))
		})
		switch {
		case err == nil:
			s.afterTransition(after)
		case !errors.Is(err, errNoop):
			s.log.Error("sweep: fail expired host", "host", h.Name, "err", err)
		}
	}
}

// errNoop aborts an UpdateHost transaction that has nothing to change.
var errNoop = errors.New("no change")

// transition applies e to h (in an UpdateHost callback) and returns the audit record.
func (s *Server) transition(h *host.Host, e host.Event, actor, requestID, reason string) ([]host.Record, error) {
	to, err := host.Next(h.State, e)
	if err != nil {
		return nil, err
	}
	rec := host.Record{Host: h.Name, Actor: actor, Event: e, From: h.State, To: to,
		Attempt: h.Attempt, Reason: reason, RequestID: requestID, Time: s.now().UTC()}
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
