package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Job statuses of one host in a bulk job, as stored.
const (
	JobQueued  = "queued"  // waiting for its BMC or a global slot
	JobRunning = "running" // the BMC sequence runs
	JobDone    = "done"
	JobFailed  = "failed"
)

// unfinished lists the statuses of a job host that has not ended.
var unfinished = []string{JobQueued, JobRunning}

// Job is a bulk job as stored: who started it, which replica runs it and
// when that replica last said it still does (Heartbeat), and its hosts in
// the job's order.
type Job struct {
	ID        string    // "3f2a9c0d11e2b4a7"
	Action    string    // "reimage"
	Via       string    // "redfish", or ""
	Actor     string    // "ldap:alice"
	Replica   string    // the replica running the job: "web-2/8c1f…"
	Created   time.Time // when it was started
	Heartbeat time.Time // the running replica's last heartbeat
	Finished  time.Time // zero while a host is queued or running
	Hosts     []JobHost
}

// JobHost is one host's progress in a stored Job.
type JobHost struct {
	Host     string // "node01"
	BMC      string // "https://10.0.0.10:443"
	Status   string // JobQueued, JobRunning, JobDone, JobFailed
	Error    string // why it failed
	Unknown  bool   // the starter named a host that does not exist or they could not see
	Started  time.Time
	Finished time.Time
}

// jobRow is one row of jobs.
type jobRow struct {
	ID          string     `gorm:"primaryKey;size:32"`
	Action      string     `gorm:"size:32;not null"`
	Via         string     `gorm:"size:16;not null"`
	Actor       string     `gorm:"size:255;not null"`
	Replica     string     `gorm:"size:128;not null;index:idx_jobs_replica"`
	CreatedAt   time.Time  `gorm:"precision:6;not null"`
	HeartbeatAt time.Time  `gorm:"precision:6;not null"`
	FinishedAt  *time.Time `gorm:"precision:6;index:idx_jobs_finished_at"`
}

func (jobRow) TableName() string { return "jobs" }

// jobHostRow is one row of job_hosts: host Seq (0, 1, …) of job JobID.
type jobHostRow struct {
	JobID       string     `gorm:"primaryKey;size:32"`
	Seq         int        `gorm:"primaryKey;autoIncrement:false"`
	HostName    string     `gorm:"size:63;not null"`
	BMC         string     `gorm:"column:bmc;size:2048;not null"`
	Status      string     `gorm:"size:16;not null"`
	Error       string     `gorm:"column:error_text;type:text;not null"`
	UnknownHost bool       `gorm:"not null"`
	StartedAt   *time.Time `gorm:"precision:6"`
	FinishedAt  *time.Time `gorm:"precision:6"`
}

func (jobHostRow) TableName() string { return "job_hosts" }

func (r jobHostRow) toJobHost() JobHost {
	return JobHost{Host: r.HostName, BMC: r.BMC, Status: r.Status, Error: r.Error, Unknown: r.UnknownHost,
		Started: timeVal(r.StartedAt), Finished: timeVal(r.FinishedAt)}
}

func (r jobRow) toJob() Job {
	return Job{ID: r.ID, Action: r.Action, Via: r.Via, Actor: r.Actor, Replica: r.Replica, Created: r.CreatedAt.UTC(),
		Heartbeat: r.HeartbeatAt.UTC(), Finished: timeVal(r.FinishedAt)}
}

// CreateJob stores job j and its hosts in one transaction; its heartbeat
// is j.Created. A job id that exists is host.ErrConflict.
func (db *DB) CreateJob(ctx context.Context, j Job) error {
	row := jobRow{ID: j.ID, Action: j.Action, Via: j.Via, Actor: j.Actor, Replica: j.Replica,
		CreatedAt: utc(j.Created), HeartbeatAt: utc(j.Created), FinishedAt: timePtr(j.Finished)}
	hosts := make([]jobHostRow, len(j.Hosts))
	for i, h := range j.Hosts {
		hosts[i] = jobHostRow{JobID: j.ID, Seq: i, HostName: h.Host, BMC: h.BMC, Status: h.Status, Error: h.Error,
			UnknownHost: h.Unknown, StartedAt: timePtr(h.Started), FinishedAt: timePtr(h.Finished)}
	}
	err := db.write(ctx, func(tx *gorm.DB) error {
		if err := dbErr(tx.Create(&row).Error); err != nil {
			return err
		}
		if len(hosts) == 0 {
			return nil
		}
		return dbErr(tx.CreateInBatches(&hosts, 200).Error)
	})
	if err != nil {
		return fmt.Errorf("store: create job %s: %w", j.ID, err)
	}
	return nil
}

// GetJob returns job id with its hosts in order; host.ErrNotFound when
// there is no such job.
func (db *DB) GetJob(ctx context.Context, id string) (Job, error) {
	var row jobRow
	if err := dbErr(db.read(ctx).Where("id = ?", id).Take(&row).Error); err != nil {
		return Job{}, fmt.Errorf("store: job %s: %w", id, err)
	}
	jobs, err := db.withJobHosts(ctx, []jobRow{row})
	if err != nil {
		return Job{}, err
	}
	return jobs[0], nil
}

// ListJobs returns the jobs not finished, or finished at or after since,
// oldest first, with their hosts.
func (db *DB) ListJobs(ctx context.Context, since time.Time) ([]Job, error) {
	var rows []jobRow
	err := db.read(ctx).Where("finished_at IS NULL OR finished_at >= ?", utc(since)).
		Order("created_at").Order("id").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store: list jobs: %w", dbErr(err))
	}
	return db.withJobHosts(ctx, rows)
}

// withJobHosts loads the hosts of rows.
func (db *DB) withJobHosts(ctx context.Context, rows []jobRow) ([]Job, error) {
	out := make([]Job, len(rows))
	at := make(map[string]int, len(rows))
	ids := make([]string, len(rows))
	for i, r := range rows {
		out[i], at[r.ID], ids[i] = r.toJob(), i, r.ID
	}
	for start := 0; start < len(ids); start += 500 {
		end := min(start+500, len(ids))
		var hs []jobHostRow
		err := db.read(ctx).Where("job_id IN ?", ids[start:end]).Order("job_id").Order("seq").Find(&hs).Error
		if err != nil {
			return nil, fmt.Errorf("store: job hosts: %w", dbErr(err))
		}
		for _, h := range hs {
			j := &out[at[h.JobID]]
			j.Hosts = append(j.Hosts, h.toJobHost())
		}
	}
	return out, nil
}

// UpdateJobHost changes host seq (0-based) of job id by fn, on the locked
// row, and marks the job finished when no host is left queued or running.
// A host that has already finished (done, or failed, for instance by
// FailAbandonedJobs) is left as it is and fn is not called: the result is
// false. Unknown ids are host.ErrNotFound.
func (db *DB) UpdateJobHost(ctx context.Context, id string, seq int, fn func(h *JobHost)) (bool, error) {
	changed := false
	err := db.write(ctx, func(tx *gorm.DB) error {
		changed = false
		// The job's row first: updates of one job's hosts run one at a time,
		// so the last one sees every other host finished (finishJobs); under
		// read committed, two concurrent last hosts each saw the other
		// running and neither finished the job.
		var j jobRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Select("id").Where("id = ?", id).Take(&j).Error
		if err := dbErr(err); err != nil {
			return err
		}
		var r jobHostRow
		err = tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("job_id = ? AND seq = ?", id, seq).Take(&r).Error
		if err := dbErr(err); err != nil {
			return err
		}
		if r.Status != JobQueued && r.Status != JobRunning {
			return nil
		}
		h := r.toJobHost()
		fn(&h)
		err = tx.Model(&jobHostRow{}).Where("job_id = ? AND seq = ?", id, seq).Updates(map[string]any{
			"bmc": h.BMC, "status": h.Status, "error_text": h.Error, "unknown_host": h.Unknown,
			"started_at": timePtr(h.Started), "finished_at": timePtr(h.Finished)}).Error
		if err := dbErr(err); err != nil {
			return err
		}
		changed = true
		return finishJobs(tx, now(), tx.Session(&gorm.Session{NewDB: true}).Where("id = ?", id))
	})
	if err != nil {
		return false, fmt.Errorf("store: update host %d of job %s: %w", seq, id, err)
	}
	return changed, nil
}

// finishJobs marks the unfinished jobs that scope selects finished at t
// when none of their hosts is queued or running.
func finishJobs(tx *gorm.DB, t time.Time, scope *gorm.DB) error {
	err := tx.Model(&jobRow{}).Where(scope).Where("finished_at IS NULL").
		Where("NOT EXISTS (SELECT 1 FROM job_hosts WHERE job_hosts.job_id = jobs.id AND job_hosts.status IN ?)", unfinished).
		Update("finished_at", t).Error
	return dbErr(err)
}

// HeartbeatJobs records that replica still runs its unfinished jobs, at t.
func (db *DB) HeartbeatJobs(ctx context.Context, replica string, t time.Time) error {
	err := db.write(ctx, func(tx *gorm.DB) error {
		return dbErr(tx.Model(&jobRow{}).Where("replica = ? AND finished_at IS NULL", replica).
			Update("heartbeat_at", utc(t)).Error)
	})
	if err != nil {
		return fmt.Errorf("store: heartbeat jobs of %s: %w", replica, err)
	}
	return nil
}

// FailAbandonedJobs marks failed, with reason, every queued or running host
// of the unfinished jobs whose replica's last heartbeat is before before
// (except the jobs of replica except, the caller itself: "" for none), and
// those jobs finished at t. It is one conditional UPDATE, so replicas may
// run it at once: each host is failed once. It returns how many hosts it
// failed.
func (db *DB) FailAbandonedJobs(ctx context.Context, before, t time.Time, reason, except string) (int, error) {
	var n int64
	err := db.write(ctx, func(tx *gorm.DB) error {
		stale := tx.Session(&gorm.Session{NewDB: true}).Model(&jobRow{}).Select("id").
			Where("finished_at IS NULL AND heartbeat_at < ? AND replica <> ?", utc(before), except)
		res := tx.Model(&jobHostRow{}).Where("status IN ? AND job_id IN (?)", unfinished, stale).
			Updates(map[string]any{"status": JobFailed, "error_text": reason, "finished_at": utc(t)})
		if err := dbErr(res.Error); err != nil {
			return err
		}
		n = res.RowsAffected
		return finishJobs(tx, utc(t), tx.Session(&gorm.Session{NewDB: true}).Where("heartbeat_at < ? AND replica <> ?", utc(before), except))
	})
	if err != nil {
		return 0, fmt.Errorf("store: fail abandoned jobs: %w", err)
	}
	return int(n), nil
}

// DeleteJobsFinishedBefore forgets the jobs finished before t, with their
// hosts.
func (db *DB) DeleteJobsFinishedBefore(ctx context.Context, t time.Time) error {
	err := db.write(ctx, func(tx *gorm.DB) error {
		old := tx.Session(&gorm.Session{NewDB: true}).Model(&jobRow{}).Select("id").Where("finished_at < ?", utc(t))
		if err := tx.Where("job_id IN (?)", old).Delete(&jobHostRow{}).Error; err != nil {
			return dbErr(err)
		}
		return dbErr(tx.Where("finished_at < ?", utc(t)).Delete(&jobRow{}).Error)
	})
	if err != nil {
		return fmt.Errorf("store: delete old jobs: %w", err)
	}
	return nil
}

// Media is one published ISO of a host: the bytes a BMC fetches through
// the host's signed media URL, which names the publication's ID.
type Media struct {
	Host    string    // "node01"
	ID      string    // the publication id the URL is signed with
	Data    []byte    // the ISO
	ETag    string    // `"sha256:…"`
	ModTime time.Time // when it was published
	Expires time.Time // when its URL stops working
}

// mediaRow is one row of media: the current publication of a host.
type mediaRow struct {
	HostName  string    `gorm:"primaryKey;size:63"`
	PubID     string    `gorm:"size:64;not null"`
	Data      []byte    `gorm:"not null"`
	ETag      string    `gorm:"column:etag;size:128;not null"`
	ModTime   time.Time `gorm:"precision:6;not null"`
	ExpiresAt time.Time `gorm:"precision:6;not null;index:idx_media_expires_at"`
}

func (mediaRow) TableName() string { return "media" }

// PutMedia publishes m as its host's media, replacing the host's earlier
// publication (whose URLs stop working).
func (db *DB) PutMedia(ctx context.Context, m Media) error {
	row := mediaRow{HostName: m.Host, PubID: m.ID, Data: m.Data, ETag: m.ETag, ModTime: utc(m.ModTime), ExpiresAt: utc(m.Expires)}
	if row.Data == nil {
		row.Data = []byte{}
	}
	err := db.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("host_name = ?", m.Host).Delete(&mediaRow{}).Error; err != nil {
			return dbErr(err)
		}
		return dbErr(tx.Create(&row).Error)
	})
	if err != nil {
		return fmt.Errorf("store: publish media of %s: %w", m.Host, err)
	}
	return nil
}

// GetMedia returns host name's publication id; host.ErrNotFound when the
// host's current publication (if any) is another one. Expiry is the
// caller's to check.
func (db *DB) GetMedia(ctx context.Context, name, id string) (Media, error) {
	var r mediaRow
	if err := dbErr(db.read(ctx).Where("host_name = ? AND pub_id = ?", name, id).Take(&r).Error); err != nil {
		return Media{}, fmt.Errorf("store: media of %s: %w", name, err)
	}
	return Media{Host: r.HostName, ID: r.PubID, Data: r.Data, ETag: r.ETag, ModTime: r.ModTime.UTC(), Expires: r.ExpiresAt.UTC()}, nil
}

// DeleteMedia unpublishes host name's media, if any.
func (db *DB) DeleteMedia(ctx context.Context, name string) error {
	err := db.write(ctx, func(tx *gorm.DB) error {
		return dbErr(tx.Where("host_name = ?", name).Delete(&mediaRow{}).Error)
	})
	if err != nil {
		return fmt.Errorf("store: unpublish media of %s: %w", name, err)
	}
	return nil
}

// DeleteExpiredMedia deletes the publications that expired before t and
// returns how many.
func (db *DB) DeleteExpiredMedia(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("expires_at < ?", utc(t)).Delete(&mediaRow{})
		n = res.RowsAffected
		return dbErr(res.Error)
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete expired media: %w", err)
	}
	return int(n), nil
}
