package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

// Job statuses of one host in a bulk job.
const (
	JobQueued  = "queued"  // waiting for its BMC or a global slot
	JobRunning = "running" // the BMC sequence runs
	JobDone    = "done"
	JobFailed  = "failed"
)

// Job is a bulk reimage or clean through the hosts' BMCs. Jobs live in the
// memory of the replica that accepted them.
type Job struct {
	ID       string         `json:"id"`
	Action   host.Event     `json:"action"` // "reimage" or "clean"
	Via      string         `json:"via"`    // "redfish"
	Actor    string         `json:"actor"`
	Created  time.Time      `json:"created"`
	Finished time.Time      `json:"finished,omitzero"`
	Counts   map[string]int `json:"counts"` // by status
	Hosts    []JobHost      `json:"hosts"`
}

// JobHost is one host's progress in a Job.
type JobHost struct {
	Host     string    `json:"host"`
	BMC      string    `json:"bmc,omitempty"` // "https://10.0.0.10:443"
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

type jobs struct {
	mu sync.Mutex
	m  map[string]*Job
}

func newJobs() *jobs { return &jobs{m: map[string]*Job{}} }

// snapshot returns a copy of job id with fresh counts.
func (j *jobs) snapshot(id string) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.m[id]
	if !ok {
		return Job{}, false
	}
	out := *job
	out.Hosts = slices.Clone(job.Hosts)
	out.Counts = map[string]int{JobQueued: 0, JobRunning: 0, JobDone: 0, JobFailed: 0}
	for _, h := range out.Hosts {
		out.Counts[h.Status]++
	}
	return out, true
}

func (j *jobs) update(id string, i int, fn func(h *JobHost)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job := j.m[id]
	fn(&job.Hosts[i])
	for _, h := range job.Hosts {
		if h.Status == JobQueued || h.Status == JobRunning {
			return
		}
	}
	job.Finished = time.Now().UTC()
}

// bulkSelector picks hosts: by names, or by profile and/or state.
type bulkSelector struct {
	Names   []string   `json:"names"`
	Profile string     `json:"profile"`
	State   host.State `json:"state"`
}

// bulkBody is the body of POST /api/v1/bulk/{reimage,clean}.
type bulkBody struct {
	Selector bulkSelector `json:"selector"`
	Via      string       `json:"via"` // "redfish"
	Reason   string       `json:"reason"`
}

func (s *Server) bulk(c *gin.Context) {
	e := host.Event(c.Param("action"))
	if e != host.EventReimage && e != host.EventClean {
		s.fail(c, fmt.Errorf("bulk %s: %w", e, host.ErrNotFound))
		return
	}
	var body bulkBody
	if err := decodeStrict(c, &body); err != nil {
		s.fail(c, err)
		return
	}
	if body.Via != "redfish" {
		s.fail(c, host.Invalid("via", "%q is not a delivery method (want redfish)", body.Via))
		return
	}
	if err := s.rf.readyMedia(); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	sel := body.Selector
	var names []string
	switch {
	case len(sel.Names) > 0 && (sel.Profile != "" || sel.State != ""):
		s.fail(c, host.Invalid("selector", "give names, or profile and/or state, not both"))
		return
	case len(sel.Names) > 0:
		for _, n := range sel.Names {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	case sel.Profile != "" || sel.State != "":
		if sel.State != "" && !sel.State.Valid() {
			s.fail(c, host.Invalid("selector.state", "%q is not a state", sel.State))
			return
		}
		hs, err := s.store.ListHosts(ctx, store.HostFilter{Profile: sel.Profile, State: sel.State})
		if err != nil {
			s.fail(c, err)
			return
		}
		for _, h := range hs {
			names = append(names, h.Name)
		}
	default:
		s.fail(c, host.Invalid("selector", "select hosts by names, or by profile and/or state"))
		return
	}
	if len(names) == 0 {
		s.fail(c, host.Invalid("selector", "selects no host"))
		return
	}
	id := make([]byte, 8)
	rand.Read(id)
	job := &Job{ID: hex.EncodeToString(id), Action: e, Via: body.Via, Actor: actor(c), Created: s.now().UTC()}
	for _, n := range names {
		job.Hosts = append(job.Hosts, JobHost{Host: n, Status: JobQueued})
	}
	s.rf.jobs.mu.Lock()
	for id, j := range s.rf.jobs.m { // finished jobs are kept a day
		if !j.Finished.IsZero() && time.Since(j.Finished) > 24*time.Hour {
			delete(s.rf.jobs.m, id)
		}
	}
	s.rf.jobs.m[job.ID] = job
	s.rf.jobs.mu.Unlock()
	for i, n := range names {
		go s.rf.runJobHost(job.ID, i, n, e, actor(c), requestID(c), body.Reason)
	}
	snap, _ := s.rf.jobs.snapshot(job.ID)
	s.log.Info("bulk job queued", "job", job.ID, "event", e, "hosts", len(names), "actor", actor(c), "request_id", requestID(c))
	c.JSON(http.StatusAccepted, snap)
}

// runJobHost flags one host and runs its BMC sequence, queued behind its
// BMC's lock and the global limit.
func (o *redfishOps) runJobHost(id string, i int, name string, e host.Event, actor, reqID, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Hour)
	defer cancel()
	if b, err := o.bmcs.GetBMC(ctx, name); err == nil {
		o.jobs.update(id, i, func(h *JobHost) { h.BMC = bmcKey(b.URL) })
	}
	why := "bulk job " + id
	if reason != "" {
		why += ": " + reason
	}
	_, err := o.provisionLocked(ctx, name, true, actor, reqID, reason,
		func() {
			o.jobs.update(id, i, func(h *JobHost) { h.Status, h.Started = JobRunning, time.Now().UTC() })
		},
		func() error { return o.flag(ctx, name, e, actor, reqID, why) })
	o.jobs.update(id, i, func(h *JobHost) {
		h.Finished = time.Now().UTC()
		if err != nil {
			h.Status, h.Error = JobFailed, err.Error()
			return
		}
		h.Status = JobDone
	})
	if err != nil {
		o.s.log.Warn("bulk job: host failed", "job", id, "host", name, "err", err)
	}
}

// flag applies a reimage or clean event to host name, by the rules of
// admin events (Server.admin); a host already flagged stays as it is.
func (o *redfishOps) flag(ctx context.Context, name string, e host.Event, actor, reqID, reason string) error {
	known, err := o.s.knownProfiles(ctx, name, "")
	if err != nil {
		return err
	}
	_, err = o.s.store.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
		return o.s.admin(h, e, actionBody{Reason: reason}, known, actor, reqID)
	})
	if errors.Is(err, errNoop) {
		return nil
	}
	return err
}

func (s *Server) getJob(c *gin.Context) {
	j, ok := s.rf.jobs.snapshot(c.Param("id"))
	if !ok {
		s.fail(c, fmt.Errorf("job %s: %w", c.Param("id"), host.ErrNotFound))
		return
	}
	c.JSON(http.StatusOK, j)
}

func (s *Server) listJobs(c *gin.Context) {
	s.rf.jobs.mu.Lock()
	ids := make([]string, 0, len(s.rf.jobs.m))
	for id := range s.rf.jobs.m {
		ids = append(ids, id)
	}
	s.rf.jobs.mu.Unlock()
	out := make([]Job, 0, len(ids))
	for _, id := range ids {
		j, _ := s.rf.jobs.snapshot(id)
		j.Hosts = nil
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b Job) int { return a.Created.Compare(b.Created) })
	c.JSON(http.StatusOK, gin.H{"jobs": out})
}
