package redfish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// retryTransport retries a request on 5xx answers (but 501), 429 and transport
// errors other than TLS verification failures, with exponential back-off,
// a bounded number of times. Each attempt has its own timeout.
type retryTransport struct {
	base     http.RoundTripper
	retries  int
	backoff  time.Duration
	maxWait  time.Duration
	timeout  time.Duration
	bmc      string
	log      *slog.Logger
	attempts func() // test hook, counts attempts; may be nil
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
		r := req.Clone(ctx)
		if attempt > 0 && req.Body != nil {
			if req.GetBody == nil {
				cancel()
				return nil, errors.New("redfish: cannot retry a request with a one-shot body")
			}
			body, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			r.Body = body
		}
		resp, err := t.base.RoundTrip(r)
		retry, why := t.retryable(req.Context(), resp, err)
		if !retry || attempt >= t.retries {
			if err != nil {
				cancel()
				return nil, err
			}
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		}
		wait := min(t.backoff<<attempt, t.maxWait)
		if resp != nil {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				wait = min(time.Duration(s)*time.Second, t.maxWait)
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		cancel()
		t.log.Warn("redfish: retrying", "bmc", t.bmc, "method", req.Method, "path", req.URL.Path,
			"attempt", attempt+1, "reason", why, "wait", wait)
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
	}
}

// retryable reports whether an attempt's outcome is worth another try.
func (t *retryTransport) retryable(ctx context.Context, resp *http.Response, err error) (bool, string) {
	if err != nil {
		if ctx.Err() != nil {
			return false, ""
		}
		var verr *tls.CertificateVerificationError
		var uerr x509.UnknownAuthorityError
		var herr x509.HostnameError
		var rerr tls.RecordHeaderError
		if errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &rerr) {
			return false, ""
		}
		return true, err.Error()
	}
	if (resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented) || resp.StatusCode == http.StatusTooManyRequests {
		return true, resp.Status
	}
	return false, ""
}

// cancelBody cancels an attempt's context once its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
