package server

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/store"
)

func (s *Server) hostRoutes(api *gin.RouterGroup) {
	s.handle(api, "POST", "/hosts", auth.OpHostCreate, s.createHost)                  // register a host
	s.handle(api, "GET", "/hosts", auth.OpHostList, s.listHosts)                      // list, filtered by state/profile, paged by name
	s.handle(api, "GET", "/hosts/:name", auth.OpHostGet, s.getHost)                   // one host
	s.handle(api, "PATCH", "/hosts/:name", auth.OpHostUpdate, s.patchHost)            // change network, profile, labels…
	s.handle(api, "DELETE", "/hosts/:name", auth.OpHostDelete, s.deleteHost)          // forget a host (its events stay)
	s.handle(api, "POST", "/hosts/:name/boot-token", auth.OpBootToken, s.rotateToken) // new boot token, shown once
	s.handle(api, "GET", "/hosts/:name/events", auth.OpHostEvents, s.hostEvents)      // audit trail, newest first
	s.handle(api, "GET", "/hosts/:name/iso", auth.OpHostISO, s.hostISO)               // build the host's ISO with a fresh token
	s.handle(api, "GET", "/hosts/:name/preview", auth.OpHostPreview, s.hostPreview)   // what the next boot would be served, read-only
	for _, e := range provision.AdminEvents() {
		s.handle(api, "POST", "/hosts/:name/"+string(e), provision.OpOf(e), s.hostAction(e)) // lifecycle actions
	}
}

func (s *Server) createHost(c *gin.Context) error {
	var n provision.NewHost
	if err := decodeBody(c, &n); err != nil {
		return err
	}
	h, err := s.core.CreateHost(c.Request.Context(), caller(c), n)
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, h)
	return nil
}

func (s *Server) listHosts(c *gin.Context) error {
	f := store.HostFilter{State: host.State(c.Query("state")), Profile: c.Query("profile"), After: c.Query("after")}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100000 {
			return host.Invalid("limit", "must be a number from 1 to 100000")
		}
		f.Limit = n
	}
	hs, err := s.core.ListHosts(c.Request.Context(), caller(c), f)
	if err != nil {
		return err
	}
	if hs == nil {
		hs = []host.Host{}
	}
	c.JSON(http.StatusOK, gin.H{"hosts": hs})
	return nil
}

func (s *Server) getHost(c *gin.Context) error {
	h, err := s.core.GetHost(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, h)
	return nil
}

func (s *Server) patchHost(c *gin.Context) error {
	var u provision.HostUpdate
	if err := decodeBody(c, &u); err != nil {
		return err
	}
	h, err := s.core.UpdateHost(c.Request.Context(), caller(c), c.Param("name"), u)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, h)
	return nil
}

func (s *Server) deleteHost(c *gin.Context) error {
	if err := s.core.DeleteHost(c.Request.Context(), caller(c), c.Param("name")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (s *Server) rotateToken(c *gin.Context) error {
	plain, err := s.core.RotateBootToken(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"token": plain})
	return nil
}

func (s *Server) hostEvents(c *gin.Context) error {
	limit := 100
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return host.Invalid("limit", "must be a number from 1 to 10000")
		}
		limit = n
	}
	evs, err := s.core.HostEvents(c.Request.Context(), caller(c), c.Param("name"), limit)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []host.Record{}
	}
	c.JSON(http.StatusOK, gin.H{"events": evs})
	return nil
}

// hostAction applies an admin lifecycle event. A reimage, clean or hold of
// a host already there is a no-op 200 without an event.
func (s *Server) hostAction(e host.Event) handler {
	return func(c *gin.Context) error {
		var o provision.ActionOptions
		if err := decodeBody(c, &o); err != nil {
			return err
		}
		res, err := s.core.Act(c.Request.Context(), caller(c), c.Param("name"), e, o)
		if err != nil {
			return err
		}
		if o.Via != "" {
			c.JSON(http.StatusOK, res)
			return nil
		}
		c.JSON(http.StatusOK, res.Host)
		return nil
	}
}

// hostISO answers GET /api/v1/hosts/{name}/iso: a fresh boot token is made,
// the ISO built with it, and only then the token hash stored.
func (s *Server) hostISO(c *gin.Context) error {
	data, err := s.core.HostISO(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	var buf isoBuffer
	buf.Write(data)
	buf.serve(c, c.Param("name")+".iso")
	return nil
}

// hostPreview answers GET /api/v1/hosts/{name}/preview: the script and
// installer configs the host's next boot would be served, rendered read-only.
func (s *Server) hostPreview(c *gin.Context) error {
	p, err := s.core.Preview(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, p)
	return nil
}
