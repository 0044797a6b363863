package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

// Job is a bulk job (the core's type).
type Job = provision.Job

// Job statuses of one host in a bulk job.
const (
	JobQueued  = provision.JobQueued
	JobRunning = provision.JobRunning
	JobDone    = provision.JobDone
	JobFailed  = provision.JobFailed
)

func (s *Server) bulk(c *gin.Context) error {
	var body provision.BulkRequest
	if err := decodeBody(c, &body); err != nil {
		return err
	}
	job, err := s.core.StartBulk(c.Request.Context(), caller(c), host.Event(c.Param("action")), body)
	if err != nil {
		return err
	}
	c.JSON(http.StatusAccepted, job)
	return nil
}

func (s *Server) getJob(c *gin.Context) error {
	j, err := s.core.GetJob(c.Request.Context(), caller(c), c.Param("id"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, j)
	return nil
}

func (s *Server) listJobs(c *gin.Context) error {
	jobs, err := s.core.ListJobs(c.Request.Context(), caller(c))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"jobs": jobs})
	return nil
}
