// Package config holds the server's configuration: one struct with defaults,
// bound to flags with BOOTPILOT_* environment twins, and validated once.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

// Config is everything `bootpilot serve` can be told.
type Config struct {
	DataDir        string        // "./bootpilot-data": database, CA, admin token
	Listen         string        // ":8443"
	ExternalURL    string        // "https://10.0.0.5:8443": what hosts and installers use
	DB             string        // "" (SQLite in DataDir) or "mysql://user:pass@host:3306/bootpilot"
	DBMaxConns     int           // connections to a server database at most: 32
	MaxAttempts    int           // 3
	InstallTimeout time.Duration // 2h
	CleanTimeout   time.Duration // 6h
	CleanProfile   string        // "agent-clean": the profile whose kernel wipes disks
	HoldSeconds    int           // 300
	AgentAfter     string        // "reboot" or "poweroff"
	LogLevel       string        // "info"
	LogFormat      string        // "text" or "json"
	DBKey          string        // Secure Boot db key (PEM) that signs ISOs served by the API
	DBCert         string        // its certificate (PEM)
	ISOUnsigned    bool          // serve unsigned ISOs (no db key); default: sign with --db-key or <DataDir>/db.key
	Shim           string        // "" or /usr/lib/shim/shimx64.efi.signed: ISOs boot it, with iPXE as grubx64.efi
	MokManager     string        // "" or /usr/lib/shim/mmx64.efi.signed: put next to Shim
	ISOArch        []string      // architectures of the API's ISOs: ["x86_64"] (default), ["x86_64", "arm64"], ["arm64"]

	// Image sources (images.go): where the image cache may fetch from.
	ImageOrigins      []string // ["https://mirror.example.com", "registry.example.com"]; empty: no remote fetches
	ImageAllowPrivate bool     // also fetch from loopback, private, link-local, CGNAT, ULA addresses
	ImageImportDirs   []string // ["/srv/images"]: files the API may import by path; empty: none
	ImageMaxSize      int64    // 64 GiB: largest blob fetched or uploaded

	SecretKeyFile      string        // key that seals BMC passwords (bootpilot secret-key init FILE)
	AuthConfig         string        // "" or /etc/bootpilot/auth.yaml: sessions, LDAP/AD, group grants
	AuditRetention     time.Duration // 0: keep audit events for ever; else delete older ones
	MediaListen        string        // "" or ":8081": plain-HTTP listener for media URLs only
	MediaURL           string        // base URL BMCs fetch media from; default from --media-listen or --external-url
	MediaTTL           time.Duration // lifetime of a media URL; 0: install timeout + 1h
	RedfishConcurrency int           // BMC operations at once across all BMCs
	MaxConnections     int           // open HTTPS connections at once (4096)
}

// Default returns the defaults: the server runs with no flags at all.
func Default() Config {
	return Config{
		DataDir:        "./bootpilot-data",
		Listen:         ":8443",
		MaxAttempts:    host.DefaultPolicy.MaxAttempts,
		InstallTimeout: host.DefaultPolicy.InstallTimeout,
		CleanTimeout:   host.DefaultPolicy.CleanTimeout,
		CleanProfile:   "agent-clean",
		HoldSeconds:    300,
		AgentAfter:     "reboot",
		LogLevel:       "info",
		LogFormat:      "text",
		ImageMaxSize:   images.DefaultMaxSize,

		ISOArch:            []string{"x86_64"},
		RedfishConcurrency: 50,
		MaxConnections:     4096,
		DBMaxConns:         32,
	}
}

// Bind registers c's fields as flags on fs.
func (c *Config) Bind(fs *pflag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the SQLite database, CA, certificates and admin token")
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTPS listen address")
	fs.StringVar(&c.ExternalURL, "external-url", c.ExternalURL, "URL hosts use to reach this server (default https://<hostname>:<port>); its host goes into the certificate")
	fs.IntVar(&c.DBMaxConns, "db-max-conns", c.DBMaxConns, "connections this server keeps to a MySQL/PostgreSQL/SQL Server database at most; the database must allow this × replicas plus other clients")
	fs.StringVar(&c.DB, "db", c.DB, "database: empty for SQLite in --data-dir, mysql://user:pass@host:3306/db, a MySQL DSN, postgres://user:pass@host:5432/db?sslmode=verify-full, or sqlserver://user:pass@host:1433?database=db")
	fs.IntVar(&c.MaxAttempts, "max-attempts", c.MaxAttempts, "install or clean attempts before a host is marked failed")
	fs.DurationVar(&c.InstallTimeout, "install-timeout", c.InstallTimeout, "deadline of one install attempt")
	fs.DurationVar(&c.CleanTimeout, "clean-timeout", c.CleanTimeout, "deadline of one clean attempt")
	fs.StringVar(&c.CleanProfile, "clean-profile", c.CleanProfile, "profile whose kernel and initrd (the agent) clean disks")
	fs.IntVar(&c.HoldSeconds, "hold-seconds", c.HoldSeconds, "how long a host on hold waits before asking again")
	fs.StringVar(&c.AgentAfter, "agent-after", c.AgentAfter, "what the agent does when done: reboot or poweroff")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.StringVar(&c.DBKey, "db-key", c.DBKey, "Secure Boot db key (RSA, PEM) that signs the ISOs GET /api/v1/hosts/{name}/iso builds (default: db.key in --data-dir, made on first start)")
	fs.StringVar(&c.DBCert, "db-cert", c.DBCert, "certificate (PEM) of --db-key")
	fs.BoolVar(&c.ISOUnsigned, "iso-unsigned", c.ISOUnsigned, "let GET /api/v1/hosts/{name}/iso build unsigned ISOs, for hosts with Secure Boot off (no db key is made or used)")
	fs.StringVar(&c.Shim, "shim", c.Shim, "Microsoft-signed shim (e.g. Debian's /usr/lib/shim/shimx64.efi.signed) that the API's ISOs (downloads and virtual media) boot as EFI/BOOT/BOOTX64.EFI, with the signed iPXE as grubx64.efi: for hosts whose MokList (or db) holds the db certificate (x86_64 only)")
	fs.StringSliceVar(&c.ISOArch, "iso-arch", c.ISOArch, "architectures of the API's ISOs (downloads and virtual media), comma separated: x86_64, arm64, or x86_64,arm64 (one ISO boots either)")
	fs.StringVar(&c.MokManager, "mok-manager", c.MokManager, "shim's MokManager (e.g. /usr/lib/shim/mmx64.efi.signed) to put next to --shim as EFI/BOOT/mmx64.efi")
	fs.StringVar(&c.SecretKeyFile, "secret-key-file", c.SecretKeyFile, "key file (mode 0600) that encrypts BMC passwords; make one with: bootpilot secret-key init FILE (default: secret.key in --data-dir, made on first start; production keeps it outside, backed up, shared by replicas)")
	fs.StringVar(&c.AuthConfig, "auth-config", c.AuthConfig, "YAML file: session lifetime, LDAP / Active Directory login and group grants (README: Operators)")
	fs.DurationVar(&c.AuditRetention, "audit-retention", c.AuditRetention, "delete audit events older than this (e.g. 8760h); 0 keeps them for ever")
	fs.StringVar(&c.MediaListen, "media-listen", c.MediaListen, "also serve signed media URLs (/media/v1/) over plain HTTP on this address, for BMCs that cannot trust a private CA (the ISO and the boot token inside it travel in clear)")
	fs.StringVar(&c.MediaURL, "media-url", c.MediaURL, "base URL BMCs fetch media from (default http://<external host>:<media-listen port>, or --external-url)")
	fs.DurationVar(&c.MediaTTL, "media-ttl", c.MediaTTL, "lifetime of a media URL (default: install timeout + 1h)")
	fs.IntVar(&c.RedfishConcurrency, "redfish-concurrency", c.RedfishConcurrency, "BMC operations at once across all BMCs (one at a time per BMC)")
	c.bindImages(fs)
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "open HTTPS connections at once; more wait in the kernel's backlog")
}

// EnvOverlay sets every flag not given on the command line from its
// environment twin: --data-dir ← BOOTPILOT_DATA_DIR.
func EnvOverlay(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s: %w", EnvName(f.Name), e)
			}
		}
	})
	return err
}

// EnvName returns the environment twin of a flag name.
func EnvName(flag string) string {
	return "BOOTPILOT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Policy returns the lifecycle policy.
func (c *Config) Policy() host.Policy {
	return host.Policy{MaxAttempts: c.MaxAttempts, InstallTimeout: c.InstallTimeout, CleanTimeout: c.CleanTimeout}
}

// Validate checks c and fills in derived defaults (ExternalURL).
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir must not be empty")
	}
	if c.DBMaxConns < 1 || c.DBMaxConns > 10000 {
		return fmt.Errorf("--db-max-conns %d: want 1 to 10000 connections", c.DBMaxConns)
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", c.Listen, err)
	}
	if c.ExternalURL == "" {
		hn, _ := os.Hostname()
		if hn == "" {
			hn = "localhost"
		}
		if port == "0" {
			port = "8443"
		}
		c.ExternalURL = "https://" + net.JoinHostPort(strings.ToLower(hn), port)
	}
	c.ExternalURL = strings.TrimRight(c.ExternalURL, "/")
	u, err := url.Parse(c.ExternalURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("--external-url %q must be https://HOST[:PORT] with no path", c.ExternalURL)
	}
	if err := host.CheckURL("external-url", c.ExternalURL); err != nil {
		return err
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		return fmt.Errorf("--max-attempts %d must be 1-100", c.MaxAttempts)
	}
	if c.InstallTimeout < time.Minute || c.CleanTimeout < time.Minute {
		return fmt.Errorf("--install-timeout and --clean-timeout must be at least 1m")
	}
	if c.HoldSeconds < 5 || c.HoldSeconds > 86400 {
		return fmt.Errorf("--hold-seconds %d must be 5-86400", c.HoldSeconds)
	}
	if c.AgentAfter != "reboot" && c.AgentAfter != "poweroff" {
		return fmt.Errorf("--agent-after %q must be reboot or poweroff", c.AgentAfter)
	}
	if err := host.ValidName("clean-profile", c.CleanProfile); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q must be debug, info, warn or error", c.LogLevel)
	}
	if (c.DBKey == "") != (c.DBCert == "") {
		return fmt.Errorf("--db-key and --db-cert go together")
	}
	if c.DBKey != "" && c.ISOUnsigned {
		return fmt.Errorf("--iso-unsigned contradicts --db-key")
	}
	if c.Shim != "" && c.ISOUnsigned {
		return fmt.Errorf("--iso-unsigned contradicts --shim: under Secure Boot shim runs only a signed iPXE")
	}
	if len(c.ISOArch) == 0 {
		return fmt.Errorf("--iso-arch: give x86_64, arm64 or x86_64,arm64")
	}
	for _, a := range c.ISOArch {
		if a != "x86_64" && a != "arm64" {
			return fmt.Errorf("--iso-arch %q: want x86_64 or arm64", a)
		}
	}
	if c.Shim != "" && slices.Contains(c.ISOArch, "arm64") {
		return fmt.Errorf("--shim is x86_64 only: drop arm64 from --iso-arch")
	}
	if c.RedfishConcurrency < 1 || c.RedfishConcurrency > 10000 {
		return fmt.Errorf("--redfish-concurrency %d must be 1-10000", c.RedfishConcurrency)
	}
	if c.MaxConnections < 16 || c.MaxConnections > 1_000_000 {
		return fmt.Errorf("--max-connections %d must be 16-1000000", c.MaxConnections)
	}
	if c.MediaTTL < 0 {
		return fmt.Errorf("--media-ttl must not be negative")
	}
	if c.MediaListen != "" {
		_, mport, err := net.SplitHostPort(c.MediaListen)
		if err != nil {
			return fmt.Errorf("--media-listen %q: %w", c.MediaListen, err)
		}
		if c.MediaURL == "" && mport != "0" {
			c.MediaURL = "http://" + net.JoinHostPort(c.ExternalHost(), mport)
		}
	}
	if c.MediaURL != "" {
		c.MediaURL = strings.TrimRight(c.MediaURL, "/")
		u, err := url.Parse(c.MediaURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("--media-url %q must be http(s)://HOST[:PORT] with no path", c.MediaURL)
		}
	}
	if err := c.validateImages(); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q must be text or json", c.LogFormat)
	}
	return nil
}

// DSN returns the database DSN: --db, or SQLite inside the data directory.
func (c *Config) DSN() string {
	if c.DB != "" {
		return c.DB
	}
	return "sqlite:" + filepath.Join(c.DataDir, "bootpilot.db")
}

// ExternalHost returns the host part of ExternalURL.
func (c *Config) ExternalHost() string {
	u, _ := url.Parse(c.ExternalURL)
	return u.Hostname()
}
