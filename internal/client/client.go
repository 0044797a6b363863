// Package client is a typed Go client for bootpilot's admin REST API
// (/api/v1/…). It speaks HTTPS only, trusts exactly the CA it is given (the
// server's private CA, or the system roots when none is given), sends the
// admin token as a bearer credential and never logs or prints it, and turns
// error answers into *Error values that match the sentinel errors of
// internal/host.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

// Default limits. Calls that return JSON are bounded by Client.Timeout;
// downloads only by the response-header timeout and the caller's context.
const (
	DefaultTimeout = 60 * time.Second // one JSON call, end to end
	maxJSONBody    = 256 << 20        // a host list of 100k hosts is ~60 MiB
	maxErrorBody   = 64 << 10
)

// Client calls one bootpilot server. It is safe for concurrent use.
type Client struct {
	base  *url.URL // "https://localhost:8443", no trailing slash
	token string   // admin bearer token; never logged
	hc    *http.Client

	// Timeout bounds each JSON call (not DownloadISO). Zero means none.
	Timeout time.Duration
}

// New returns a client for server, an https:// URL such as
// "https://localhost:8443" (a path prefix is kept). token is the admin API
// token. caPEM holds the PEM certificates to trust; when empty, the system
// roots are used. With caPEM set, only those certificates are trusted.
func New(server, token string, caPEM []byte) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(server))
	if err != nil {
		return nil, fmt.Errorf("client: server URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q must be an https:// URL with a host", server)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: server URL %q must not carry credentials, a query or a fragment", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if strings.ContainsAny(token, "\r\n") {
		return nil, errors.New("client: token contains a line break")
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(bytes.TrimSpace(caPEM)) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("client: CA certificate: no PEM certificate found")
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	hc := &http.Client{
		Transport: tr,
		// The API never redirects; following one could send the token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Client{base: u, token: token, hc: hc, Timeout: DefaultTimeout}, nil
}

// Server returns the server URL the client talks to.
func (c *Client) Server() string { return c.base.String() }

// Error is an error answer from the server: a 4xx or 5xx status with the
// body's {"error": …, "field": …}. It matches host.ErrNotFound (404),
// host.ErrConflict (409; also host.ErrInvalidTransition when the message says
// so), host.ErrUnauthorized (401) and host.ErrForbidden (403) with errors.Is,
// and *host.ValidationError (400) with errors.As.
type Error struct {
	Status  int    // 404
	Message string // "host node01: not found"
	Field   string // "ipv4", for validation errors

	// Flag, when set (by a CLI), is how the caller names Field, such as
	// "--ipv4"; Error shows it in place of the API's field name.
	Flag string

	// RetryAfter is the server's Retry-After on a 429 or 503 answer (a
	// throttled login): how long to wait before trying again; 0 when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
	}
	if e.Field != "" {
		name := e.Field
		if e.Flag != "" {
			name = e.Flag
		}
		msg = name + ": " + strings.TrimPrefix(msg, e.Field+": ")
	}
	return fmt.Sprintf("server: %s (HTTP %d)", msg, e.Status)
}

// Is reports whether e corresponds to the sentinel target.
func (e *Error) Is(target error) bool {
	switch e.Status {
	case http.StatusNotFound:
		return target == host.ErrNotFound
	case http.StatusConflict:
		return target == host.ErrConflict ||
			(target == host.ErrInvalidTransition && strings.Contains(e.Message, host.ErrInvalidTransition.Error()))
	case http.StatusUnauthorized:
		return target == host.ErrUnauthorized
	case http.StatusForbidden:
		return target == host.ErrForbidden
	}
	return false
}

// As fills a **host.ValidationError for a 400 answer.
func (e *Error) As(target any) bool {
	vp, ok := target.(**host.ValidationError)
	if !ok || e.Status != http.StatusBadRequest {
		return false
	}
	reason := strings.TrimPrefix(e.Message, e.Field+": ")
	if e.Field == "" {
		reason = e.Message
	}
	*vp = &host.ValidationError{Field: e.Field, Reason: reason}
	return true
}

// do sends one request. in, when not nil, is sent as JSON; out, when not nil,
// receives the JSON answer. Any 2xx status is success.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	resp, err := c.send(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("client: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send performs the request and returns the response when its status is
// 2xx; otherwise it consumes the body and returns an *Error.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	var body io.Reader
	raw, isRaw := in.(io.Reader)
	if isRaw {
		body = raw
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("client: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if isRaw {
		req.Header.Set("Content-Type", "application/octet-stream")
	} else if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "bootpilot-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp)
}

// transportError describes a request that got no answer in terms of the
// server, not of the API path; a refused connection asks whether the server
// runs at all. The token never appears: only the URL's host is quoted.
func (c *Client) transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("client: cannot connect to %s (%w): is the server running at %s?", c.base.Host, err, c.Server())
	}
	return fmt.Errorf("client: %s: %w", c.Server(), err)
}

// decodeError turns a non-2xx answer into an *Error.
func decodeError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 && n < 86400 {
		e.RetryAfter = time.Duration(n) * time.Second
	}
	var body struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		e.Message, e.Field = body.Error, body.Field
		return e
	}
	// Not our JSON (a proxy, a redirect): keep a short, printable excerpt.
	text := strings.TrimSpace(string(raw))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		text = "unexpected redirect to " + resp.Header.Get("Location")
	}
	e.Message = strings.TrimSpace(strings.ToLower(http.StatusText(resp.StatusCode)) + ": " + strings.ToValidUTF8(text, "?"))
	e.Message = strings.TrimSuffix(e.Message, ":")
	return e
}

func hostPath(name string, parts ...string) string {
	p := "/api/v1/hosts/" + url.PathEscape(name)
	for _, s := range parts {
		p += "/" + s
	}
	return p
}

func profilePath(name string) string { return "/api/v1/profiles/" + url.PathEscape(name) }

// newHostBody is what a create sends (provision.NewHost, the server's wire
// type): the writable fields of a host (the server refuses read-only ones
// such as attempt or version), its labels, plus the boot-token hash an
// offline ISO build chose.
func newHostBody(h host.Host, tokenHash string) provision.NewHost {
	n := provision.NewHost{Name: h.Name, State: h.State, HostUpdate: provision.HostUpdate{
		MACs: &h.MACs, IPv4: &h.IPv4, Gateway: &h.Gateway, DNS: &h.DNS, VLAN: &h.VLAN,
	}}
	u := &n.HostUpdate
	for _, f := range []struct {
		dst **string
		v   *string
	}{{&u.IPv6, &h.IPv6}, {&u.Gateway6, &h.Gateway6}, {&u.Hostname, &h.Hostname}, {&u.Domain, &h.Domain},
		{&u.Profile, &h.Profile}, {&u.TokenHash, &tokenHash}} {
		if *f.v != "" {
			*f.dst = f.v
		}
	}
	if h.CleanThenInstall {
		u.CleanThenInstall = &h.CleanThenInstall
	}
	if len(h.Labels) > 0 {
		u.Labels = &h.Labels
	}
	return n
}

// CreateHost registers h (POST /api/v1/hosts) and returns the stored host.
// Only the configuration fields of h are sent (name, network, hostname,
// domain, profile, labels, and state if set); the rest is the server's. An existing
// name or MAC gives an error matching host.ErrConflict.
func (c *Client) CreateHost(ctx context.Context, h host.Host) (host.Host, error) {
	var out host.Host
	err := c.do(ctx, http.MethodPost, "/api/v1/hosts", nil, newHostBody(h, ""), &out)
	return out, err
}

// ImportHost registers h with a preset boot-token hash (64 hex digits, the
// SHA-256 of the token baked into an offline-built ISO).
func (c *Client) ImportHost(ctx context.Context, h host.Host, tokenHash string) (host.Host, error) {
	var out host.Host
	err := c.do(ctx, http.MethodPost, "/api/v1/hosts", nil, newHostBody(h, tokenHash), &out)
	return out, err
}

// GetHost returns the named host.
func (c *Client) GetHost(ctx context.Context, name string) (host.Host, error) {
	var out host.Host
	err := c.do(ctx, http.MethodGet, hostPath(name), nil, nil, &out)
	return out, err
}

// HostFilter narrows ListHosts. Zero fields do not filter.
type HostFilter struct {
	State   host.State // "installing"
	Profile string     // "rocky9"
	Limit   int        // at most this many hosts; 0: the server's default
	After   string     // hosts whose name sorts after this one (paging)
}

// ListHosts returns the hosts matching f, as the server orders them.
func (c *Client) ListHosts(ctx context.Context, f HostFilter) ([]host.Host, error) {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", string(f.State))
	}
	if f.Profile != "" {
		q.Set("profile", f.Profile)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.After != "" {
		q.Set("after", f.After)
	}
	var out struct {
		Hosts []host.Host `json:"hosts"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/hosts", q, nil, &out)
	return out.Hosts, err
}

// PatchHost changes the fields present in patch (JSON names, such as
// "ipv4" or "token_hash") and returns the updated host.
func (c *Client) PatchHost(ctx context.Context, name string, patch map[string]any) (host.Host, error) {
	var out host.Host
	err := c.do(ctx, http.MethodPatch, hostPath(name), nil, patch, &out)
	return out, err
}

// DeleteHost removes the named host.
func (c *Client) DeleteHost(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, hostPath(name), nil, nil, nil)
}

// ReimageOptions are the optional parts of a reimage request: Profile
// (install this profile, and keep it) and Reason (for the audit event). It
// is the server's wire type, provision.ActionOptions.
type ReimageOptions = provision.ActionOptions

// CleanOptions are the optional parts of a clean request: Profile (to
// install afterwards), ThenInstall (reimage after a successful clean) and
// Reason. It is the server's wire type, provision.ActionOptions.
type CleanOptions = provision.ActionOptions

// Reimage flags the host for an install on its next boot. A host whose state
// does not allow it gives an error matching host.ErrConflict.
func (c *Client) Reimage(ctx context.Context, name string, o ReimageOptions) (host.Host, error) {
	var out host.Host
	err := c.do(ctx, http.MethodPost, hostPath(name, "reimage"), nil, o, &out)
	return out, err
}

// Clean flags the host for a disk wipe on its next boot.
func (c *Client) Clean(ctx context.Context, name string, o CleanOptions) (host.Host, error) {
	var out host.Host
	err := c.do(ctx, http.MethodPost, hostPath(name, "clean"), nil, o, &out)
	return out, err
}

// Action applies a lifecycle action without options (cancel, retry, hold,
// release, adopt) with an optional reason for the audit trail, and returns
// the host after it; host.ErrInvalidTransition (409) when the host's state
// does not allow it.
func (c *Client) Action(ctx context.Context, name string, e host.Event, reason string) (host.Host, error) {
	var body any
	if reason != "" {
		body = map[string]string{"reason": reason}
	}
	var out host.Host
	err := c.do(ctx, http.MethodPost, hostPath(name, string(e)), nil, body, &out)
	return out, err
}

// RotateBootToken makes a new boot token for the host and returns it; the
// server keeps only its hash, so this is the only time it is visible.
func (c *Client) RotateBootToken(ctx context.Context, name string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	if err := c.do(ctx, http.MethodPost, hostPath(name, "boot-token"), nil, nil, &out); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", fmt.Errorf("client: rotate boot token of %s: answer has no token", name)
	}
	return out.Token, nil
}

// Events returns the host's most recent audit events, newest first: at most
// limit of them, or the server's default number when limit is 0.
func (c *Client) Events(ctx context.Context, name string, limit int) ([]host.Record, error) {
	var out struct {
		Events []host.Record `json:"events"`
	}
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	err := c.do(ctx, http.MethodGet, hostPath(name, "events"), q, nil, &out)
	return out.Events, err
}

// CreateProfile stores p and returns it as stored.
func (c *Client) CreateProfile(ctx context.Context, p host.Profile) (host.Profile, error) {
	var out host.Profile
	err := c.do(ctx, http.MethodPost, "/api/v1/profiles", nil, p, &out)
	return out, err
}

// GetProfile returns the named profile.
func (c *Client) GetProfile(ctx context.Context, name string) (host.Profile, error) {
	var out host.Profile
	err := c.do(ctx, http.MethodGet, profilePath(name), nil, nil, &out)
	return out, err
}

// ListProfiles returns every profile.
func (c *Client) ListProfiles(ctx context.Context) ([]host.Profile, error) {
	var out struct {
		Profiles []host.Profile `json:"profiles"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/profiles", nil, nil, &out)
	return out.Profiles, err
}

// PatchProfile changes the fields present in patch and returns the profile.
func (c *Client) PatchProfile(ctx context.Context, name string, patch map[string]any) (host.Profile, error) {
	var out host.Profile
	err := c.do(ctx, http.MethodPatch, profilePath(name), nil, patch, &out)
	return out, err
}

// DeleteProfile removes the named profile.
func (c *Client) DeleteProfile(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, profilePath(name), nil, nil, nil)
}

// DownloadISO writes the host's boot ISO to w and returns the number of
// bytes written. Only ctx bounds the transfer.
func (c *Client) DownloadISO(ctx context.Context, name string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, hostPath(name, "iso"), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("client: download ISO of %s: %w", name, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("client: download ISO of %s: got %d of %d bytes", name, n, resp.ContentLength)
	}
	return n, nil
}

// VersionInfo is the server's build.
type VersionInfo struct {
	Version string `json:"version"` // "v0.1.0" or "dev"
	Commit  string `json:"commit"`  // VCS revision, may be empty
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var out VersionInfo
	err := c.do(ctx, http.MethodGet, "/api/v1/version", nil, nil, &out)
	return out, err
}

// Image is a blob in the server's image cache (the server's wire type).
type Image = provision.Image

// UploadImage streams r into the server's image cache. It is bounded by ctx
// only, not by Timeout: images can be large.
func (c *Client) UploadImage(ctx context.Context, r io.Reader) (Image, error) {
	var img Image
	resp, err := c.send(ctx, http.MethodPost, "/api/v1/images", nil, r)
	if err != nil {
		return img, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&img)
	return img, err
}

// FetchImage makes the server fetch ref (an https URL or an OCI reference)
// into its cache, verified against the hex sha256 want.
func (c *Client) FetchImage(ctx context.Context, ref, want string) (Image, error) {
	var img Image
	err := c.do(ctx, http.MethodPost, "/api/v1/images/fetch", nil, map[string]string{"ref": ref, "sha256": want}, &img)
	return img, err
}
