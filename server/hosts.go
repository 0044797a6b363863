package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/token"
)

func (s *Server) hostRoutes(api *gin.RouterGroup) {
	api.POST("/hosts", s.createHost)                   // register a host
	api.GET("/hosts", s.listHosts)                     // list, filtered by state/profile, paged by name
	api.GET("/hosts/:name", s.getHost)                 // one host
	api.PATCH("/hosts/:name", s.patchHost)             // change network, profile…
	api.DELETE("/hosts/:name", s.deleteHost)           // forget a host (its events stay)
	api.POST("/hosts/:name/boot-token", s.rotateToken) // new boot token, shown once
	api.GET("/hosts/:name/events", s.hostEvents)       // audit trail, newest first
	api.GET("/hosts/:name/iso", s.hostISO)             // build the host's ISO with a fresh token
	api.GET("/hosts/:name/preview", s.hostPreview)     // what the next boot would be served, read-only
	for _, e := range []host.Event{host.EventReimage, host.EventClean, host.EventCancel,
		host.EventRetry, host.EventHold, host.EventRelease, host.EventAdopt} {
		api.POST("/hosts/:name/"+string(e), s.hostAction(e)) // lifecycle actions
	}
}

var hexHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// patchable lists the host fields an admin may set; state, attempt and
// version change only through lifecycle actions.
var patchable = map[string]bool{"macs": true, "ipv4": true, "gateway": true, "dns": true,
	"ipv6": true, "gateway6": true, "vlan": true, "hostname": true, "domain": true,
	"profile": true, "clean_then_install": true, "token_hash": true}

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

// applyFields overlays JSON fields onto h, refusing fields not in allowed.
func applyFields(h *host.Host, m map[string]json.RawMessage, allowed map[string]bool) error {
	for k, v := range m {
		if !allowed[k] {
			return host.Invalid(k, "unknown or read-only field")
		}
		if k == "token_hash" {
			var th string
			if err := json.Unmarshal(v, &th); err != nil || !hexHashRE.MatchString(th) {
				return host.Invalid("token_hash", "must be the SHA-256 of the token as 64 lower-case hex digits")
			}
			h.TokenHash = th
			continue
		}
		one, _ := json.Marshal(map[string]json.RawMessage{k: v})
		if err := json.Unmarshal(one, h); err != nil {
			return host.Invalid(k, "wrong type: %v", err)
		}
	}
	return nil
}

func (s *Server) checkProfile(c *gin.Context, name string) error {
	if name == "" {
		return nil
	}
	if _, err := s.store.GetProfile(c.Request.Context(), name); err != nil {
		if errors.Is(err, host.ErrNotFound) {
			return host.Invalid("profile", "no profile named %q", name)
		}
		return err
	}
	return nil
}

func (s *Server) record(c *gin.Context, name, action, reason string) host.Record {
	return host.Record{Host: name, Actor: actor(c), Action: action, Reason: reason,
		RequestID: requestID(c), Time: s.now().UTC()}
}

func (s *Server) createHost(c *gin.Context) {
	m, err := decodeObject(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var h host.Host
	allowed := map[string]bool{"name": true, "state": true}
	for k := range patchable {
		allowed[k] = true
	}
	if err := applyFields(&h, m, allowed); err != nil {
		s.fail(c, err)
		return
	}
	if h.State != "" && h.State != host.StateReady && h.State != host.StateDiscovered {
		s.fail(c, host.Invalid("state", "a new host starts ready or discovered"))
		return
	}
	if err := h.Normalize(); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.checkProfile(c, h.Profile); err != nil {
		s.fail(c, err)
		return
	}
	if h.TokenHash == "" {
		_, h.TokenHash = token.New() // nobody knows it until a rotation
	}
	h.Version, h.Attempt = 0, 0
	out, err := s.store.CreateHost(c.Request.Context(), h, s.record(c, h.Name, "create", ""))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, out)
}

func (s *Server) listHosts(c *gin.Context) {
	f := store.HostFilter{State: host.State(c.Query("state")), Profile: c.Query("profile"), After: c.Query("after")}
	if f.State != "" && !f.State.Valid() {
		s.fail(c, host.Invalid("state", "%q is not a state", f.State))
		return
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100000 {
			s.fail(c, host.Invalid("limit", "must be a number from 1 to 100000"))
			return
		}
		f.Limit = n
	}
	hs, err := s.store.ListHosts(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	if hs == nil {
		hs = []host.Host{}
	}
	c.JSON(http.StatusOK, gin.H{"hosts": hs})
}

func (s *Server) getHost(c *gin.Context) {
	h, err := s.store.GetHost(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, h)
}

func (s *Server) patchHost(c *gin.Context) {
	m, err := decodeObject(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if p, ok := m["profile"]; ok {
		var name string
		json.Unmarshal(p, &name)
		if err := s.checkProfile(c, name); err != nil {
			s.fail(c, err)
			return
		}
	}
	name := c.Param("name")
	h, err := s.store.UpdateHost(c.Request.Context(), name, func(h *host.Host) ([]host.Record, error) {
		old := *h
		old.MACs, old.DNS = slices.Clone(h.MACs), slices.Clone(h.DNS)
		if err := applyFields(h, m, patchable); err != nil {
			return nil, err
		}
		if err := h.Normalize(); err != nil {
			return nil, err
		}
		changed := host.Changed(old, *h)
		if len(changed) == 0 {
			return nil, errNoop
		}
		if slices.Contains(changed, "profile") && h.Profile == "" {
			// Taking the profile of a host about to install leaves it
			// nothing to install. (A new profile was checked above.)
			onlyInstall := func(p string) bool { return p != "" && p == s.opt.CleanProfile }
			if err := host.RequireProfiles(*h, s.opt.CleanProfile, onlyInstall); err != nil {
				return nil, err
			}
		}
		rec := s.record(c, h.Name, "update", "changed "+strings.Join(changed, ", "))
		rec.Fields = changed
		return []host.Record{rec}, nil
	})
	if errors.Is(err, errNoop) {
		h, err = s.store.GetHost(c.Request.Context(), name)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, h)
}

func (s *Server) deleteHost(c *gin.Context) {
	name := c.Param("name")
	if err := s.store.DeleteHost(c.Request.Context(), name, s.record(c, name, "delete", "")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) rotateToken(c *gin.Context) {
	plain, hash := token.New()
	_, err := s.store.UpdateHost(c.Request.Context(), c.Param("name"), func(h *host.Host) ([]host.Record, error) {
		h.TokenHash = hash
		return []host.Record{s.record(c, h.Name, "token-rotate", "boot token rotated; the old one stops working")}, nil
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"token": plain})
}

func (s *Server) hostEvents(c *gin.Context) {
	limit := 100
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			s.fail(c, host.Invalid("limit", "must be a number from 1 to 10000"))
			return
		}
		limit = n
	}
	name := c.Param("name")
	if _, err := s.store.GetHost(c.Request.Context(), name); err != nil {
		s.fail(c, err)
		return
	}
	evs, err := s.store.Events(c.Request.Context(), name, limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	if evs == nil {
		evs = []host.Record{}
	}
	c.JSON(http.StatusOK, gin.H{"events": evs})
}

// actionBody is the optional body of lifecycle actions.
type actionBody struct {
	Profile     string `json:"profile"`      // reimage/clean: switch profile first
	Reason      string `json:"reason"`       // for the audit trail
	ThenInstall bool   `json:"then_install"` // clean: reimage after a successful clean
	Via         string `json:"via"`          // reimage/clean: "redfish" inserts the ISO and restarts (bmc.go)
}

// hostAction applies an admin lifecycle event. A reimage, clean or hold of
// a host already there is a no-op 200 without an event.
func (s *Server) hostAction(e host.Event) gin.HandlerFunc {
	return func(c *gin.Context) {
		var body actionBody
		if c.Request.ContentLength != 0 {
			dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				s.fail(c, host.Invalid("body", "%v", err))
				return
			}
		}
		if err := body.check(e); err != nil {
			s.fail(c, err)
			return
		}
		if body.Profile != "" {
			if err := s.checkProfile(c, body.Profile); err != nil {
				s.fail(c, err)
				return
			}
		}
		if body.Via != "" {
			if err := s.checkVia(c.Request.Context(), c.Param("name"), body.Via); err != nil {
				s.fail(c, err)
				return
			}
		}
		name := c.Param("name")
		known, err := s.knownProfiles(c.Request.Context(), name, body.Profile)
		if err != nil {
			s.fail(c, err)
			return
		}
		h, err := s.store.UpdateHost(c.Request.Context(), name, func(h *host.Host) ([]host.Record, error) {
			return s.admin(h, e, body, known, actor(c), requestID(c))
		})
		changed := err == nil
		if errors.Is(err, errNoop) {
			h, err = s.store.GetHost(c.Request.Context(), name)
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		if changed {
			s.log.Info("host action", "host", h.Name, "event", e, "state", h.State, "actor", actor(c), "request_id", requestID(c))
		}
		if body.Via != "" {
			s.viaRedfish(c, h, body.Reason)
			return
		}
		c.JSON(http.StatusOK, h)
		if changed {
			s.afterTransition(h) // cancel → ready: eject media we inserted
		}
	}
}

// check refuses options the event does not take.
func (b actionBody) check(e host.Event) error {
	if len(b.Reason) > 1000 {
		return host.Invalid("reason", "longer than 1000 characters")
	}
	if b.Profile != "" {
		if e != host.EventReimage && e != host.EventClean && e != host.EventRetry {
			return host.Invalid("profile", "only reimage, retry and clean take a profile")
		}
		if err := host.ValidName("profile", b.Profile); err != nil {
			return err
		}
	}
	if b.ThenInstall && e != host.EventClean {
		return host.Invalid("then_install", "only clean takes then_install")
	}
	if b.Via != "" && e != host.EventReimage && e != host.EventClean {
		return host.Invalid("via", "only reimage and clean go via a BMC")
	}
	return nil
}

// knownProfiles reports which of the profiles an admin event on host name
// may need exist: the body's, the host's and the clean profile. They are
// read before the event's transaction, which must not wait for a second
// connection while it holds the host row; a profile the locked row names
// that was not read here counts as missing.
func (s *Server) knownProfiles(ctx context.Context, name, profile string) (func(string) bool, error) {
	h, err := s.store.GetHost(ctx, name)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, p := range []string{profile, h.Profile, s.opt.CleanProfile} {
		if p == "" || have[p] {
			continue
		}
		_, err := s.store.GetProfile(ctx, p)
		switch {
		case err == nil:
			have[p] = true
		case !errors.Is(err, host.ErrNotFound):
			return nil, err
		}
	}
	return func(p string) bool { return have[p] }, nil
}

// admin applies admin event e with the options of body to h, in an
// UpdateHost callback: the one place for the rules of admin events (and
// bulk jobs). A repeated reimage, clean or hold returns errNoop (not with
// via: a BMC sequence is not run again for a host already flagged); an event
// the state does not allow a *host.TransitionError that says what to do;
// a host left without the profiles its next boot needs a
// *host.ProfileError (host.RequireProfiles).
func (s *Server) admin(h *host.Host, e host.Event, body actionBody, known func(string) bool, actor, rid string) ([]host.Record, error) {
	if host.Repeated(*h, e) && (body.Profile == "" || body.Profile == h.Profile) && body.Via == "" &&
		(e != host.EventClean || body.ThenInstall == h.CleanThenInstall) {
		return nil, errNoop
	}
	if err := host.Admit(*h, e); err != nil {
		return nil, err
	}
	if body.Profile != "" {
		h.Profile = body.Profile
	}
	recs, err := s.transition(h, e, actor, rid, body.Reason)
	if err != nil {
		return nil, err
	}
	h.CleanThenInstall = e == host.EventClean && body.ThenInstall
	if err := host.RequireProfiles(*h, s.opt.CleanProfile, known); err != nil {
		return nil, err
	}
	return recs, nil
}

// hostISO answers GET /api/v1/hosts/{name}/iso: a fresh boot token is made,
// the ISO built with it, and only then the token hash stored.
func (s *Server) hostISO(c *gin.Context) {
	if s.opt.ISO == nil {
		c.AbortWithStatusJSON(http.StatusNotImplemented, errorBody{Error: "this server has no ISO builder configured"})
		return
	}
	name := c.Param("name")
	data, err := s.buildISO(c.Request.Context(), name, s.record(c, name, "token-rotate", "ISO built; the old boot token stops working"))
	if err != nil {
		s.fail(c, err)
		return
	}
	var buf isoBuffer
	buf.Write(data)
	buf.serve(c, name+".iso")
}
