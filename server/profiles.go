package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

func (s *Server) profileRoutes(api *gin.RouterGroup) {
	s.handle(api, "POST", "/profiles", auth.OpProfCreate, s.createProfile)         // define what "install" means
	s.handle(api, "GET", "/profiles", auth.OpProfList, s.listProfiles)             // all profiles
	s.handle(api, "GET", "/profiles/:name", auth.OpProfGet, s.getProfile)          // one profile
	s.handle(api, "PATCH", "/profiles/:name", auth.OpProfUpdate, s.patchProfile)   // change a profile
	s.handle(api, "DELETE", "/profiles/:name", auth.OpProfDelete, s.deleteProfile) // only when no host uses it
}

// decodeObject reads a JSON object body into a map; an empty body is {}.
func decodeObject(c *gin.Context) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
	if err != nil {
		return nil, host.Invalid("body", "%v", err)
	}
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, host.Invalid("body", "not a JSON object: %v", err)
	}
	return m, nil
}

// applyProfileFields overlays JSON fields onto p; unknown fields are refused.
// (A profile has many optional fields whose zero values mean something, so
// a PATCH is an overlay of the fields sent.)
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

func (s *Server) createProfile(c *gin.Context) error {
	var p host.Profile
	m, err := decodeObject(c)
	if err != nil {
		return err
	}
	if err := applyProfileFields(&p, m); err != nil {
		return err
	}
	out, err := s.core.CreateProfile(c.Request.Context(), caller(c), p)
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, out)
	return nil
}

func (s *Server) listProfiles(c *gin.Context) error {
	ps, err := s.core.ListProfiles(c.Request.Context(), caller(c))
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []host.Profile{}
	}
	c.JSON(http.StatusOK, gin.H{"profiles": ps})
	return nil
}

func (s *Server) getProfile(c *gin.Context) error {
	p, err := s.core.GetProfile(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, p)
	return nil
}

func (s *Server) patchProfile(c *gin.Context) error {
	m, err := decodeObject(c)
	if err != nil {
		return err
	}
	p, err := s.core.UpdateProfile(c.Request.Context(), caller(c), c.Param("name"), func(p *host.Profile) error {
		return applyProfileFields(p, m)
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, p)
	return nil
}

func (s *Server) deleteProfile(c *gin.Context) error {
	if err := s.core.DeleteProfile(c.Request.Context(), caller(c), c.Param("name")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}
