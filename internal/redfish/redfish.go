// Package redfish drives a host's BMC over DMTF Redfish: virtual media
// (insert the host's ISO, verify, eject), the UEFI boot override, power
// (reset, state), Secure Boot state and db certificate enrolment through
// SecureBootDatabases. It is built on
// github.com/stmcginnis/gofish and exports none of its types.
//
// It copes with the usual vendor differences: virtual media listed under
// the system or under its manager, the CD/DVD slot picked by MediaTypes, the
// InsertMedia action or a PATCH of Image where the action is missing,
// TransferProtocolType and WriteProtected sent or left out as the BMC wants,
// asynchronous operations answered with 202 and a task monitor, and
// transient 5xx and 429 answers and timeouts, retried with back-off a bounded
// number of times. Errors are *Error values naming the BMC (never its
// credentials), the step and what the BMC answered.
package redfish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Sentinel errors, wrapped by *Error.
var (
	// ErrAuth means the BMC refused the credentials (401 or 403).
	ErrAuth = errors.New("bmc refused the credentials")
	// ErrUnsupported means the BMC lacks what the operation needs (no
	// system, no CD/DVD virtual media slot, no Secure Boot resource).
	ErrUnsupported = errors.New("not supported by the bmc")
	// ErrVerify means the BMC accepted a change but reading it back shows
	// something else.
	ErrVerify = errors.New("bmc state does not match the request")
	// ErrTask means an asynchronous BMC task failed or did not finish.
	ErrTask = errors.New("bmc task failed")
	// ErrInvalid means a bad argument or endpoint.
	ErrInvalid = errors.New("invalid argument")
)

// Error is a failed step against one BMC.
type Error struct {
	BMC     string // "https://10.0.0.10:443", never with credentials
	Step    string // "insert media"
	Status  int    // HTTP status the BMC answered; 0 for transport errors
	Message string // what the BMC answered: Redfish message ids and text
	Err     error  // a sentinel of this package or the underlying error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redfish: bmc %s: %s", e.BMC, e.Step)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Err != nil && (e.Status == 0 || !isSentinel(e.Err)) {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return scrub(b.String())
}

// Unwrap returns the sentinel or underlying error.
func (e *Error) Unwrap() error { return e.Err }

func isSentinel(err error) bool {
	return slices.Contains([]error{ErrAuth, ErrUnsupported, ErrVerify, ErrTask, ErrInvalid}, err)
}

// Endpoint says how to reach and authenticate to one BMC.
type Endpoint struct {
	URL      string // "https://10.0.0.10"; a /redfish/v1 suffix is ignored
	Username string
	Password string
	CAPEM    []byte // trusted CA certificates (PEM) for this BMC; empty: system roots
	Insecure bool   // skip TLS verification (logged as a warning; audit it)
	Session  bool   // use a Redfish session (X-Auth-Token) instead of basic auth
	// InsecurePlaintext allows an http:// URL, over which the credentials
	// (Basic, or the session login and its token) travel in clear. Without
	// it Dial refuses http:// before sending anything.
	InsecurePlaintext bool

	// Optional tuning; zero values use the defaults in brackets.
	Timeout      time.Duration // per HTTP attempt [30s]
	Retries      int           // extra attempts on 5xx and timeouts [4]; <0 disables
	RetryBackoff time.Duration // first back-off, doubled per attempt [500ms]
	MaxBackoff   time.Duration // back-off cap [8s]
	TaskTimeout  time.Duration // how long to follow a task monitor [10m]
	TaskPoll     time.Duration // task monitor poll interval without Retry-After [1s]
	Logger       *slog.Logger  // [slog.Default()]
}

// Client is a connection to one BMC. Its methods are safe for sequential
// use; callers serialise operations per BMC.
type Client struct {
	api   *gofish.APIClient // the session client, or the basic-auth one
	basic *gofish.APIClient // set in session mode, to log in again
	bmc   string
	ep    Endpoint
	log   *slog.Logger
	sys   string // @odata.id of the computer system
	slot  string // @odata.id of the chosen CD/DVD slot; found lazily
}

// MediaStatus is the state of the CD/DVD virtual media slot.
type MediaStatus struct {
	Slot             string   // "/redfish/v1/Managers/1/VirtualMedia/CD1"
	MediaTypes       []string // ["CD", "DVD"]
	Image            string   // the inserted image URL, "" when empty
	Inserted         bool
	WriteProtected   bool
	TransferProtocol string // "HTTP", "HTTPS" or ""
	ConnectedVia     string // "URI", "NotConnected", …
	InsertAction     bool   // the slot has the InsertMedia action (else PATCH)
}

// BootOverride is the system's boot source override.
type BootOverride struct {
	Target  string // "Cd", "None", "Hdd", …
	Enabled string // "Once", "Continuous", "Disabled"
	Mode    string // "UEFI", "Legacy" or "" when not reported
}

// bmcName returns scheme://host[:port] of u, without credentials or path.
func bmcName(u *url.URL) string {
	return u.Scheme + "://" + u.Host
}

// redact returns u without its query (media URLs carry signatures).
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	u.RawQuery, u.User, u.Fragment = "", nil, ""
	return u.String()
}

// Dial connects to the BMC, authenticates (basic auth, or a session when
// e.Session is set and the BMC has a SessionService) and finds the computer
// system. It fails with an *Error wrapping ErrAuth when the BMC refuses the
// credentials.
func Dial(ctx context.Context, e Endpoint) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(e.URL))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, &Error{BMC: "(invalid url)", Step: "dial", Err: fmt.Errorf("%w: bmc url must be http(s)://host[:port]", ErrInvalid)}
	}
	bmc := bmcName(u)
	if u.User != nil {
		return nil, &Error{BMC: bmc, Step: "dial", Err: fmt.Errorf("%w: credentials belong in Username/Password, not the url", ErrInvalid)}
	}
	// Nothing, not even the service root, goes to a plaintext BMC unless
	// the settings allow it: every later request carries the credentials.
	if err := host.CheckBMCURL("url", bmcName(u), e.InsecurePlaintext); err != nil {
		return nil, &Error{BMC: bmc, Step: "dial", Err: fmt.Errorf("%w: %w", ErrInvalid, err)}
	}
	if e.Insecure && len(e.CAPEM) > 0 {
		return nil, &Error{BMC: bmc, Step: "dial", Err: fmt.Errorf("%w: a CA bundle and Insecure exclude each other", ErrInvalid)}
	}
	defaults(&e)
	c := &Client{bmc: bmc, ep: e, log: e.Logger}
	if u.Scheme == "http" {
		c.log.Warn("redfish: plaintext BMC, credentials travel in clear (insecure_plaintext)", "bmc", bmc)
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case e.Insecure:
		tlsConf.InsecureSkipVerify = true
		c.log.Warn("redfish: TLS verification disabled for this bmc", "bmc", bmc)
	case len(e.CAPEM) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(e.CAPEM) {
			return nil, &Error{BMC: bmc, Step: "dial", Err: fmt.Errorf("%w: no certificate in the CA bundle", ErrInvalid)}
		}
		tlsConf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: min(e.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	base := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: min(e.Timeout, 10*time.Second),
		MaxIdleConns:        4,
		IdleConnTimeout:     90 * time.Second,
	}
	rt := &retryTransport{base: base, retries: e.Retries, backoff: e.RetryBackoff, maxWait: e.MaxBackoff,
		timeout: e.Timeout, bmc: bmc, log: c.log}
	hc := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	c.api, err = gofish.ConnectContext(ctx, gofish.ClientConfig{
		Endpoint:          bmc,
		Username:          e.Username,
		Password:          e.Password,
		BasicAuth:         true,
		HTTPClient:        hc,
		NoModifyTransport: true,
		ReuseConnections:  true,
	})
	if err != nil {
		return nil, c.fail("read service root", err)
	}
	if e.Session {
		root, err := c.getJSON(ctx, "read service root", "/redfish/v1/")
		if err != nil {
			return nil, err
		}
		var r struct {
			Links struct {
				Sessions struct {
					ID string `json:"@odata.id"`
				}
			}
		}
		json.Unmarshal(root, &r)
		if r.Links.Sessions.ID == "" {
			c.log.Warn("redfish: bmc has no SessionService; using basic auth", "bmc", bmc)
		} else {
			s, err := c.api.WithContext(ctx).CloneWithSession()
			if err != nil {
				return nil, c.fail("create session", err)
			}
			c.basic, c.api = c.api, s
		}
	}
	if err := c.findSystem(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func defaults(e *Endpoint) {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&e.Timeout, 30*time.Second)
	set(&e.RetryBackoff, 500*time.Millisecond)
	set(&e.MaxBackoff, 8*time.Second)
	set(&e.TaskTimeout, 10*time.Minute)
	set(&e.TaskPoll, time.Second)
	switch {
	case e.Retries == 0:
		e.Retries = 4
	case e.Retries < 0:
		e.Retries = 0
	}
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
}

// BMC returns the BMC's name as used in errors and logs:
// scheme://host[:port].
func (c *Client) BMC() string { return c.bmc }

// Close ends the session, if any, and releases connections.
func (c *Client) Close() error {
	if c.api != nil {
		if _, err := c.api.GetSession(); err == nil {
			c.api.Logout()
		} else {
			c.api.HTTPClient.CloseIdleConnections()
		}
	}
	return nil
}

// fail wraps err from step into an *Error.
func (c *Client) fail(step string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := &Error{BMC: c.bmc, Step: step, Err: err}
	var re *schemas.Error
	if errors.As(err, &re) {
		e.Status = re.HTTPReturnedStatusCode
		e.Message = scrub(describe(re))
		switch e.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			e.Err = ErrAuth
		default:
			e.Err = errors.New(strings.ToLower(http.StatusText(e.Status)))
		}
	}
	return e
}

// describe renders a Redfish error answer: message ids and messages.
func describe(re *schemas.Error) string {
	var parts []string
	for _, x := range re.ExtendedInfos {
		s := x.MessageID
		if x.Message != "" {
			s += " (" + x.Message + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		m := re.Message
		if re.Code != "" {
			m = re.Code + ": " + m
		}
		if len(m) > 300 {
			m = m[:300] + "…"
		}
		return strings.TrimSpace(m)
	}
	return strings.Join(parts, "; ")
}

// call runs fn with the client bound to ctx. In session mode, when the BMC
// answers 401 (the session expired or the BMC restarted), it logs in again
// once and repeats fn.
func (c *Client) call(ctx context.Context, fn func(api *gofish.APIClient) error) error {
	err := fn(c.api.WithContext(ctx))
	var re *schemas.Error
	if c.basic == nil || !errors.As(err, &re) || re.HTTPReturnedStatusCode != http.StatusUnauthorized {
		return err
	}
	c.log.Info("redfish: session rejected; logging in again", "bmc", c.bmc)
	s, lerr := c.basic.WithContext(ctx).CloneWithSession()
	if lerr != nil {
		return lerr
	}
	c.api = s
	return fn(c.api.WithContext(ctx))
}

// getJSON GETs path and returns its body.
func (c *Client) getJSON(ctx context.Context, step, path string) ([]byte, error) {
	var b []byte
	err := c.call(ctx, func(api *gofish.APIClient) error {
		resp, err := api.Get(path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err = io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		return err
	})
	if err != nil {
		return nil, c.fail(step, err)
	}
	return b, nil
}

type odataID struct {
	ID string `json:"@odata.id"`
}

// members lists a collection's member ids.
func (c *Client) members(ctx context.Context, step, path string) ([]string, error) {
	b, err := c.getJSON(ctx, step, path)
	if err != nil {
		return nil, err
	}
	var col struct{ Members []odataID }
	if err := json.Unmarshal(b, &col); err != nil {
		return nil, c.fail(step, fmt.Errorf("decode %s: %w", path, err))
	}
	var ids []string
	for _, m := range col.Members {
		if m.ID != "" {
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}

// findSystem picks the first computer system.
func (c *Client) findSystem(ctx context.Context) error {
	ids, err := c.members(ctx, "find system", "/redfish/v1/Systems")
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return &Error{BMC: c.bmc, Step: "find system", Err: fmt.Errorf("%w: no computer system", ErrUnsupported)}
	}
	c.sys = ids[0]
	return nil
}

// system reads the computer system through gofish.
func (c *Client) system(ctx context.Context, step string) (*schemas.ComputerSystem, error) {
	var s *schemas.ComputerSystem
	err := c.call(ctx, func(api *gofish.APIClient) (err error) {
		s, err = schemas.GetObject[schemas.ComputerSystem](api, c.sys)
		return err
	})
	if err != nil {
		return nil, c.fail(step, err)
	}
	return s, nil
}

// PowerState returns the system's power state: "On", "Off", "PoweringOn"
// or "PoweringOff".
func (c *Client) PowerState(ctx context.Context) (string, error) {
	s, err := c.system(ctx, "read power state")
	if err != nil {
		return "", err
	}
	return string(s.PowerState), nil
}

// SecureBoot reports whether UEFI Secure Boot is enabled. It returns an
// *Error wrapping ErrUnsupported when the system has no SecureBoot resource.
func (c *Client) SecureBoot(ctx context.Context) (bool, error) {
	_, sb, err := c.readSecureBoot(ctx, "read secure boot")
	return sb.SecureBootEnable, err
}

// Boot returns the system's boot source override.
func (c *Client) Boot(ctx context.Context) (BootOverride, error) {
	s, err := c.system(ctx, "read boot override")
	if err != nil {
		return BootOverride{}, err
	}
	return BootOverride{
		Target:  string(s.Boot.BootSourceOverrideTarget),
		Enabled: string(s.Boot.BootSourceOverrideEnabled),
		Mode:    string(s.Boot.BootSourceOverrideMode),
	}, nil
}
