package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

// Session is the answer of Login and Whoami: who the caller is, with what
// grants, until when. Token is set by Login only (the session's secret,
// shown once); TokenName by Whoami called with an API token.
type Session struct {
	Token     string       `json:"token,omitempty"`
	ExpiresAt time.Time    `json:"expires_at,omitzero"` // zero: never (a token without expiry)
	User      string       `json:"user"`                // "alice"
	Source    auth.Source  `json:"source"`              // "local", "ldap", "token"
	Grants    []auth.Grant `json:"grants"`
	TokenName string       `json:"token_name,omitempty"` // "ci-builder"
}

// Login starts a session (POST /api/v1/login) for username and password
// and returns it with its token. The client's own token is not needed. A
// wrong password, an unknown or a disabled user all give the same 401
// (host.ErrUnauthorized); a throttled login a 429 with Error.RetryAfter; an
// unreachable directory a 503.
func (c *Client) Login(ctx context.Context, username, password string) (Session, error) {
	var out Session
	body := struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}{username, password}
	err := c.do(ctx, http.MethodPost, "/api/v1/login", nil, body, &out)
	if err == nil && out.Token == "" {
		err = errors.New("client: login: answer has no session token")
	}
	return out, err
}

// Logout ends the session the client's token belongs to. An API token
// (not a session) gives a 400.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v1/logout", nil, nil, nil)
}

// Whoami returns the caller the client's token stands for.
func (c *Client) Whoami(ctx context.Context) (Session, error) {
	var out Session
	err := c.do(ctx, http.MethodGet, "/api/v1/whoami", nil, nil, &out)
	return out, err
}

// TokenRequest is an API token to make.
type TokenRequest struct {
	Name      string        // "ci-builder"; unique per owner
	Grants    []auth.Grant  // at most the caller's; empty: the caller's
	ExpiresIn time.Duration // 0: never expires
	Service   bool          // admins: a service account's token, with no owner
}

// CreateToken makes an API token and returns its secret (shown only this
// once) and its description.
func (c *Client) CreateToken(ctx context.Context, r TokenRequest) (string, auth.Token, error) {
	body := struct {
		Name      string       `json:"name"`
		Grants    []auth.Grant `json:"grants,omitempty"`
		ExpiresIn string       `json:"expires_in,omitempty"`
		Service   bool         `json:"service,omitempty"`
	}{Name: r.Name, Grants: r.Grants, Service: r.Service}
	if r.ExpiresIn != 0 {
		body.ExpiresIn = r.ExpiresIn.String()
	}
	var out struct {
		Token string     `json:"token"`
		Info  auth.Token `json:"info"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, body, &out); err != nil {
		return "", auth.Token{}, err
	}
	if out.Token == "" {
		return "", auth.Token{}, fmt.Errorf("client: create token %s: answer has no token", r.Name)
	}
	return out.Token, out.Info, nil
}

// ListTokens returns the caller's tokens, or with all (admins) everyone's.
func (c *Client) ListTokens(ctx context.Context, all bool) ([]auth.Token, error) {
	var q url.Values
	if all {
		q = url.Values{"all": {"true"}}
	}
	var out struct {
		Tokens []auth.Token `json:"tokens"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/tokens", q, nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes token id (the caller's own; admins: anyone's).
func (c *Client) RevokeToken(ctx context.Context, id int64) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+strconv.FormatInt(id, 10), nil, nil, nil)
}

func userPath(source auth.Source, name string) string {
	return "/api/v1/users/" + url.PathEscape(string(source)) + "/" + url.PathEscape(name)
}

// CreateUser makes a local user (admins).
func (c *Client) CreateUser(ctx context.Context, u auth.NewUser) (auth.User, error) {
	var out auth.User
	err := c.do(ctx, http.MethodPost, "/api/v1/users", nil, u, &out)
	return out, err
}

// ListUsers returns the local and directory users.
func (c *Client) ListUsers(ctx context.Context) ([]auth.User, error) {
	var out struct {
		Users []auth.User `json:"users"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/users", nil, nil, &out)
	return out.Users, err
}

// GetUser returns one user: source "local" or "ldap".
func (c *Client) GetUser(ctx context.Context, source auth.Source, name string) (auth.User, error) {
	var out auth.User
	err := c.do(ctx, http.MethodGet, userPath(source, name), nil, nil, &out)
	return out, err
}

// UpdateUser changes the fields of up that are not nil (password, disabled,
// grants) and returns the user after it.
func (c *Client) UpdateUser(ctx context.Context, source auth.Source, name string, up auth.UserUpdate) (auth.User, error) {
	var out auth.User
	err := c.do(ctx, http.MethodPatch, userPath(source, name), nil, up, &out)
	return out, err
}

// DeleteUser deletes a user and revokes their tokens.
func (c *Client) DeleteUser(ctx context.Context, source auth.Source, name string) error {
	return c.do(ctx, http.MethodDelete, userPath(source, name), nil, nil, nil)
}

// AuditPage is one page of the global audit log, newest first. Next, when
// not 0, is the cursor of the following page: pass it as
// auth.AuditFilter.Before.
type AuditPage struct {
	Events []host.Record
	Next   int64
}

// auditQuery is f as the query of GET /api/v1/audit; Before is sent as the
// cursor "after" (the page after this one, going back in time).
func auditQuery(f auth.AuditFilter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"actor": f.Actor, "host": f.Host, "action": f.Action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339))
	}
	if f.Before > 0 {
		q.Set("after", strconv.FormatInt(f.Before, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// parseCursor reads a page cursor ("" is none).
func parseCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("client: audit: the server's next-page cursor %q is not an event id", s)
	}
	return n, nil
}

// Audit returns one page of the global audit log matching f (auditors and
// admins); f.Limit 0 is the server's default of 100.
func (c *Client) Audit(ctx context.Context, f auth.AuditFilter) (AuditPage, error) {
	var out struct {
		Events []host.Record `json:"events"`
		Next   string        `json:"next"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/audit", auditQuery(f), nil, &out); err != nil {
		return AuditPage{}, err
	}
	next, err := parseCursor(out.Next)
	return AuditPage{Events: out.Events, Next: next}, err
}

// AuditCSV streams the server's CSV export of the audit log matching f
// (with a header row) to w and returns the cursor of the next page (0: no
// more; f.Limit 0 is the server's default of 100000 rows). Only ctx bounds
// the transfer. The answer is checked to be CSV before anything is written.
func (c *Client) AuditCSV(ctx context.Context, f auth.AuditFilter, w io.Writer) (int64, error) {
	q := auditQuery(f)
	q.Set("format", "csv")
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/audit", q, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" && !isCSV(ct) {
		return 0, fmt.Errorf("client: audit export: answer is %q, not CSV", ct)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return 0, fmt.Errorf("client: audit export: %w", err)
	}
	return parseCursor(resp.Header.Get("X-Next-Page"))
}

func isCSV(contentType string) bool { return strings.HasPrefix(contentType, "text/csv") }
