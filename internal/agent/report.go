package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// ErrUntrusted means the server's chain does not contain the pinned CA or
// its leaf does not chain to it.
var ErrUntrusted = errors.New("server certificate not issued by the pinned CA")

// PinnedTLSConfig returns a TLS client configuration for connections to
// host (a DNS name or IP address) that trusts only the CA certificate whose
// SHA-256 (of its DER) is fingerprint. The server must present that CA in
// its chain (as it does for iPXE); the leaf must chain to it and be valid
// for host.
func PinnedTLSConfig(fingerprint []byte, host string) *tls.Config {
	fp := bytes.Clone(fingerprint)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	// Normal verification is replaced, not skipped: VerifyConnection below
	// runs x509 verification with the pinned CA as the only root.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		// Not cs.ServerName: it is empty when host is an IP address.
		return verifyPinned(cs.PeerCertificates, fp, host)
	}
	return cfg
}

func verifyPinned(chain []*x509.Certificate, fp []byte, host string) error {
	if len(chain) == 0 {
		return fmt.Errorf("agent: tls: no certificate: %w", ErrUntrusted)
	}
	var root *x509.Certificate
	inter := x509.NewCertPool()
	for _, c := range chain {
		sum := sha256.Sum256(c.Raw)
		if bytes.Equal(sum[:], fp) {
			root = c
		} else if c != chain[0] {
			inter.AddCert(c)
		}
	}
	if root == nil {
		return fmt.Errorf("agent: tls: pinned CA not in the server's chain: %w", ErrUntrusted)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host}); err != nil {
		return fmt.Errorf("agent: tls: %w: %w", ErrUntrusted, err)
	}
	return nil
}

// NewHTTPClient returns an HTTP client that trusts only the pinned CA, with
// the server name always set to the URL's host so IP-address URLs are
// verified against IP SANs.
func NewHTTPClient(fingerprint []byte) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 15 * time.Second}, Config: PinnedTLSConfig(fingerprint, host)}
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr}
}

// Event is the JSON body POSTed to the callback URL.
type Event struct {
	Event  string `json:"event"`            // progress, installed, cleaned or failed
	Detail string `json:"detail,omitempty"` // human-readable; the reason for failed
}

// Reporter POSTs events to the callback URL, retrying network errors, 429
// and 5xx answers with exponential back-off.
type Reporter struct {
	URL      string
	Client   *http.Client
	Attempts int           // for results; default 8
	Backoff  time.Duration // first delay, doubled up to 30 s; default 1 s
	Log      *slog.Logger
}

// Progress reports a progress line; it tries at most twice and never fails
// the task.
func (r *Reporter) Progress(ctx context.Context, detail string) {
	r.log().Info("progress", "detail", detail)
	if err := r.post(ctx, Event{Event: "progress", Detail: detail}, 2); err != nil {
		r.log().Warn("progress report failed", "err", err)
	}
}

// Result reports the outcome (installed, cleaned or failed), retrying up to
// Attempts times.
func (r *Reporter) Result(ctx context.Context, event, detail string) error {
	n := r.Attempts
	if n <= 0 {
		n = 8
	}
	return r.post(ctx, Event{Event: event, Detail: detail}, n)
}

// permanentError is a callback answer that retrying cannot fix.
type permanentError struct{ status string }

func (e permanentError) Error() string { return "callback refused: " + e.status }

func (r *Reporter) post(ctx context.Context, ev Event, attempts int) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	delay := r.Backoff
	if delay <= 0 {
		delay = time.Second
	}
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("agent: report %s: %w (last: %v)", ev.Event, ctx.Err(), last)
			case <-time.After(delay):
			}
			delay = min(2*delay, 30*time.Second)
		}
		last = r.once(ctx, body)
		if last == nil {
			return nil
		}
		var perm permanentError
		if errors.As(last, &perm) {
			break
		}
		r.log().Warn("callback failed, retrying", "event", ev.Event, "attempt", i+1, "err", last)
	}
	return fmt.Errorf("agent: report %s: %w", ev.Event, last)
}

func (r *Reporter) once(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return permanentError{err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.Client.Do(req)
	if err != nil {
		err = stripURL(err) // the URL holds the callback token: never log it
		if errors.Is(err, ErrUntrusted) {
			return permanentError{err.Error()}
		}
		return err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return errors.New(resp.Status)
	default:
		return permanentError{resp.Status}
	}
}

func (r *Reporter) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// stripURL drops the URL from a *url.Error so tokens never reach logs.
func stripURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s: %w", uerr.Op, uerr.Err)
	}
	return err
}
