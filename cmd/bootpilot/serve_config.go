package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/spf13/pflag"

	"github.com/bootpilot/bootpilot/internal/config"
)

// serveConfigHelp is the help of serve's --config flag.
const serveConfigHelp = "YAML file of serve's settings, one per flag without -- (external-url: https://boot.example.org:8443; " +
	"max-connections: 100); env BOOTPILOT_CONFIG; flags and BOOTPILOT_* variables win over it"

// bindServeConfig registers --config on serve's flags.
func bindServeConfig(fs *pflag.FlagSet) {
	fs.String(config.FlagConfig, "", serveConfigHelp)
}

// loadServeConfig fills cfg from the command line, the environment and the
// config file (in that order of precedence), validates it, and warns on
// stderr when --external-url was derived from a short host name.
func loadServeConfig(fs *pflag.FlagSet, cfg *config.Config, stderr io.Writer) error {
	file, err := config.Load(fs)
	if err != nil {
		return err
	}
	derived := cfg.ExternalURL == ""
	if err := cfg.Validate(); err != nil {
		return file.Explain(err)
	}
	if w := shortHostWarning(cfg.ExternalURL); derived && w != "" {
		fmt.Fprintln(stderr, "bootpilot: warning:", w)
	}
	return nil
}

// shortHostWarning returns a warning when the host of externalURL is a
// short name (no dot, not an IP address), which iPXE, with no DNS search
// domain, and most installers cannot resolve; else "".
func shortHostWarning(externalURL string) string {
	u, err := url.Parse(externalURL)
	if err != nil {
		return ""
	}
	h := u.Hostname()
	if h == "" || strings.Contains(h, ".") || net.ParseIP(h) != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return fmt.Sprintf("--external-url defaults to %s from this machine's host name: hosts must resolve %s (iPXE has no DNS search domain) "+
		"and it is the only name in the server's certificate; set --external-url https://<address hosts use>:%s", term(externalURL), term(h), port)
}
