package server

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

func (s *Server) profileRoutes(api *gin.RouterGroup) {
	api.POST("/profiles", s.createProfile)         // define what "install" means
	api.GET("/profiles", s.listProfiles)           // all profiles
	api.GET("/profiles/:name", s.getProfile)       // one profile
	api.PATCH("/profiles/:name", s.patchProfile)   // change a profile
	api.DELETE("/profiles/:name", s.deleteProfile) // only when no host uses it
}

// checkProfileFields validates p including its config template, so a broken
// template is refused now rather than when a host boots.
func checkProfileFields(p *host.Profile) error {
	if err := p.Normalize(); err != nil {
		return err
	}
	if p.Config != "" {
		return bootscripts.CheckConfigTemplate(p.Config)
	}
	return nil
}

// applyProfileFields overlays JSON fields onto p; unknown fields are refused.
func applyProfileFields(p *host.Profile, m map[string]json.RawMessage) error {
	for k, v := range m {
		switch k {
		case "created_at", "updated_at":
			return host.Invalid(k, "read-only field")
		case "name":
			if p.Name != "" {
				var n string
				if json.Unmarshal(v, &n) != nil || n != p.Name {
					return host.Invalid("name", "a profile cannot be renamed")
				}
			}
		}
		one, _ := json.Marshal(map[string]json.RawMessage{k: v})
		dec := json.NewDecoder(bytes.NewReader(one))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p); err != nil {
			return host.Invalid(k, "unknown field or wrong type: %v", err)
		}
	}
	return nil
}

func (s *Server) createProfile(c *gin.Context) {
	var p host.Profile
	m, err := decodeObject(c)
	if err == nil {
		err = applyProfileFields(&p, m)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := checkProfileFields(&p); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.cacheProfileImage(c, p); err != nil {
		s.fail(c, err)
		return
	}
	redactProfileImage(&p)
	out, err := s.store.CreateProfile(c.Request.Context(), p)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.log.Info("profile created", "profile", p.Name, "actor", actor(c), "request_id", requestID(c))
	c.JSON(http.StatusCreated, out)
}

// cacheProfileImage makes sure an image profile's image is in the cache and
// matches its digest before any host can be sent to deploy it.
func (s *Server) cacheProfileImage(c *gin.Context, p host.Profile) error {
	if p.Installer != host.InstallerImage {
		return nil
	}
	if s.opt.Images == nil {
		return host.Invalid("image", "this server has no image cache")
	}
	_, err := s.cacheImage(c, profileFields, p.Image, p.ImageSHA256)
	return err
}

// redactProfileImage drops credentials and a signed query from p's image
// source before it is stored and shown: the blob is cached by digest, so
// the source is only a record of where it came from.
func redactProfileImage(p *host.Profile) {
	if p.Image != "" {
		p.Image = images.Redact(p.Image)
	}
}

func (s *Server) listProfiles(c *gin.Context) {
	ps, err := s.store.ListProfiles(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	if ps == nil {
		ps = []host.Profile{}
	}
	c.JSON(http.StatusOK, gin.H{"profiles": ps})
}

func (s *Server) getProfile(c *gin.Context) {
	p, err := s.store.GetProfile(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

func (s *Server) patchProfile(c *gin.Context) {
	m, err := decodeObject(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	apply := func(p *host.Profile) error {
		if err := applyProfileFields(p, m); err != nil {
			return err
		}
		return checkProfileFields(p)
	}
	// Validate and cache the image first: no network inside the transaction.
	draft, err := s.store.GetProfile(c.Request.Context(), c.Param("name"))
	if err == nil {
		err = apply(&draft)
	}
	if err == nil {
		err = s.cacheProfileImage(c, draft)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	p, err := s.store.UpdateProfile(c.Request.Context(), c.Param("name"), func(p *host.Profile) error {
		if err := apply(p); err != nil {
			return err
		}
		redactProfileImage(p)
		return nil
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.log.Info("profile updated", "profile", p.Name, "actor", actor(c), "request_id", requestID(c))
	c.JSON(http.StatusOK, p)
}

func (s *Server) deleteProfile(c *gin.Context) {
	if err := s.store.DeleteProfile(c.Request.Context(), c.Param("name")); err != nil {
		s.fail(c, err)
		return
	}
	s.log.Info("profile deleted", "profile", c.Param("name"), "actor", actor(c), "request_id", requestID(c))
	c.Status(http.StatusNoContent)
}
