package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/version"
)

func init() { gin.SetMode(gin.ReleaseMode) }

func (s *Server) routes() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.SetTrustedProxies(nil) // the client address is the peer's: X-Forwarded-For is not believed
	e.Use(s.requestID, s.observe, s.recover, secureHeaders, s.limitRequest(s.limits()))

	s.handle(e, "GET", "/healthz", auth.OpPublic, func(c *gin.Context) error { c.String(http.StatusOK, "ok\n"); return nil }) // liveness
	s.handle(e, "GET", "/readyz", auth.OpPublic, s.readyz)                                                                    // database reachable
	s.handle(e, "GET", "/metrics", auth.OpPublic, wrap(s.metrics.handler()))                                                  // Prometheus

	boot := e.Group("/boot/v1")
	s.handle(boot, "GET", "/script", auth.OpPublic, s.bootScript)                         // iPXE: per-host stage-1 script
	s.handle(boot, "POST", "/callback/:name/:token", auth.OpPublic, s.callback)           // installer/agent: report outcome
	s.handle(boot, "GET", "/config/:name/:token/:file", auth.OpPublic, s.installerConfig) // installer: kickstart, preseed, user-data

	s.handle(e, "POST", "/api/v1/login", auth.OpLogin, s.login) // username + password → session token (and cookie)
	api := e.Group("/api/v1", s.authenticate)
	s.handle(api, "GET", "/version", auth.OpVersion, func(c *gin.Context) error { c.JSON(http.StatusOK, version.Get()); return nil }) // build version
	s.sessionRoutes(api)
	s.hostRoutes(api)
	s.profileRoutes(api)
	s.imageRoutes(e, api)
	s.bmcRoutes(e, api)
	s.console.Register(e, func(g gin.IRoutes, method, path string, op auth.Op, h func(*gin.Context) error) {
		s.handle(g, method, path, op, h)
	})
	s.handle(e, "GET", "/", auth.OpPublic, func(c *gin.Context) error { c.Redirect(http.StatusSeeOther, "/hosts"); return nil }) // the console
	return e
}

// handler is a route's handler: it renders its answer, or returns the
// error that s.fail renders.
type handler func(c *gin.Context) error

// Route is one row of the route table: every route names the op (and so
// the permission and audit action) of the one core call it makes.
type Route struct {
	Method, Path string
	Op           auth.Op
}

// Routes returns the route table (tests walk it).
func (s *Server) Routes() []Route { return slices.Clone(s.table) }

// handle registers a route with its op. API routes check the op's
// permission before the handler runs when no host is involved (the core
// checks again, per host, with the host's labels).
func (s *Server) handle(g gin.IRoutes, method, path string, op auth.Op, h handler) {
	auth.RuleFor(op) // panics on an op without a policy: caught by every test
	full := path
	if rg, ok := g.(*gin.RouterGroup); ok {
		full = strings.TrimSuffix(rg.BasePath(), "/") + path
	}
	s.table = append(s.table, Route{Method: method, Path: full, Op: op})
	rule := auth.RuleFor(op)
	g.Handle(method, path, func(c *gin.Context) {
		c.Set("op", op)
		if _, authed := c.Get("identity"); authed && rule.Scope != auth.ScopePublic {
			// Before the body is read: a caller without the permission on
			// any host learns nothing from a 400 about the body.
			if err := identity(c).Authorize(op, nil); err != nil {
				s.fail(c, err)
				return
			}
		}
		if err := h(c); err != nil {
			s.fail(c, err)
		}
	})
}

// wrap adapts an http.Handler.
func wrap(h http.Handler) handler {
	return func(c *gin.Context) error { h.ServeHTTP(c.Writer, c.Request); return nil }
}

// requestID tags each request with an X-Request-ID (the caller's if sane).
func (s *Server) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-ID")
	if len(id) == 0 || len(id) > 64 || !reqIDRE.MatchString(id) {
		b := make([]byte, 8)
		rand.Read(b)
		id = hex.EncodeToString(b)
	}
	c.Set("request_id", id)
	c.Header("X-Request-ID", id)
	c.Next()
}

var reqIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func requestID(c *gin.Context) string { return c.GetString("request_id") }

// observe records request metrics; URLs are never logged (they may carry tokens).
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.metrics.observe(route, c.Writer.Status(), time.Since(start))
}

// recover turns a panic into a 500: on the boot side the ISO maps any 5xx to
// "boot the local disk", so a panic can never yield an install.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic", "route", c.FullPath(), "request_id", requestID(c), "panic", r)
			c.AbortWithStatus(http.StatusInternalServerError)
		}
	}()
	c.Next()
}

// readyz answers 200 only when this replica can do its job: the database
// accepts writes (not just pings) and the data directory (image cache,
// published media) can be written.
func (s *Server) readyz(c *gin.Context) error {
	if err := s.store.CheckWrite(c.Request.Context()); err != nil {
		s.log.Warn("readyz: database does not accept writes", "err", err)
		c.String(http.StatusServiceUnavailable, "database does not accept writes\n")
		return nil
	}
	if err := checkDirWritable(s.opt.DataDir); err != nil {
		s.log.Warn("readyz: data directory not writable", "err", err)
		c.String(http.StatusServiceUnavailable, "data directory not writable\n")
		return nil
	}
	c.String(http.StatusOK, "ok\n")
	return nil
}

// checkDirWritable writes, syncs and removes a small file in dir ("" skips
// the check: a server without a data directory).
func checkDirWritable(dir string) error {
	if dir == "" {
		return nil
	}
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write([]byte("ok"))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sessionCookie carries the session token for the console.
const sessionCookie = "bootpilot_session"

// authenticate resolves the caller from "Authorization: Bearer TOKEN" (or,
// for the console, the session cookie; then cross-origin writes are
// refused) and stores it for caller().
func (s *Server) authenticate(c *gin.Context) {
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok {
		if ck, err := c.Cookie(sessionCookie); err == nil && ck != "" {
			if err := s.csrf.Check(c.Request); err != nil {
				s.fail(c, fmt.Errorf("%w: cross-origin request refused", host.ErrForbidden))
				return
			}
			tok, ok = ck, true
		}
	}
	if !ok || tok == "" {
		c.Header("WWW-Authenticate", `Bearer realm="bootpilot"`)
		s.fail(c, host.ErrUnauthorized)
		return
	}
	id, err := s.opt.Auth.Authenticate(c.Request.Context(), tok)
	if err != nil {
		if errors.Is(err, host.ErrUnauthorized) {
			c.Header("WWW-Authenticate", `Bearer realm="bootpilot", error="invalid_token"`)
		}
		s.fail(c, err)
		return
	}
	c.Set("identity", id)
	c.Set("bearer", tok)
	c.Next()
}

// caller is who makes this request, for the core.
func caller(c *gin.Context) provision.Caller {
	id, _ := c.Get("identity")
	ident, _ := id.(auth.Identity)
	return provision.Caller{Identity: ident, RequestID: requestID(c), ClientAddr: c.ClientIP()}
}
