package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

// BMCStore is what the BMC operations need from the database besides
// Store (the core's interface).
type BMCStore = provision.BMCStore

// bmcOptions are the core's BMC options from the server's.
func bmcOptions(o Options) provision.BMCOptions {
	return provision.BMCOptions{Secrets: o.Secrets, BMCs: o.BMCs, MediaKey: o.MediaKey, MediaURL: o.MediaURL,
		MediaTTL: o.MediaTTL, MediaDir: o.MediaDir, Concurrency: o.RedfishConcurrency, Endpoint: o.RedfishEndpoint,
		DBCert: o.DBCert}
}

func (s *Server) bmcRoutes(e *gin.Engine, api *gin.RouterGroup) {
	media := func(c *gin.Context) error { s.MediaHandler().ServeHTTP(c.Writer, c.Request); return nil }
	s.handle(e, "GET", "/media/v1/:file", auth.OpPublic, media)                       // BMCs: the host's ISO on a signed, expiring URL
	s.handle(e, "HEAD", "/media/v1/:file", auth.OpPublic, media)                      // BMCs: its size
	s.handle(api, "PUT", "/hosts/:name/bmc", auth.OpBMCSet, s.putBMC)                 // set the host's BMC endpoint and credentials
	s.handle(api, "GET", "/hosts/:name/bmc", auth.OpBMCGet, s.getBMC)                 // show it (never the password)
	s.handle(api, "DELETE", "/hosts/:name/bmc", auth.OpBMCDelete, s.deleteBMC)        // forget it
	s.handle(api, "POST", "/hosts/:name/bmc/test", auth.OpBMCTest, s.testBMC)         // dial, power and Secure Boot state
	s.handle(api, "POST", "/hosts/:name/media/insert", auth.OpMediaIn, s.insertMedia) // build the ISO and insert it as virtual media
	s.handle(api, "POST", "/hosts/:name/media/eject", auth.OpMediaOut, s.ejectMedia)  // eject it
	s.handle(api, "POST", "/hosts/:name/power", auth.OpPower, s.power)                // on, off, restart, status
	s.handle(api, "GET", "/hosts/:name/secure-boot", auth.OpSecureBoot, s.secureBoot) // Secure Boot state, org db certificate in db?
	// enroll the db certificate, enable or disable Secure Boot; each action
	// is authorized by its own op (OpSecureBootEnable, …: the same permission)
	s.handle(api, "POST", "/hosts/:name/secure-boot", auth.OpSecureBootEnroll, s.changeSecureBoot)
	s.handle(api, "POST", "/bulk/:action", auth.OpBulk, s.bulk)                                // reimage or clean many hosts through their BMCs
	s.handle(api, "POST", "/bulk/secure-boot-enroll", auth.OpBulkSecureBoot, s.bulkSecureBoot) // enroll the db certificate through many BMCs
	s.handle(api, "GET", "/jobs", auth.OpJobList, s.listJobs)                                  // bulk jobs
	s.handle(api, "GET", "/jobs/:id", auth.OpJobGet, s.getJob)                                 // one bulk job, per-host status
}

func (s *Server) putBMC(c *gin.Context) error {
	var body host.BMCSettings
	if err := decodeBody(c, &body); err != nil {
		return err
	}
	b, err := s.core.SetBMC(c.Request.Context(), caller(c), c.Param("name"), body)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, b)
	return nil
}

func (s *Server) getBMC(c *gin.Context) error {
	b, err := s.core.GetBMC(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, b)
	return nil
}

func (s *Server) deleteBMC(c *gin.Context) error {
	if err := s.core.DeleteBMC(c.Request.Context(), caller(c), c.Param("name")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (s *Server) testBMC(c *gin.Context) error {
	res, err := s.core.TestBMC(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, res)
	return nil
}

func (s *Server) power(c *gin.Context) error {
	var body provision.PowerRequest
	if err := decodeBody(c, &body); err != nil {
		return err
	}
	res, err := s.core.Power(c.Request.Context(), caller(c), c.Param("name"), body)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, res)
	return nil
}

// reasonBody is the optional body of the media calls.
type reasonBody struct {
	Reason string `json:"reason"` // for the audit trail
}

func (s *Server) insertMedia(c *gin.Context) error {
	var body reasonBody
	if err := decodeBody(c, &body); err != nil {
		return err
	}
	res, err := s.core.InsertMedia(c.Request.Context(), caller(c), c.Param("name"), body.Reason)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, res)
	return nil
}

func (s *Server) ejectMedia(c *gin.Context) error {
	var body reasonBody
	if err := decodeBody(c, &body); err != nil {
		return err
	}
	name := c.Param("name")
	if err := s.core.EjectMedia(c.Request.Context(), caller(c), name, body.Reason); err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"host": name, "media_inserted": false})
	return nil
}

func (s *Server) secureBoot(c *gin.Context) error {
	res, err := s.core.SecureBoot(c.Request.Context(), caller(c), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, res)
	return nil
}

func (s *Server) changeSecureBoot(c *gin.Context) error {
	var body provision.SecureBootRequest
	if err := decodeBody(c, &body); err != nil {
		return err
	}
	res, err := s.core.ChangeSecureBoot(c.Request.Context(), caller(c), c.Param("name"), body)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, res)
	return nil
}

func (s *Server) bulkSecureBoot(c *gin.Context) error {
	var body provision.BulkSecureBootRequest
	if err := decodeBody(c, &body); err != nil {
		return err
	}
	job, err := s.core.StartBulkSecureBoot(c.Request.Context(), caller(c), body)
	if err != nil {
		return err
	}
	c.JSON(http.StatusAccepted, job)
	return nil
}
