package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
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

// Job is a bulk reimage, clean or cancel of an explicit list of hosts,
// through the hosts' BMCs (via redfish) or by flagging only (via ""). Jobs
// live in the memory of the replica that accepted them; finished jobs are
// kept a day.
type Job struct {
	ID       string         `json:"id"`
	Action   host.Event     `json:"action"` // "reimage", "clean" or "cancel"
	Via      string         `json:"via"`    // "redfish", or "": flag only
	Actor    string         `json:"actor"`  // who started it: "ldap:alice"
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

	unknown bool // the starter named a host that does not exist or they cannot see; nothing was done
}

// jobs is the in-memory job registry.
type jobs struct {
	mu sync.Mutex
	m  map[string]*Job
}

func newJobs() *jobs { return &jobs{m: map[string]*Job{}} }

// add registers job, forgetting jobs finished more than a day ago.
func (j *jobs) add(job *Job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, old := range j.m {
		if !old.Finished.IsZero() && time.Since(old.Finished) > 24*time.Hour {
			delete(j.m, id)
		}
	}
	j.m[job.ID] = job
}

// ids lists the jobs' ids.
func (j *jobs) ids() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.m))
	for id := range j.m {
		out = append(out, id)
	}
	return out
}

// snapshot returns a copy of job id with only the hosts keep accepts (nil:
// all) and counts over those.
func (j *jobs) snapshot(id string, keep func(Job, JobHost) bool) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.m[id]
	if !ok {
		return Job{}, false
	}
	out := *job
	out.Hosts = nil
	for _, h := range job.Hosts {
		if keep == nil || keep(*job, h) {
			out.Hosts = append(out.Hosts, h)
		}
	}
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

// BulkSelector picks the hosts of a bulk job: by names, or by profile
// and/or state.
type BulkSelector struct {
	Names   []string   `json:"names"`   // ["node01", "node02"]
	Profile string     `json:"profile"` // "rocky9"
	State   host.State `json:"state"`   // "ready"
}

// BulkRequest is a bulk job to start. It is also the wire type of POST
// /api/v1/bulk/{reimage,clean,cancel}.
type BulkRequest struct {
	Selector BulkSelector `json:"selector"`
	Via      string       `json:"via"`    // "redfish", or "": flag only
	Reason   string       `json:"reason"` // for the audit trail
}

// BulkEvents lists the events a bulk job can apply.
func BulkEvents() []host.Event {
	return []host.Event{host.EventReimage, host.EventClean, host.EventCancel}
}

// StartBulk queues a bulk job applying e (reimage, clean or cancel) to the
// selected hosts, by the rules of admin events (Core.admin, as Act). Via
// "redfish" (reimage and clean only), each host is flagged and gets its
// ISO inserted and a restart, one operation per BMC at a time and a global
// limit; via "" each host is only flagged (it acts on its next boot). The
// job returns at once, every host queued; the start is audited (bulk, no
// host), each host's steps on the host.
//
// The job holds the list of host names the selector resolved to, once,
// when it starts: a selector by names (the console's frozen confirmation
// list) is taken as given, in its order, duplicates dropped — never
// recomputed from a filter.
//
// Only hosts the caller may see are ever touched. A selector by profile
// and/or state selects among the hosts the caller may bulk-operate (the
// scopes of OpBulk's permission, as ListHosts filters by read). A name the
// caller cannot see is reported in the job exactly as a name that does not
// exist: failed, not found — the job is not refused, so that a name's
// existence cannot be probed. Every host is authorized again for OpBulk
// when its turn comes and in the transaction that flags it: a visible host
// without the permission fails with forbidden.
func (c *Core) StartBulk(ctx context.Context, cl Caller, e host.Event, r BulkRequest) (Job, error) {
	if err := cl.Authorize(auth.OpBulk, nil); err != nil {
		return Job{}, err
	}
	if !slices.Contains(BulkEvents(), e) {
		return Job{}, fmt.Errorf("bulk %s: %w", e, host.ErrNotFound)
	}
	switch {
	case r.Via != "" && r.Via != "redfish":
		return Job{}, host.Invalid("via", "%q is not a delivery method (want redfish, or nothing to flag only)", r.Via)
	case r.Via != "" && e == host.EventCancel:
		return Job{}, host.Invalid("via", "only reimage and clean go via a BMC")
	case len(r.Reason) > 1000:
		return Job{}, host.Invalid("reason", "longer than 1000 characters")
	case c.bmc == nil:
		return Job{}, ErrNotConfigured{"bulk jobs are not enabled on this server"}
	}
	if r.Via != "" {
		if err := c.readyMedia(); err != nil {
			return Job{}, err
		}
	}
	names, err := c.selectHosts(ctx, cl, r.Selector)
	if err != nil {
		return Job{}, err
	}
	id := make([]byte, 8)
	rand.Read(id)
	job := &Job{ID: hex.EncodeToString(id), Action: e, Via: r.Via, Actor: cl.Actor(), Created: c.now().UTC()}
	for _, n := range names {
		job.Hosts = append(job.Hosts, JobHost{Host: n, Status: JobQueued})
	}
	c.bmc.jobs.add(job)
	via := r.Via
	if via == "" {
		via = "flag only"
	}
	why := fmt.Sprintf("bulk job %s: %s via %s, %d hosts (%s)", job.ID, e, via, len(names), nameList(names, 20))
	if r.Reason != "" {
		why += ": " + r.Reason
	}
	c.audit(ctx, cl.record(c.now(), "", auth.RuleFor(auth.OpBulk).Audit, why))
	for i, n := range names {
		go c.runJobHost(cl, job.ID, i, n, e, r.Via, r.Reason)
	}
	snap, _ := c.bmc.jobs.snapshot(job.ID, nil) // the caller's own selection
	c.log.Info("bulk job queued", "job", job.ID, "event", e, "hosts", len(names), "actor", cl.Actor(), "request_id", cl.RequestID)
	return snap, nil
}

// nameList lists names for a message, at most max of them.
func nameList(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}

// BulkNames resolves a host filter, once, to the names of the hosts cl may
// bulk-operate (the scopes of OpBulk's permission) that match it, in f's
// order and paging: the explicit list the console shows for confirmation
// and then starts a job with (BulkSelector.Names). At most limit names
// are returned (limit > 0); more is a *host.ValidationError.
func (c *Core) BulkNames(ctx context.Context, cl Caller, f store.HostFilter, limit int) ([]string, error) {
	if err := cl.Authorize(auth.OpBulk, nil); err != nil {
		return nil, err
	}
	if f.State != "" && !f.State.Valid() {
		return nil, host.Invalid("state", "%q is not a state", f.State)
	}
	f.Scoped, f.Scopes = false, nil
	scopeHosts(&f, cl.Scopes(auth.RuleFor(auth.OpBulk).Perm))
	f.Offset = 0
	if limit > 0 {
		f.Limit = limit + 1
	}
	hs, err := c.store.ListHosts(ctx, f)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(hs) > limit {
		return nil, host.Invalid("selector", "selects more than %d hosts; narrow the filter", limit)
	}
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return names, nil
}

// selectHosts resolves sel to host names (see StartBulk).
func (c *Core) selectHosts(ctx context.Context, cl Caller, sel BulkSelector) ([]string, error) {
	var names []string
	switch {
	case len(sel.Names) > 0 && (sel.Profile != "" || sel.State != ""):
		return nil, host.Invalid("selector", "give names, or profile and/or state, not both")
	case len(sel.Names) > 0:
		for _, n := range sel.Names {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	case sel.Profile != "" || sel.State != "":
		if sel.State != "" && !sel.State.Valid() {
			return nil, host.Invalid("selector.state", "%q is not a state", sel.State)
		}
		f := store.HostFilter{Profile: sel.Profile, State: sel.State}
		scopeHosts(&f, cl.Scopes(auth.RuleFor(auth.OpBulk).Perm))
		hs, err := c.store.ListHosts(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			names = append(names, h.Name)
		}
	default:
		return nil, host.Invalid("selector", "select hosts by names, or by profile and/or state")
	}
	if len(names) == 0 {
		return nil, host.Invalid("selector", "selects no host")
	}
	return names, nil
}

// runJobHost authorizes cl on one host, flags it and runs its BMC
// sequence, queued behind its BMC's lock and the global limit.
func (c *Core) runJobHost(cl Caller, id string, i int, name string, e host.Event, via, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Hour)
	defer cancel()
	var err error
	if via == "" {
		err = c.runJobFlag(ctx, cl, id, i, name, e, reason)
	} else {
		err = c.runJobSteps(ctx, cl, id, i, name, e, reason)
	}
	c.bmc.jobs.update(id, i, func(h *JobHost) {
		h.Finished = time.Now().UTC()
		if err != nil {
			h.Status, h.Error = JobFailed, err.Error()
			h.unknown = errors.Is(err, errUnknownHost)
			return
		}
		h.Status = JobDone
	})
	if err != nil {
		c.log.Warn("bulk job: host failed", "job", id, "host", name, "err", err)
	}
}

func (c *Core) runJobSteps(ctx context.Context, cl Caller, id string, i int, name string, e host.Event, reason string) error {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBulk, name); err != nil {
		if errors.Is(err, host.ErrNotFound) {
			// The same words for a host that does not exist and one the
			// caller may not see.
			return fmt.Errorf("host %s: %w", name, errUnknownHost)
		}
		return err
	}
	if b, err := c.bmc.bmcs.GetBMC(ctx, name); err == nil {
		c.bmc.jobs.update(id, i, func(h *JobHost) { h.BMC = bmcKey(b.URL) })
	}
	why := "bulk job " + id
	if reason != "" {
		why += ": " + reason
	}
	_, err := c.provisionBMC(ctx, cl, name, true, reason,
		func() {
			c.bmc.jobs.update(id, i, func(h *JobHost) { h.Status, h.Started = JobRunning, time.Now().UTC() })
		},
		func() error { return c.flag(ctx, cl, name, e, why) })
	return err
}

// runJobFlag authorizes cl on one host and applies e to it, nothing more
// (a bulk job via "").
func (c *Core) runJobFlag(ctx context.Context, cl Caller, id string, i int, name string, e host.Event, reason string) error {
	if _, err := c.authorizeHost(ctx, cl, auth.OpBulk, name); err != nil {
		if errors.Is(err, host.ErrNotFound) {
			return fmt.Errorf("host %s: %w", name, errUnknownHost)
		}
		return err
	}
	c.bmc.jobs.update(id, i, func(h *JobHost) { h.Status, h.Started = JobRunning, time.Now().UTC() })
	why := "bulk job " + id
	if reason != "" {
		why += ": " + reason
	}
	h, changed, err := c.flagHost(ctx, cl, name, e, why)
	if err != nil {
		return err
	}
	if changed {
		c.afterTransition(h) // cancel → ready: eject media we inserted
	}
	return nil
}

// flag applies a reimage or clean event to host name by the rules of admin
// events (Core.admin), authorizing cl for OpBulk on the locked row; a host
// already flagged stays as it is.
func (c *Core) flag(ctx context.Context, cl Caller, name string, e host.Event, reason string) error {
	_, _, err := c.flagHost(ctx, cl, name, e, reason)
	return err
}

// flagHost is flag returning the host after it and whether it changed.
func (c *Core) flagHost(ctx context.Context, cl Caller, name string, e host.Event, reason string) (host.Host, bool, error) {
	h, err := c.store.GetHost(ctx, name)
	if err != nil {
		return h, false, err
	}
	known, err := c.knownProfiles(ctx, h, "")
	if err != nil {
		return h, false, err
	}
	after, err := c.store.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
		if err := cl.Authorize(auth.OpBulk, labelsOf(*h)); err != nil {
			return nil, err // relabelled meanwhile
		}
		return c.admin(h, e, ActionOptions{Reason: reason}, known, cl)
	})
	if errors.Is(err, errNoop) {
		return h, false, nil
	}
	return after, err == nil, err
}

// errUnknownHost marks a job host that does not exist or that the job's
// starter cannot see.
var errUnknownHost = fmt.Errorf("%w", host.ErrNotFound)

// jobView returns which of a job's hosts cl sees: every host when cl sees
// every host (nil), else the hosts visible to cl now (one scoped list) and,
// in the jobs cl started, the names that matched no host cl could see
// (nothing was done to them; cl typed them).
func (c *Core) jobView(ctx context.Context, cl Caller) (func(Job, JobHost) bool, error) {
	visible, err := c.visibleTo(ctx, cl)
	if err != nil || visible == nil {
		return nil, err
	}
	return func(j Job, h JobHost) bool {
		return visible(h.Host) || (h.unknown && j.Actor == cl.Actor())
	}, nil
}

// visibleTo returns whether a host name is visible to cl now: nil when cl
// sees every host, else a set from one scoped list.
func (c *Core) visibleTo(ctx context.Context, cl Caller) (func(string) bool, error) {
	var f store.HostFilter
	scopeHosts(&f, cl.Scopes(auth.PermRead))
	if !f.Scoped {
		return nil, nil
	}
	hs, err := c.store.ListHosts(ctx, f)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(hs))
	for _, h := range hs {
		seen[h.Name] = true
	}
	return func(name string) bool { return seen[name] }, nil
}

// GetJob returns bulk job id with its per-host progress. A caller sees a
// job's hosts as far as they may see the hosts now (the job's starter also
// sees the names they gave that matched no host they could see): the
// others are left out of Hosts and Counts, and a job with no host left is
// host.ErrNotFound. (Which hosts a job holds, and their BMCs and errors,
// are the hosts' business.)
func (c *Core) GetJob(ctx context.Context, cl Caller, id string) (Job, error) {
	if err := cl.Authorize(auth.OpJobGet, nil); err != nil {
		return Job{}, err
	}
	keep, err := c.jobView(ctx, cl)
	if err != nil {
		return Job{}, err
	}
	if c.bmc != nil {
		if j, ok := c.bmc.jobs.snapshot(id, keep); ok && len(j.Hosts) > 0 {
			return j, nil
		}
	}
	return Job{}, fmt.Errorf("job %s: %w", id, host.ErrNotFound)
}

// ListJobs returns the bulk jobs of this replica, oldest first, without
// their hosts; visibility and counts as for GetJob.
func (c *Core) ListJobs(ctx context.Context, cl Caller) ([]Job, error) {
	if err := cl.Authorize(auth.OpJobList, nil); err != nil {
		return nil, err
	}
	keep, err := c.jobView(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := []Job{}
	if c.bmc == nil {
		return out, nil
	}
	for _, id := range c.bmc.jobs.ids() {
		j, ok := c.bmc.jobs.snapshot(id, keep)
		if !ok || len(j.Hosts) == 0 {
			continue
		}
		j.Hosts = nil
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b Job) int { return a.Created.Compare(b.Created) })
	return out, nil
}
