package server

import (
	"github.com/bootpilot/bootpilot/server/console"

	"crypto/tls"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// limit is what one request on a route may cost: the size of its body, the
// time to read that body and the time to write the answer. Zero means no
// bound beyond the connection's (the server's idle and header timeouts and
// the connection cap still apply).
type limit struct {
	Body  int64         // bytes
	Read  time.Duration // from the end of the headers to the end of the body
	Write time.Duration // from the end of the headers to the end of the answer
}

// Default request limits: an API body is JSON of at most 1 MiB that arrives
// within the body timeout; an answer is written within two minutes.
const (
	defaultBody         = 1 << 20
	defaultBodyTimeout  = 30 * time.Second
	defaultWriteTimeout = 2 * time.Minute
	defaultMaxConns     = 4096
)

// limits returns the one table of per-route limits, keyed by method and gin
// route; a route not listed gets the default. Long answers (images, media,
// ISOs) may stream for as long as the client reads; slow request bodies are
// never allowed on a route a stranger can reach.
func (s *Server) limits() map[string]limit {
	body := s.opt.BodyTimeout
	def := limit{Body: defaultBody, Read: body, Write: defaultWriteTimeout}
	return map[string]limit{
		"": def,
		// Boot side, unauthenticated or token-only: small bodies, quickly.
		"POST /boot/v1/callback/:name/:token": {Body: 64 << 10, Read: body, Write: defaultWriteTimeout},
		// Multi-GiB blobs streamed to the agent and to BMCs, with Range.
		"GET /images/v1/*path":        {Read: body},
		"GET /media/v1/:file":         {Read: body},
		"GET /api/v1/hosts/:name/iso": {Read: body, Write: 10 * time.Minute},
		// Admin routes that may fetch an image from its origin before answering.
		"POST /api/v1/images/fetch":    {Body: 64 << 10, Read: body},
		"POST /api/v1/profiles":        {Body: defaultBody, Read: body},
		"PATCH /api/v1/profiles/:name": {Body: defaultBody, Read: body},
		// Image uploads (authenticated before the body is read): the image
		// cache caps their size.
		"POST /api/v1/images": {Read: 6 * time.Hour, Write: 6 * time.Hour},
		"POST /images":        {Read: 6 * time.Hour, Write: 6 * time.Hour}, // the console's upload form
	}
}

// limitRequest applies the route's limit: a body announced larger than the
// cap is refused before it is read (413), a longer one is cut by
// http.MaxBytesReader, and the connection's read and write deadlines are
// set for this request.
func (s *Server) limitRequest(table map[string]limit) gin.HandlerFunc {
	return func(c *gin.Context) {
		l, ok := table[c.Request.Method+" "+c.FullPath()]
		if !ok {
			l = table[""]
		}
		rc := http.NewResponseController(c.Writer)
		now := s.now()
		if l.Read > 0 {
			_ = rc.SetReadDeadline(now.Add(l.Read))
		} else {
			_ = rc.SetReadDeadline(time.Time{})
		}
		if l.Write > 0 {
			_ = rc.SetWriteDeadline(now.Add(l.Write))
		} else {
			_ = rc.SetWriteDeadline(time.Time{})
		}
		if l.Body > 0 {
			if c.Request.ContentLength > l.Body {
				c.Header("Connection", "close")
				c.AbortWithStatusJSON(http.StatusRequestEntityTooLarge,
					errorBody{Error: "request body is larger than the route allows", Field: "body"})
				return
			}
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, l.Body)
		}
		c.Next()
	}
}

// secureHeaders sets the headers every answer carries: HSTS (the listener
// is HTTPS only), no MIME sniffing, no framing, and no caching — answers
// carry boot scripts with one-time tokens, ISOs with boot tokens and API
// tokens. Content-addressed images are the one exception: the image handler
// sets its own caching headers.
func secureHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Strict-Transport-Security", "max-age=63072000")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", console.CSP)
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.Next()
}

// cipherSuites are the TLS 1.2 suites the server accepts: ECDHE with AEAD
// only. iPXE (ipxedust's build) offers ECDHE-RSA with AES-GCM, so its
// handshake keeps working; the CBC and SHA-1 suites Go would otherwise
// accept are gone. TLS 1.3 suites are not configurable and all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
