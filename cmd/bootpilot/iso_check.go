package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/pki"
)

// isoHandshakeTimeout bounds the TLS handshake that fetches the --api
// server's certificate.
const isoHandshakeTimeout = 15 * time.Second

// checkServerURLCert refuses to build ISOs whose hosts could not talk to
// the server: iPXE checks that the server's certificate names the host of
// --server-url, and on a mismatch the host boots its disk, silently. The
// certificate is --server-cert, else the --api server's, else the one in
// the --from-db data directory; with none of them (--offline) it returns a
// note saying what was not checked, for the summary.
func checkServerURLCert(ctx context.Context, f isoFlags, ca *x509.Certificate) (note string, err error) {
	var (
		leaf *x509.Certificate
		from string
	)
	switch {
	case f.serverCert != "":
		leaf, err = readCertFile(f.serverCert)
		from = f.serverCert
	case f.api != "":
		leaf, err = fetchServerCert(ctx, f.api, ca)
		from = "the certificate of " + f.api
	case f.fromDB != "" && cliExists(pki.FilesIn(f.fromDB).Cert):
		from = pki.FilesIn(f.fromDB).Cert
		leaf, err = readCertFile(from)
	default:
		return fmt.Sprintf("not checked: whether the server's certificate names %q (hosts boot their disks when it does not); "+
			"check with --server-cert DATA_DIR/server.pem", term(serverURLHost(f.serverURL))), nil
	}
	if err != nil {
		return "", fmt.Errorf("iso build: server certificate: %w", err)
	}
	return "", certNamesHost(f.serverURL, leaf, from)
}

// certNamesHost returns nil when leaf is valid for the host of serverURL,
// else an error naming the certificate's names and the way out.
func certNamesHost(serverURL string, leaf *x509.Certificate, from string) error {
	h := serverURLHost(serverURL)
	if leaf.VerifyHostname(h) == nil {
		return nil
	}
	names := append([]string{}, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = []string{"no names"}
	}
	return fmt.Errorf("iso build: --server-url host %q is not in the server's certificate (%s names %s): "+
		"its hosts would refuse the server's TLS and boot their disks; restart bootpilot serve with "+
		"--external-url https://%s (the address hosts use) and build again", term(h), term(from),
		term(strings.Join(names, ", ")), term(serverURLHostPort(serverURL)))
}

// serverURLHost is the host of an https:// URL ("" when it has none).
func serverURLHost(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// serverURLHostPort is the host and port of s, with 8443 when it has none.
func serverURLHostPort(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "8443")
}

// readCertFile returns the first certificate of a PEM file.
func readCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// fetchServerCert returns the certificate the server at apiURL presents,
// verified against ca (the handshake sends nothing else).
func fetchServerCert(ctx context.Context, apiURL string, ca *x509.Certificate) (*x509.Certificate, error) {
	u, err := url.Parse(apiURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil {
		return nil, errors.New("--api must be an https:// URL with a host and no credentials")
	}
	apiURL = u.Redacted()
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	ctx, cancel := context.WithTimeout(ctx, isoHandshakeTimeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("cannot connect to %s (%w): is the server running at %s?", addr, err, apiURL)
	}
	if err != nil {
		return nil, fmt.Errorf("--api %s: %w", apiURL, err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// isoSummary is the line iso build ends with: how many ISOs, where, and
// who signed them.
func isoSummary(n int, out string, signer *imagebuilder.Signer) string {
	what := fmt.Sprintf("%d ISOs", n)
	if n == 1 {
		what = "1 ISO"
	}
	dir := filepath.Clean(out) + string(filepath.Separator)
	if signer == nil || signer.Cert == nil {
		return fmt.Sprintf("%s written to %s, unsigned: Secure Boot will refuse them", what, term(dir))
	}
	return fmt.Sprintf("%s written to %s, signed by %s", what, term(dir), term(signer.Cert.Subject.String()))
}
