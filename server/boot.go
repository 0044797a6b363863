package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

// ipxe writes a script answer.
func ipxe(c *gin.Context, script []byte) {
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", script)
}

// bootScript answers GET /boot/v1/script: the host authenticates with HTTP
// Basic (name + boot token) and says what it is in the query; the core
// decides. Every failure ends in a 4xx/5xx (stage 0 boots the disk) or in
// localboot.
func (s *Server) bootScript(c *gin.Context) error {
	name, tok, ok := c.Request.BasicAuth()
	if !ok {
		// iPXE sends credentials only after a challenge.
		c.Header("WWW-Authenticate", `Basic realm="bootpilot"`)
		c.String(http.StatusUnauthorized, "credentials required\n")
		return nil
	}
	inv, err := inventory(c, s.now())
	if err != nil {
		s.metrics.boot("refused")
		c.String(http.StatusBadRequest, "%s\n", err)
		return nil
	}
	res, err := s.core.Boot(c.Request.Context(), provision.BootRequest{Name: name, Token: tok, Inventory: inv,
		RequestID: requestID(c), ClientAddr: c.ClientIP()})
	s.metrics.boot(res.Outcome)
	var ve *host.ValidationError
	switch {
	case err == nil:
		ipxe(c, res.Script)
	case errors.Is(err, host.ErrUnauthorized):
		c.Header("WWW-Authenticate", `Basic realm="bootpilot"`)
		c.String(http.StatusUnauthorized, "unknown host or bad token\n")
	case errors.As(err, &ve):
		c.String(http.StatusBadRequest, "%s\n", ve.Reason)
	case errors.Is(err, host.ErrForbidden):
		c.String(http.StatusForbidden, "%s\n", err)
	case errors.Is(err, context.Canceled):
		c.Abort() // the host went away
	default:
		c.String(http.StatusServiceUnavailable, "temporarily unavailable\n")
	}
	return nil
}

// inventory reads what iPXE said about the machine.
func inventory(c *gin.Context, now time.Time) (host.Inventory, error) {
	inv := host.Inventory{
		UUID: c.Query("uuid"), Serial: c.Query("serial"), Asset: c.Query("asset"),
		Arch: c.Query("arch"), Platform: c.Query("platform"), SeenAt: now.UTC(),
	}
	if m := c.Query("mac"); m != "" {
		n, err := host.NormalizeMAC(m)
		if err != nil {
			return inv, fmt.Errorf("mac %q is not a MAC address", m)
		}
		inv.MAC = n
	}
	for _, v := range []*string{&inv.UUID, &inv.Serial, &inv.Asset, &inv.Arch, &inv.Platform} {
		*v = host.CleanText(*v, host.MaxInventoryText) // no terminal escapes reach the CLI
	}
	return inv, nil
}

// callbackBody is what installers and the agent POST.
type callbackBody struct {
	Event  host.Event `json:"event"`  // "installed", "cleaned", "failed", "progress"
	Detail string     `json:"detail"` // free text, at most 1000 bytes kept
}

// callback answers POST /boot/v1/callback/{name}/{token}.
func (s *Server) callback(c *gin.Context) error {
	var body callbackBody
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err := dec.Decode(&body); err != nil {
		return host.Invalid("body", "want JSON like {\"event\":\"installed\"}: %v", err)
	}
	res, err := s.core.Callback(c.Request.Context(), c.Param("name"), c.Param("token"), body.Event, body.Detail,
		requestID(c), c.ClientIP())
	if err != nil {
		return err
	}
	if !res.Recorded {
		c.JSON(http.StatusOK, gin.H{"status": "already recorded"})
		return nil
	}
	s.metrics.callback(string(body.Event))
	c.JSON(http.StatusOK, gin.H{"status": "recorded", "state": res.State})
	return nil
}

// installerConfig answers GET /boot/v1/config/{name}/{token}/{file}: the
// kickstart, preseed or user-data of the attempt the token belongs to.
func (s *Server) installerConfig(c *gin.Context) error {
	b, err := s.core.InstallerConfig(c.Request.Context(), c.Param("name"), c.Param("token"), c.Param("file"),
		requestID(c), c.ClientIP())
	switch {
	case errors.Is(err, context.Canceled):
		c.Abort() // the installer went away
		return nil
	case err != nil:
		return err
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", b)
	return nil
}
