package store

import (
	"context"
	"time"
)

// The SQL Server statements of the jobs and media methods (jobs.go),
// checked against golden files by TestSQLServerStatements.
func init() {
	for name, f := range map[string]func(ctx context.Context, db *DB) error{
		"CreateJob": func(ctx context.Context, db *DB) error {
			return db.CreateJob(ctx, Job{ID: "00aa", Action: "reimage", Via: "redfish", Actor: "a", Replica: "r", Created: sqlTime,
				Hosts: []JobHost{{Host: "node01", Status: JobQueued}}})
		},
		"GetJob":   func(ctx context.Context, db *DB) error { _, err := db.GetJob(ctx, "00aa"); return err },
		"ListJobs": func(ctx context.Context, db *DB) error { _, err := db.ListJobs(ctx, sqlTime); return err },
		"UpdateJobHost": func(ctx context.Context, db *DB) error {
			_, err := db.UpdateJobHost(ctx, "00aa", 0, func(h *JobHost) { h.Status = JobDone })
			return err
		},
		"HeartbeatJobs": func(ctx context.Context, db *DB) error { return db.HeartbeatJobs(ctx, "r", sqlTime) },
		"FailAbandonedJobs": func(ctx context.Context, db *DB) error {
			_, err := db.FailAbandonedJobs(ctx, sqlTime, sqlTime.Add(time.Minute), "stopped", "r")
			return err
		},
		"DeleteJobsFinishedBefore": func(ctx context.Context, db *DB) error { return db.DeleteJobsFinishedBefore(ctx, sqlTime) },
		"PutMedia": func(ctx context.Context, db *DB) error {
			return db.PutMedia(ctx, Media{Host: "node01", ID: "id", Data: []byte("iso"), ModTime: sqlTime, Expires: sqlTime})
		},
		"GetMedia":    func(ctx context.Context, db *DB) error { _, err := db.GetMedia(ctx, "node01", "id"); return err },
		"DeleteMedia": func(ctx context.Context, db *DB) error { return db.DeleteMedia(ctx, "node01") },
		"DeleteExpiredMedia": func(ctx context.Context, db *DB) error {
			_, err := db.DeleteExpiredMedia(ctx, sqlTime)
			return err
		},
	} {
		sqlserverCases[name] = f
	}
}
