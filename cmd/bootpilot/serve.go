package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/token"
	"github.com/bootpilot/bootpilot/server"
)

func newServeCmd() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the bootpilot server (HTTPS boot API, admin API, metrics)",
		Long: `Run the server. With no flags it keeps everything in ./bootpilot-data: a SQLite
database, a self-made RSA CA (ca.pem) and server certificate, the admin API
token (admin-token, printed once on first start), the Secure Boot db key that
signs ISOs (db.key; enrol db.cer in the hosts' firmware) unless --db-key or
--iso-unsigned, and the secret key that seals BMC passwords (secret.key) unless
--secret-key-file. Every flag has a BOOTPILOT_*
environment twin (--db ← BOOTPILOT_DB).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadServeConfig(cmd.Flags(), &cfg, cmd.ErrOrStderr()); err != nil { // flag > env > --config file > default
				return err
			}
			return serve(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr(), nil)
		},
	}
	cfg.Bind(cmd.Flags())
	bindServeConfig(cmd.Flags())
	return cmd
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	o := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// serve runs the server until ctx ends. ready, if not nil, is called with the
// listening address once the server accepts connections.
func serve(ctx context.Context, cfg config.Config, stdout, stderr io.Writer, ready func(addr string)) error {
	log := newLogger(cfg, stderr)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	bundle, err := pki.Ensure(pki.FilesIn(cfg.DataDir), []string{cfg.ExternalHost()}, time.Now())
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DSN(), store.MaxConns(cfg.DBMaxConns))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := bootstrapAdmin(ctx, db, cfg.DataDir, stdout); err != nil {
		return err
	}
	cache, err := images.New(filepath.Join(cfg.DataDir, "images"), imageOptions(cfg, log)...)
	if err != nil {
		return err
	}
	iso, dbCert, err := isoBuilder(cfg, bundle, stdout, log)
	if err != nil {
		return err
	}
	authSvc, err := authService(cfg, db, log)
	if err != nil {
		return err
	}
	opt := server.Options{
		Store: db, Auth: authSvc, PKI: bundle, ExternalURL: cfg.ExternalURL, Policy: cfg.Policy(),
		CleanProfile: cfg.CleanProfile, HoldSeconds: cfg.HoldSeconds, AgentAfter: cfg.AgentAfter,
		ISO: iso, Images: cache, Logger: log,
		MediaURL: cfg.MediaURL, MediaTTL: cfg.MediaTTL, RedfishConcurrency: cfg.RedfishConcurrency,
		MediaDir: filepath.Join(cfg.DataDir, "media"),
		DataDir:  cfg.DataDir, MaxConnections: cfg.MaxConnections, DBCert: dbCert,
	}
	mediaLn, err := redfishOptions(cfg, &opt, log)
	if err != nil {
		return err
	}
	if mediaLn != nil {
		defer mediaLn.Close()
	}
	srv, err := server.New(opt)
	if err != nil {
		return err
	}
	if mediaLn != nil {
		go serveMedia(ctx, mediaLn, srv, log)
	}
	go housekeeping(ctx, db, cfg.AuditRetention, log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("bootpilot serving", "listen", ln.Addr().String(), "external_url", cfg.ExternalURL,
		"db", db.Driver(), "ca", filepath.Join(cfg.DataDir, "ca.pem"), "ca_sha256", pki.Fingerprint(bundle.CA))
	if ready != nil {
		ready(ln.Addr().String())
	}
	err = srv.Serve(ctx, ln)
	log.Info("bootpilot stopped")
	return err
}

// redfishOptions loads the secret key (BMC passwords, media URL key, TLS
// session-ticket keys) into o and opens the plain-HTTP media listener, if
// configured. Without --secret-key-file the key is <data-dir>/secret.key,
// made on first start.
func redfishOptions(cfg config.Config, o *server.Options, log *slog.Logger) (net.Listener, error) {
	keyFile, what := cfg.SecretKeyFile, "--secret-key-file"
	if keyFile == "" {
		var err error
		if keyFile, err = dataDirSecretKey(cfg.DataDir, log); err != nil {
			return nil, err
		}
		what = "secret key"
	}
	key, err := secretbox.LoadKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if o.MediaKey, err = secretbox.DeriveFromFile(keyFile, "media-url"); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Session-ticket keys: replicas sharing the key resume each other's TLS sessions.
	if o.TicketKey, err = secretbox.DeriveFromFile(keyFile, "tls-session-tickets"); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	o.Secrets = secretbox.NewKeyring(key)
	if cfg.MediaListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.MediaListen)
	if err != nil {
		return nil, fmt.Errorf("--media-listen: %w", err)
	}
	if o.MediaURL == "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		o.MediaURL = "http://" + net.JoinHostPort(cfg.ExternalHost(), port)
	}
	return ln, nil
}

// serveMedia serves media URLs over plain HTTP on ln until ctx ends.
func serveMedia(ctx context.Context, ln net.Listener, srv *server.Server, log *slog.Logger) {
	// GET and HEAD only: no request body is worth waiting for; answers are
	// ranged ISO reads that may stream for as long as the BMC reads.
	hs := &http.Server{Handler: srv.MediaHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	log.Info("media listener (plain HTTP, signed URLs only)", "listen", ln.Addr().String())
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("media listener stopped", "err", err)
	}
}

// dataDirSecretKey returns <data-dir>/secret.key, making it (mode 0600) on
// first start, and says that production keeps the key elsewhere.
func dataDirSecretKey(dataDir string, log *slog.Logger) (string, error) {
	file := filepath.Join(dataDir, "secret.key")
	k, created, err := secretbox.EnsureKeyFile(file)
	if err != nil {
		return "", fmt.Errorf("secret key: %w", err)
	}
	msg := "using the secret key in the data dir (BMC passwords, media URLs)"
	if created {
		msg = "made a secret key in the data dir (BMC passwords, media URLs)"
	}
	log.Warn(msg, "file", file, "key_id", k.ID(),
		"production", "keep the key outside the data dir, backed up and shared by all replicas, and pass --secret-key-file (bootpilot secret-key init FILE)")
	return file, nil
}

// dataDirSigner returns the Secure Boot db key in the data dir, making it on
// first start; then it prints, once, where the certificate is and how to
// enrol it.
func dataDirSigner(dataDir string, stdout io.Writer, log *slog.Logger) (*imagebuilder.Signer, error) {
	f := pki.DBFilesIn(dataDir)
	db, created, err := pki.EnsureDB(f, time.Now())
	if err != nil {
		return nil, err
	}
	if created {
		fmt.Fprintf(stdout, "Secure Boot db key made (%s); ISOs from the API are signed with it.\n"+
			"Before a host boots its ISO with Secure Boot on, enrol the certificate in its firmware's db:\n"+
			"UEFI setup → Secure Boot → enrol db from file %s (DER; PEM: %s).\n",
			f.Key, f.CertDER, f.Cert)
	}
	log.Info("ISOs are signed by the Secure Boot db key in the data dir; enrol its certificate in each host's db",
		"db_cert", f.Cert, "db_cert_der", f.CertDER, "db_sha256", pki.Fingerprint(db.Cert))
	return &imagebuilder.Signer{Key: db.Key, Cert: db.Cert}, nil
}

// isoBuilder returns the builder behind GET /api/v1/hosts/{name}/iso: signed
// with --db-key, unsigned with --iso-unsigned, otherwise signed with the
// Secure Boot db key in the data dir (made on first start); with --shim, in
// the shim layout. It also returns the db certificate the ISOs are signed
// with (nil when unsigned): the one `bmc secure-boot NAME enroll` adds to
// hosts' db through their BMCs.
func isoBuilder(cfg config.Config, bundle *pki.Bundle, stdout io.Writer, log *slog.Logger) (server.ISOBuilder, *x509.Certificate, error) {
	ic := imagebuilder.Config{ServerURL: cfg.ExternalURL, CACert: bundle.CA, Unsigned: cfg.ISOUnsigned, Arches: cfg.ISOArch}
	switch {
	case cfg.DBKey != "":
		key, err := os.ReadFile(cfg.DBKey)
		if err != nil {
			return nil, nil, fmt.Errorf("--db-key: %w", err)
		}
		cert, err := os.ReadFile(cfg.DBCert)
		if err != nil {
			return nil, nil, fmt.Errorf("--db-cert: %w", err)
		}
		if ic.Signer, err = imagebuilder.LoadSigner(key, cert); err != nil {
			return nil, nil, fmt.Errorf("--db-key/--db-cert: %w", err)
		}
	case !cfg.ISOUnsigned:
		var err error
		if ic.Signer, err = dataDirSigner(cfg.DataDir, stdout, log); err != nil {
			return nil, nil, err
		}
	}
	var err error
	if ic.Shim, ic.MokManager, err = loadShim(cfg.Shim, cfg.MokManager); err != nil {
		return nil, nil, err
	}
	b, err := imagebuilder.NewBuilder(ic)
	if err != nil {
		return nil, nil, err
	}
	if ic.Shim != nil {
		log.Info("ISOs boot --shim, which loads the signed iPXE as grubx64.efi: hosts need the db certificate in MokList (or db)",
			"shim", cfg.Shim, "mok_manager", cfg.MokManager)
	}
	var cert *x509.Certificate
	if ic.Signer != nil {
		cert = ic.Signer.Cert
	}
	return func(w io.Writer, h host.Host, tok string) error {
		_, err := b.Build(w, h, tok)
		return err
	}, cert, nil
}

// housekeeping deletes long-expired sessions and, with --audit-retention,
// audit events older than the retention (the only deletion of audit
// events), once an hour. Every replica may run it: both are idempotent.
func housekeeping(ctx context.Context, db *store.DB, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := db.DeleteExpiredTokens(ctx, time.Now().Add(-24*time.Hour)); err != nil {
			log.Warn("housekeeping: delete expired sessions", "err", err)
		} else if n > 0 {
			log.Info("housekeeping: expired sessions deleted", "count", n)
		}
		if retention > 0 {
			if n, err := db.PruneEvents(ctx, time.Now().Add(-retention)); err != nil {
				log.Warn("housekeeping: prune audit events", "err", err)
			} else if n > 0 {
				log.Info("housekeeping: audit events past retention deleted", "count", n, "retention", retention)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// authService loads --auth-config (sessions, LDAP/AD, group grants) and
// builds the operator service. A bad file fails the start with FILE:LINE.
func authService(cfg config.Config, db *store.DB, log *slog.Logger) (*auth.Service, error) {
	ac := auth.DefaultConfig()
	if cfg.AuthConfig != "" {
		var err error
		if ac, err = auth.LoadConfig(cfg.AuthConfig); err != nil {
			return nil, fmt.Errorf("--auth-config: %w", err)
		}
	}
	for _, w := range ac.Warnings() {
		log.Warn("auth config: " + w)
	}
	var dir auth.DirectoryService
	if ac.LDAP != nil {
		d, err := auth.NewDirectory(ac.LDAP, ac.Grants)
		if err != nil {
			return nil, fmt.Errorf("--auth-config: ldap: %w", err)
		}
		dir = d
		log.Info("directory login enabled", "urls", ac.LDAP.URLs, "grants", len(ac.Grants))
	}
	return auth.NewService(db, dir, auth.ServiceOptions{SessionTTL: ac.SessionTTL, PreferLocal: ac.PreferLocal, Logger: log}), nil
}

// bootstrapAdmin creates the first admin token when the database has none,
// prints it once and keeps it in <data-dir>/admin-token (0600). Only its hash
// goes into the database.
func bootstrapAdmin(ctx context.Context, db *store.DB, dataDir string, stdout io.Writer) error {
	n, err := db.CountAPITokens(ctx)
	if err != nil || n > 0 {
		return err
	}
	plain, hash := token.NewN(32)
	file := filepath.Join(dataDir, "admin-token")
	if err := os.WriteFile(file, []byte(plain+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	err = db.CreateAPIToken(ctx, host.APIToken{Name: "admin", Hash: hash, Role: "admin", CreatedAt: time.Now().UTC()})
	if errors.Is(err, host.ErrConflict) {
		return nil // another replica made it first
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Admin API token (shown once, also saved to %s):\n%s\n", file, plain)
	return nil
}
