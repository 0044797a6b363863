// Package server is bootpilot's HTTP layer: the boot API that iPXE,
// installers and the agent call, the admin REST API, health and metrics. Handlers
// are thin: parse, one call, render; errors map to status codes in one table
// (errors.go).
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/net/netutil"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/server/console"
)

// Store is what the server needs from the database: the core's needs plus
// health and metrics.
type Store interface {
	provision.Store
	Ping(ctx context.Context) error
	CheckWrite(ctx context.Context) error
	CountHosts(ctx context.Context) (map[host.State]int, error)
}

var _ Store = (*store.DB)(nil)

// Images is the image cache (implemented by *images.Cache): the core's
// needs plus the handler that serves cached blobs.
type Images interface {
	provision.Images
	Handler() http.Handler
}

var _ Images = (*images.Cache)(nil)

// ISOBuilder writes host h's boot ISO, embedding boot token tok.
type ISOBuilder = provision.ISOBuilder

// Auth is the operator service (implemented by *auth.Service): who the
// caller is, sessions, tokens, users and the audit log. Its errors are the
// domain's sentinels and auth.ErrInvalidCredentials, auth.ErrDirectoryDown,
// auth.ErrThrottled.
type Auth interface {
	Authenticate(ctx context.Context, bearer string) (auth.Identity, error)
	Login(ctx context.Context, username, password string, m auth.Meta) (auth.Session, error)
	Logout(ctx context.Context, bearer string, m auth.Meta) error
	CreateToken(ctx context.Context, caller auth.Identity, r auth.TokenRequest, m auth.Meta) (string, auth.Token, error)
	ListTokens(ctx context.Context, caller auth.Identity, all bool) ([]auth.Token, error)
	RevokeToken(ctx context.Context, caller auth.Identity, id int64, m auth.Meta) error
	CreateUser(ctx context.Context, caller auth.Identity, u auth.NewUser, m auth.Meta) (auth.User, error)
	ListUsers(ctx context.Context, caller auth.Identity) ([]auth.User, error)
	GetUser(ctx context.Context, caller auth.Identity, source auth.Source, name string) (auth.User, error)
	UpdateUser(ctx context.Context, caller auth.Identity, source auth.Source, name string, up auth.UserUpdate, m auth.Meta) (auth.User, error)
	DeleteUser(ctx context.Context, caller auth.Identity, source auth.Source, name string, m auth.Meta) error
	Audit(ctx context.Context, caller auth.Identity, f auth.AuditFilter) ([]host.Record, error)
	SessionTTL() time.Duration
}

var _ Auth = (*auth.Service)(nil)

// Options configure a Server.
type Options struct {
	Store        Store
	Auth         Auth // who the caller is; required
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
	DBCert             *x509.Certificate       // the Secure Boot db certificate ISOs are signed with, enrolled through BMCs; nil: enrolment answers 501

	// TLS session tickets (tls.go). TicketKey is the master key of the
	// session-ticket keys, derived from the shared secret key
	// (secretbox.DeriveFromFile(file, "tls-session-tickets")), so replicas
	// resume each other's sessions; nil: Go's random keys, per process.
	TicketKey    []byte
	TicketPeriod time.Duration // rotation period of ticket keys; 0: DefaultTicketPeriod (24h)
}

// Server serves the boot and admin APIs.
type Server struct {
	opt     Options
	store   Store
	core    *provision.Core
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	engine  *gin.Engine
	table   []Route // the route table (routes.go)
	csrf    *http.CrossOriginProtection
	console *console.Console
	tickets *ticketKeys // nil: Go's default ticket keys
}

// New builds a Server and its core; templates are parsed here, once.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.PKI == nil || o.Auth == nil {
		return nil, errors.New("server: Store, Auth and PKI are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = defaultMaxConns
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = defaultBodyTimeout
	}
	po := provision.Options{
		Store: o.Store, ExternalURL: o.ExternalURL, CAPEM: string(o.PKI.CAPEM()), CAFingerprint: pki.Fingerprint(o.PKI.CA),
		Policy: o.Policy, CleanProfile: o.CleanProfile, HoldSeconds: o.HoldSeconds, AgentAfter: o.AgentAfter,
		ISO: o.ISO, ImagesPrefix: imagesPrefix, Logger: o.Logger, Now: o.Now,
	}
	if o.Images != nil {
		po.Images = o.Images
	}
	core, err := provision.New(po)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	core.EnableBMC(bmcOptions(o)) // BMC operations, media registry, eject after transitions (bmc.go)
	ui, err := console.New(console.Options{Core: core, Auth: o.Auth, Logger: o.Logger, Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("server: console: %w", err)
	}
	s := &Server{opt: o, store: o.Store, core: core, log: o.Logger, now: o.Now, csrf: http.NewCrossOriginProtection(), console: ui}
	s.metrics = newMetrics(o.Store)
	if len(o.TicketKey) > 0 {
		if len(o.TicketKey) < 32 {
			return nil, errors.New("server: TicketKey is shorter than 32 bytes")
		}
		s.tickets = newTicketKeys(o.TicketKey, o.TicketPeriod, o.Now)
	}
	s.engine = s.routes()
	return s, nil
}

// Core returns the server's core (the CLI's offline paths and tests share it).
func (s *Server) Core() *provision.Core { return s.core }

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

// TLSConfig returns the TLS configuration: RSA chain including the CA, TLS 1.2
// at least (iPXE's newest) with ECDHE + AEAD suites only. Session tickets
// (RFC 5077 in TLS 1.2, PSK in TLS 1.3) are encrypted under keys derived
// from Options.TicketKey when set, so a boot's later connections resume on
// any replica instead of paying another RSA signature. Every completed
// handshake counts in bootpilot_tls_handshakes_total{resumed}.
func (s *Server) TLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		Certificates: []tls.Certificate{s.opt.PKI.TLS},
		// Called once per handshake, full or resumed, after the server's
		// signature (if any): one counter increment, and a debug line.
		VerifyConnection: func(cs tls.ConnectionState) error {
			s.metrics.handshake(cs.DidResume)
			s.log.Debug("tls handshake", "version", tls.VersionName(cs.Version), "resumed", cs.DidResume)
			return nil
		},
	}
	if s.tickets != nil {
		s.tickets.install(cfg)
	}
	return cfg
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
	go s.core.Sweep(ctx)
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

// SweepOnce applies the timeout event to every host past its deadline.
func (s *Server) SweepOnce(ctx context.Context) { s.core.SweepOnce(ctx) }
