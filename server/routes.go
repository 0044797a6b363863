package server

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/token"
	"github.com/bootpilot/bootpilot/internal/version"
)

func init() { gin.SetMode(gin.ReleaseMode) }

func (s *Server) routes() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(s.requestID, s.observe, s.recover, secureHeaders, s.limitRequest(s.limits()))

	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") }) // liveness
	e.GET("/readyz", s.readyz)                                                  // database reachable
	e.GET("/metrics", gin.WrapH(s.metrics.handler()))                           // Prometheus

	boot := e.Group("/boot/v1")
	boot.GET("/script", s.bootScript)                         // iPXE: per-host stage-1 script
	boot.POST("/callback/:name/:token", s.callback)           // installer/agent: report outcome
	boot.GET("/config/:name/:token/:file", s.installerConfig) // installer: kickstart, preseed, user-data

	api := e.Group("/api/v1", s.auth)
	api.GET("/version", func(c *gin.Context) { c.JSON(http.StatusOK, version.Get()) }) // build version
	s.hostRoutes(api)
	s.profileRoutes(api)
	s.imageRoutes(e, api)
	s.bmcRoutes(e, api)
	return e
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
func (s *Server) readyz(c *gin.Context) {
	if err := s.store.CheckWrite(c.Request.Context()); err != nil {
		s.log.Warn("readyz: database does not accept writes", "err", err)
		c.String(http.StatusServiceUnavailable, "database does not accept writes\n")
		return
	}
	if err := checkDirWritable(s.opt.DataDir); err != nil {
		s.log.Warn("readyz: data directory not writable", "err", err)
		c.String(http.StatusServiceUnavailable, "data directory not writable\n")
		return
	}
	c.String(http.StatusOK, "ok\n")
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

// auth checks the admin bearer token against the stored hashes.
func (s *Server) auth(c *gin.Context) {
	h := c.GetHeader("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		c.Header("WWW-Authenticate", `Bearer realm="bootpilot"`)
		s.fail(c, host.ErrUnauthorized)
		return
	}
	t, err := s.store.APITokenByHash(c.Request.Context(), token.Hash(tok))
	if err != nil {
		if status(err) == http.StatusNotFound {
			err = host.ErrUnauthorized
		}
		s.fail(c, err)
		return
	}
	c.Set("actor", "token:"+t.Name)
	c.Next()
}

func actor(c *gin.Context) string { return c.GetString("actor") }
