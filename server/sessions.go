package server

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

func (s *Server) sessionRoutes(api *gin.RouterGroup) {
	s.handle(api, "POST", "/logout", auth.OpLogout, s.logout)                        // end this session
	s.handle(api, "GET", "/whoami", auth.OpWhoami, s.whoami)                         // the caller and their grants
	s.handle(api, "POST", "/tokens", auth.OpTokenCreate, s.createToken)              // a personal token (admins: service tokens)
	s.handle(api, "GET", "/tokens", auth.OpTokenList, s.listTokens)                  // own tokens (admins: ?all=true)
	s.handle(api, "DELETE", "/tokens/:id", auth.OpTokenRevoke, s.revokeToken)        // revoke one (admins: anyone's)
	s.handle(api, "POST", "/users", auth.OpUserCreate, s.createUser)                 // a local user
	s.handle(api, "GET", "/users", auth.OpUserList, s.listUsers)                     // local and directory users
	s.handle(api, "GET", "/users/:source/:name", auth.OpUserGet, s.getUser)          // one user
	s.handle(api, "PATCH", "/users/:source/:name", auth.OpUserUpdate, s.patchUser)   // password, disabled, grants
	s.handle(api, "DELETE", "/users/:source/:name", auth.OpUserDelete, s.deleteUser) // delete, revoking their tokens
	s.handle(api, "GET", "/audit", auth.OpAuditRead, s.audit)                        // the global audit log, newest first; ?format=csv
}

// meta is the request's audit context for the operator service.
func meta(c *gin.Context) auth.Meta {
	return auth.Meta{ClientAddr: c.ClientIP(), RequestID: requestID(c)}
}

// identity is the authenticated caller.
func identity(c *gin.Context) auth.Identity { return caller(c).Identity }

// loginBody is POST /api/v1/login.
type loginBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// whoamiAnswer is the answer of login and whoami.
type whoamiAnswer struct {
	Token     string       `json:"token,omitempty"` // login only: the session token, shown once
	ExpiresAt *time.Time   `json:"expires_at,omitempty"`
	User      string       `json:"user"`
	Source    auth.Source  `json:"source"`
	Grants    []auth.Grant `json:"grants"`
	TokenName string       `json:"token_name,omitempty"` // whoami with an API token: its name
}

// login answers POST /api/v1/login: 200 with a session token (also set as
// an HttpOnly, Secure, SameSite=Strict cookie for the console); the same
// 401 for a wrong password, an unknown or a disabled user; 429 while
// throttled; 503 when the directory cannot be reached. A login posted by
// another site's page is 403 (login CSRF would put the victim's browser in
// the attacker's session); the CLI sends neither Sec-Fetch-Site nor Origin.
func (s *Server) login(c *gin.Context) error {
	if err := s.csrf.Check(c.Request); err != nil {
		return fmt.Errorf("%w: cross-origin login refused", host.ErrForbidden)
	}
	var b loginBody
	if err := decodeBody(c, &b); err != nil {
		return err
	}
	sess, err := s.opt.Auth.Login(c.Request.Context(), b.Username, b.Password, meta(c))
	if err != nil {
		var te *auth.ThrottledError
		if errors.As(err, &te) {
			c.Header("Retry-After", strconv.Itoa(int(te.Wait.Seconds())+1))
		}
		return err
	}
	exp := sess.ExpiresAt.UTC()
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: sess.Token, Path: "/", Expires: exp,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.JSON(http.StatusOK, whoamiAnswer{Token: sess.Token, ExpiresAt: &exp, User: sess.User.Name,
		Source: sess.User.Source, Grants: nonNil(sess.User.Grants)})
	return nil
}

func nonNil(g []auth.Grant) []auth.Grant {
	if g == nil {
		return []auth.Grant{}
	}
	return g
}

func (s *Server) logout(c *gin.Context) error {
	if err := s.opt.Auth.Logout(c.Request.Context(), c.GetString("bearer"), meta(c)); err != nil {
		return err
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.Status(http.StatusNoContent)
	return nil
}

func (s *Server) whoami(c *gin.Context) error {
	id := identity(c)
	a := whoamiAnswer{User: id.Name, Source: id.Source, Grants: nonNil(id.Grants), TokenName: id.Token}
	if !id.Expires.IsZero() {
		exp := id.Expires.UTC()
		a.ExpiresAt = &exp
	}
	c.JSON(http.StatusOK, a)
	return nil
}

// tokenBody is POST /api/v1/tokens.
type tokenBody struct {
	Name      string       `json:"name"`
	Grants    []auth.Grant `json:"grants,omitempty"`     // personal: at most the caller's; empty: the caller's
	ExpiresIn string       `json:"expires_in,omitempty"` // "720h"; empty: never
	Service   bool         `json:"service,omitempty"`    // admins: a service account's token
}

func (s *Server) createToken(c *gin.Context) error {
	var b tokenBody
	if err := decodeBody(c, &b); err != nil {
		return err
	}
	r := auth.TokenRequest{Name: b.Name, Grants: b.Grants, Service: b.Service}
	if b.ExpiresIn != "" {
		d, err := time.ParseDuration(b.ExpiresIn)
		if err != nil || d <= 0 {
			return host.Invalid("expires_in", "%q is not a positive duration like 720h", b.ExpiresIn)
		}
		r.ExpiresAt = s.now().Add(d).UTC()
	}
	plain, t, err := s.opt.Auth.CreateToken(c.Request.Context(), identity(c), r, meta(c))
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, gin.H{"token": plain, "info": t})
	return nil
}

func (s *Server) listTokens(c *gin.Context) error {
	ts, err := s.opt.Auth.ListTokens(c.Request.Context(), identity(c), c.Query("all") == "true")
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []auth.Token{}
	}
	c.JSON(http.StatusOK, gin.H{"tokens": ts})
	return nil
}

func (s *Server) revokeToken(c *gin.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return host.Invalid("id", "%q is not a token id", c.Param("id"))
	}
	if err := s.opt.Auth.RevokeToken(c.Request.Context(), identity(c), id, meta(c)); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (s *Server) createUser(c *gin.Context) error {
	var u auth.NewUser
	if err := decodeBody(c, &u); err != nil {
		return err
	}
	out, err := s.opt.Auth.CreateUser(c.Request.Context(), identity(c), u, meta(c))
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, out)
	return nil
}

func (s *Server) listUsers(c *gin.Context) error {
	us, err := s.opt.Auth.ListUsers(c.Request.Context(), identity(c))
	if err != nil {
		return err
	}
	if us == nil {
		us = []auth.User{}
	}
	c.JSON(http.StatusOK, gin.H{"users": us})
	return nil
}

func (s *Server) getUser(c *gin.Context) error {
	u, err := s.opt.Auth.GetUser(c.Request.Context(), identity(c), auth.Source(c.Param("source")), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, u)
	return nil
}

func (s *Server) patchUser(c *gin.Context) error {
	var up auth.UserUpdate
	if err := decodeBody(c, &up); err != nil {
		return err
	}
	u, err := s.opt.Auth.UpdateUser(c.Request.Context(), identity(c), auth.Source(c.Param("source")), c.Param("name"), up, meta(c))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, u)
	return nil
}

func (s *Server) deleteUser(c *gin.Context) error {
	err := s.opt.Auth.DeleteUser(c.Request.Context(), identity(c), auth.Source(c.Param("source")), c.Param("name"), meta(c))
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// audit answers GET /api/v1/audit?actor=&host=&action=&since=&until=&before=&limit=
// newest first, as JSON {"events":[…],"next":"<before cursor>"} or, with
// format=csv, as CSV with a header row.
func (s *Server) audit(c *gin.Context) error {
	f := auth.AuditFilter{Actor: c.Query("actor"), Host: c.Query("host"), Action: c.Query("action"), Limit: 100}
	for _, t := range []struct {
		field string
		dst   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := c.Query(t.field); v != "" {
			tm, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return host.Invalid(t.field, "%q is not an RFC 3339 time like 2026-12-01T00:00:00Z", v)
			}
			*t.dst = tm
		}
	}
	cursor := c.Query("after") // the name; "before" is accepted too
	if cursor == "" {
		cursor = c.Query("before")
	}
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n < 1 {
			return host.Invalid("after", "%q is not an event id (use the previous page's next)", cursor)
		}
		f.Before = n
	}
	csvOut := c.Query("format") == "csv"
	if csvOut {
		f.Limit = 100000
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100000 {
			return host.Invalid("limit", "must be a number from 1 to 100000")
		}
		f.Limit = n
	}
	if v := c.Query("format"); v != "" && v != "csv" && v != "json" {
		return host.Invalid("format", "%q is not json or csv", v)
	}
	evs, err := s.opt.Auth.Audit(c.Request.Context(), identity(c), f)
	if err != nil {
		return err
	}
	next := ""
	if len(evs) == f.Limit && len(evs) > 0 {
		next = strconv.FormatInt(evs[len(evs)-1].ID, 10)
	}
	if csvOut {
		c.Header("Content-Type", "text/csv; charset=utf-8")
		c.Header("Content-Disposition", `attachment; filename="bootpilot-audit.csv"`)
		if next != "" {
			c.Header("X-Next-Page", next)
		}
		c.Status(http.StatusOK)
		w := csv.NewWriter(c.Writer)
		w.Write([]string{"id", "time", "actor", "client_addr", "request_id", "host", "subject", "event", "from", "to", "attempt", "fields", "reason"})
		for _, e := range evs {
			w.Write([]string{strconv.FormatInt(e.ID, 10), e.Time.UTC().Format(time.RFC3339Nano), csvSafe(e.Actor), e.ClientAddr,
				csvSafe(e.RequestID), e.Host, csvSafe(e.Subject), e.Kind(), string(e.From), string(e.To), strconv.Itoa(e.Attempt),
				fmt.Sprint(e.Fields), csvSafe(e.Reason)})
		}
		w.Flush()
		return nil
	}
	if evs == nil {
		evs = []host.Record{}
	}
	c.JSON(http.StatusOK, gin.H{"events": evs, "next": next})
	return nil
}

// csvSafe defuses spreadsheet formulas: a cell starting with = + - @ (or a
// tab/CR) is prefixed with a quote, so an attacker-chosen reason, user
// name or X-Request-ID ("-2-3") cannot run when an auditor opens the export.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r') {
		return "'" + s
	}
	return s
}
