package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
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
	JobQueued  = store.JobQueued  // "queued": waiting for its BMC or a global slot
	JobRunning = store.JobRunning // "running": the BMC sequence runs
	JobDone    = store.JobDone    // "done"
	JobFailed  = store.JobFailed  // "failed"
)

// Job is a bulk reimage, clean or cancel of an explicit list of hosts,
// through the hosts' BMCs (via redfish) or by flagging only (via ""), or a
// bulk enrolment of the db certificate (StartBulkSecureBoot). Jobs
// and their hosts' progress live in the database (SharedStore), so every
// replica lists them; the replica that accepted a job runs it, and when it
// stops, the sweep of any replica fails the job's unfinished hosts.
// Finished jobs are kept a day.
type Job struct {
	ID       string         `json:"id"`
	Action   host.Event     `json:"action"` // "reimage", "clean", "cancel" or "secure-boot-enroll"
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

// JobAbandoned is the error of a job's unfinished hosts once the replica
// running the job stopped heartbeating.
const JobAbandoned = "the server running this job stopped; re-run the job"

// jobKeep is how long finished jobs are kept.
const jobKeep = 24 * time.Hour

// viewJob converts a stored job, keeping only the hosts keep accepts (nil:
// all) and counting those.
func viewJob(sj store.Job, keep func(Job, JobHost) bool) Job {
	j := Job{ID: sj.ID, Action: host.Event(sj.Action), Via: sj.Via, Actor: sj.Actor, Created: sj.Created, Finished: sj.Finished}
	for _, h := range sj.Hosts {
		jh := JobHost{Host: h.Host, BMC: h.BMC, Status: h.Status, Error: h.Error, Started: h.Started, Finished: h.Finished, unknown: h.Unknown}
		if keep == nil || keep(j, jh) {
			j.Hosts = append(j.Hosts, jh)
		}
	}
	j.Counts = map[string]int{JobQueued: 0, JobRunning: 0, JobDone: 0, JobFailed: 0}
	for _, h := range j.Hosts {
		j.Counts[h.Status]++
	}
	return j
}

// updateJobHost changes host i of job id by fn in the database; a failure
// is logged (the host's own audit trail has its steps).
func (c *Core) updateJobHost(id string, i int, fn func(h *store.JobHost)) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.bmc.shared.UpdateJobHost(ctx, id, i, fn); err != nil {
		c.log.Error("bulk job: record progress", "job", id, "host", i, "err", err)
	}
}

// heartbeat records every JobLease/4 that this replica still runs its
// jobs, until done is closed or the replica's context ends.
func (c *Core) heartbeat(done <-chan struct{}) {
	o := c.bmc
	t := time.NewTicker(o.opt.JobLease / 4)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-o.opt.Context.Done():
			return
		case <-t.C:
			if err := o.shared.HeartbeatJobs(o.opt.Context, o.opt.Replica, c.now()); err != nil && o.opt.Context.Err() == nil {
				c.log.Error("bulk job: heartbeat", "replica", o.opt.Replica, "err", err)
			}
		}
	}
}

// SweepJobs fails the unfinished hosts of the jobs whose replica stopped
// heartbeating more than JobLease ago (JobAbandoned), forgets jobs
// finished more than a day ago and deletes expired media. Any number of
// replicas may run it at once: each is one conditional statement. Sweep
// runs it with SweepOnce.
func (c *Core) SweepJobs(ctx context.Context) {
	o := c.bmc
	if o == nil || o.shared == nil {
		return
	}
	now := c.now()
	n, err := o.shared.FailAbandonedJobs(ctx, now.Add(-o.opt.JobLease), now, JobAbandoned, o.opt.Replica)
	switch {
	case err != nil:
		c.log.Error("sweep: fail abandoned jobs", "err", err)
	case n > 0:
		c.log.Warn("sweep: failed the hosts of jobs whose server stopped", "hosts", n)
	}
	if err := o.shared.DeleteJobsFinishedBefore(ctx, now.Add(-jobKeep)); err != nil {
		c.log.Error("sweep: forget old jobs", "err", err)
	}
	if _, err := o.shared.DeleteExpiredMedia(ctx, now); err != nil {
		c.log.Error("sweep: delete expired media", "err", err)
	}
}

// replicaName names this replica: the host name and a random suffix.
func replicaName() string {
	hn, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return hn + "/" + hex.EncodeToString(b)
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
	Via      string       `json:"via"`                 // "redfish", or "": flag only
	Reason   string       `json:"reason"`              // for the audit trail
	EnrollDB bool         `json:"enroll_db,omitempty"` // reimage via redfish: enrol the db certificate before each restart
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
	case r.EnrollDB && (e != host.EventReimage || r.Via != "redfish"):
		return Job{}, host.Invalid("enroll_db", "only reimage via redfish enrols the db certificate")
	case c.bmc == nil:
		return Job{}, ErrNotConfigured{"bulk jobs are not enabled on this server"}
	}
	if r.EnrollDB {
		if err := cl.Authorize(auth.OpBulkSecureBoot, nil); err != nil {
			return Job{}, err
		}
		if _, err := c.dbCert(); err != nil {
			return Job{}, err
		}
	}
	if r.Via != "" {
		if err := c.readyMedia(); err != nil {
			return Job{}, err
		}
	}
	names, err := c.selectHosts(ctx, cl, auth.OpBulk, r.Selector)
	if err != nil {
		return Job{}, err
	}
	via := r.Via
	if via == "" {
		via = "flag only"
	}
	what := fmt.Sprintf("%s via %s", e, via)
	if r.EnrollDB {
		what += ", enrolling the db certificate first"
	}
	return c.startJob(ctx, cl, string(e), r.Via, names, what, r.Reason, func(ctx context.Context, id string, i int, name string) error {
		if r.Via == "" {
			return c.runJobFlag(ctx, cl, id, i, name, e, r.Reason)
		}
		return c.runJobSteps(ctx, cl, id, i, name, e, r.EnrollDB, r.Reason)
	})
}

// startJob stores a job of action on names, audits its start (bulk, no
// host) and runs run for each host in the background (runJobHost),
// heartbeating until all are done. It returns the job, every host queued.
func (c *Core) startJob(ctx context.Context, cl Caller, action, via string, names []string, what, reason string,
	run func(ctx context.Context, id string, i int, name string) error) (Job, error) {
	if c.bmc.shared == nil {
		return Job{}, errNoSharedStore
	}
	id := make([]byte, 8)
	rand.Read(id)
	sj := store.Job{ID: hex.EncodeToString(id), Action: action, Via: via, Actor: cl.Actor(),
		Replica: c.bmc.opt.Replica, Created: c.now().UTC()}
	for _, n := range names {
		sj.Hosts = append(sj.Hosts, store.JobHost{Host: n, Status: JobQueued})
	}
	if err := c.bmc.shared.CreateJob(ctx, sj); err != nil {
		return Job{}, err
	}
	why := fmt.Sprintf("bulk job %s: %s, %d hosts (%s)", sj.ID, what, len(names), nameList(names, 20))
	if reason != "" {
		why += ": " + reason
	}
	c.audit(ctx, cl.record(c.now(), "", auth.RuleFor(auth.OpBulk).Audit, why))
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runJobHost(sj.ID, i, n, run)
		}()
	}
	go func() { wg.Wait(); close(done) }()
	go c.heartbeat(done)
	c.log.Info("bulk job queued", "job", sj.ID, "event", action, "hosts", len(names), "actor", cl.Actor(), "request_id", cl.RequestID,
		"replica", c.bmc.opt.Replica)
	return viewJob(sj, nil), nil // the caller's own selection
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

// selectHosts resolves sel to host names (see StartBulk); a selector by
// profile and/or state selects among the hosts cl may run op on.
func (c *Core) selectHosts(ctx context.Context, cl Caller, op auth.Op, sel BulkSelector) ([]string, error) {
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
		scopeHosts(&f, cl.Scopes(auth.RuleFor(op).Perm))
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

// runJobHost runs one host of job id (run authorizes the job's starter on
// it and does the work, queued behind its BMC's lock and the global limit)
// and records how it ended.
//
// When the replica's context ends (BMCOptions.Context) the host is left as
// it is in the job, as when the replica dies: the sweep of another replica
// fails it once the job's heartbeats have stopped for the lease.
func (c *Core) runJobHost(id string, i int, name string, run func(ctx context.Context, id string, i int, name string) error) {
	ctx, cancel := context.WithTimeout(c.bmc.opt.Context, 6*time.Hour)
	defer cancel()
	err := run(ctx, id, i, name)
	if c.bmc.opt.Context.Err() != nil {
		c.log.Warn("bulk job: this server stops; the job's sweep will fail the host", "job", id, "host", name)
		return
	}
	c.updateJobHost(id, i, func(h *store.JobHost) {
		h.Finished = c.now().UTC()
		if err != nil {
			h.Status, h.Error = JobFailed, err.Error()
			h.Unknown = errors.Is(err, errUnknownHost)
			return
		}
		h.Status = JobDone
	})
	if err != nil {
		c.log.Warn("bulk job: host failed", "job", id, "host", name, "err", err)
	}
}

// authorizeJobHost authorizes cl for ops on host name of a job, with the
// same words for a host that does not exist and one cl may not see.
func (c *Core) authorizeJobHost(ctx context.Context, cl Caller, name string, ops ...auth.Op) error {
	for _, op := range ops {
		if _, err := c.authorizeHost(ctx, cl, op, name); err != nil {
			if errors.Is(err, host.ErrNotFound) {
				return fmt.Errorf("host %s: %w", name, errUnknownHost)
			}
			return err
		}
	}
	return nil
}

// jobBMC records host name's BMC in job id and returns the hook that marks
// the host running once its BMC is ours.
func (c *Core) jobBMC(ctx context.Context, id string, i int, name string) func() {
	if b, err := c.bmc.bmcs.GetBMC(ctx, name); err == nil {
		c.updateJobHost(id, i, func(h *store.JobHost) { h.BMC = bmcKey(b.URL) })
	}
	return func() {
		c.updateJobHost(id, i, func(h *store.JobHost) { h.Status, h.Started = JobRunning, c.now().UTC() })
	}
}

// runJobSteps authorizes cl on one host, flags it and runs its BMC
// sequence (with enrollDB, enrolling the db certificate first).
func (c *Core) runJobSteps(ctx context.Context, cl Caller, id string, i int, name string, e host.Event, enrollDB bool, reason string) error {
	ops := []auth.Op{auth.OpBulk}
	if enrollDB {
		ops = append(ops, auth.OpSecureBootEnroll)
	}
	if err := c.authorizeJobHost(ctx, cl, name, ops...); err != nil {
		return err
	}
	running := c.jobBMC(ctx, id, i, name)
	why := "bulk job " + id
	if reason != "" {
		why += ": " + reason
	}
	_, err := c.provisionBMC(ctx, cl, name, bmcRun{boot: true, enrollDB: enrollDB, reason: reason, running: running,
		before: func() error { return c.flag(ctx, cl, name, e, why) }})
	return err
}

// runJobFlag authorizes cl on one host and applies e to it, nothing more
// (a bulk job via "").
func (c *Core) runJobFlag(ctx context.Context, cl Caller, id string, i int, name string, e host.Event, reason string) error {
	if err := c.authorizeJobHost(ctx, cl, name, auth.OpBulk); err != nil {
		return err
	}
	c.updateJobHost(id, i, func(h *store.JobHost) { h.Status, h.Started = JobRunning, c.now().UTC() })
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
	if c.bmc != nil && c.bmc.shared != nil {
		sj, err := c.bmc.shared.GetJob(ctx, id)
		switch {
		case err == nil:
			if j := viewJob(sj, keep); len(j.Hosts) > 0 {
				return j, nil
			}
		case !errors.Is(err, host.ErrNotFound):
			return Job{}, err
		}
	}
	return Job{}, fmt.Errorf("job %s: %w", id, host.ErrNotFound)
}

// ListJobs returns the bulk jobs of every replica (unfinished, or finished
// within a day), oldest first, without
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
	if c.bmc.shared == nil {
		return out, nil
	}
	sjs, err := c.bmc.shared.ListJobs(ctx, c.now().Add(-jobKeep))
	if err != nil {
		return nil, err
	}
	for _, sj := range sjs {
		j := viewJob(sj, keep)
		if len(j.Hosts) == 0 {
			continue
		}
		j.Hosts = nil
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b Job) int { return a.Created.Compare(b.Created) })
	return out, nil
}
