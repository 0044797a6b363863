package store_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

// TestJobs: a job and its hosts round-trip; a host update finishes the job
// with its last host; a finished host is not changed again.
func TestJobs(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		j := store.Job{ID: "00aa", Action: "reimage", Via: "redfish", Actor: "ldap:alice", Replica: "a", Created: t0,
			Hosts: []store.JobHost{{Host: "n2", Status: store.JobQueued}, {Host: "n1", Status: store.JobQueued},
				{Host: "ghost", Status: store.JobFailed, Error: "not found", Unknown: true, Finished: t0}}}
		if err := db.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateJob(ctx, j); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateJob(same id) = %v, want ErrConflict", err)
		}
		if _, err := db.GetJob(ctx, "nope"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetJob(nope) = %v, want ErrNotFound", err)
		}
		got, err := db.GetJob(ctx, "00aa")
		if err != nil {
			t.Fatal(err)
		}
		if got.Actor != "ldap:alice" || got.Replica != "a" || !got.Created.Equal(t0) || !got.Heartbeat.Equal(t0) ||
			!got.Finished.IsZero() || len(got.Hosts) != 3 || got.Hosts[0].Host != "n2" || got.Hosts[1].Host != "n1" ||
			!got.Hosts[2].Unknown || got.Hosts[2].Error != "not found" {
			t.Fatalf("GetJob = %+v", got)
		}
		for i, st := range []string{store.JobDone, store.JobFailed} {
			ok, err := db.UpdateJobHost(ctx, "00aa", i, func(h *store.JobHost) {
				h.Status, h.BMC, h.Started, h.Finished = st, "https://10.0.0.1:443", t0, t0.Add(time.Minute)
			})
			if err != nil || !ok {
				t.Fatalf("UpdateJobHost(%d) = %v, %v", i, ok, err)
			}
			got, _ = db.GetJob(ctx, "00aa")
			if done := !got.Finished.IsZero(); done != (i == 1) {
				t.Errorf("after host %d: finished = %v, want %v", i, done, i == 1)
			}
		}
		if ok, err := db.UpdateJobHost(ctx, "00aa", 0, func(h *store.JobHost) { h.Status = store.JobRunning }); err != nil || ok {
			t.Errorf("UpdateJobHost(finished host) = %v, %v; want false, nil", ok, err)
		}
		got, _ = db.GetJob(ctx, "00aa")
		if h := got.Hosts[0]; h.Status != store.JobDone || h.BMC != "https://10.0.0.1:443" || !h.Finished.Equal(t0.Add(time.Minute)) {
			t.Errorf("host 0 = %+v", h)
		}
		jobs, err := db.ListJobs(ctx, got.Finished)
		if err != nil || len(jobs) != 1 || len(jobs[0].Hosts) != 3 {
			t.Fatalf("ListJobs(since finish) = %+v, %v; want the job", jobs, err)
		}
		if jobs, _ := db.ListJobs(ctx, got.Finished.Add(time.Second)); len(jobs) != 0 {
			t.Errorf("ListJobs(after finish) = %+v, want none", jobs)
		}
		if err := db.DeleteJobsFinishedBefore(ctx, got.Finished.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetJob(ctx, "00aa"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetJob after delete = %v, want ErrNotFound", err)
		}
	})
}

// TestJobFinishesWithConcurrentHosts: when a job's last hosts finish at
// the same time (one transaction each, as the bulk runner does), the job is
// marked finished. Without serializing a job's updates, each transaction
// saw the other's host still running (read committed) and neither finished
// the job: `--wait` hung on PostgreSQL and MariaDB.
func TestJobFinishesWithConcurrentHosts(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		const hosts, rounds = 6, 8
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		for r := range rounds {
			j := store.Job{ID: fmt.Sprintf("cc%02d", r), Action: "secure-boot-enroll", Via: "redfish", Actor: "a", Replica: "a", Created: t0}
			for i := range hosts {
				j.Hosts = append(j.Hosts, store.JobHost{Host: fmt.Sprintf("n%d", i), Status: store.JobRunning})
			}
			if err := db.CreateJob(ctx, j); err != nil {
				t.Fatal(err)
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if _, err := db.UpdateJobHost(ctx, j.ID, i, func(h *store.JobHost) { h.Status, h.Finished = store.JobDone, t0 }); err != nil {
						t.Errorf("UpdateJobHost(%s, %d): %v", j.ID, i, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			got, err := db.GetJob(ctx, j.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Finished.IsZero() {
				t.Fatalf("round %d: every host is done but the job is not finished: %+v", r, got.Hosts)
			}
		}
	})
}

// TestFailAbandonedJobs: the unfinished hosts of a job whose replica
// stopped heartbeating are failed once; a job with a fresh heartbeat is
// left alone.
func TestFailAbandonedJobs(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		t0 := time.Now().UTC().Truncate(time.Second)
		for _, j := range []store.Job{
			{ID: "dead", Action: "clean", Replica: "a", Created: t0, Hosts: []store.JobHost{
				{Host: "n1", Status: store.JobDone, Finished: t0}, {Host: "n2", Status: store.JobRunning, Started: t0},
				{Host: "n3", Status: store.JobQueued}}},
			{ID: "live", Action: "clean", Replica: "b", Created: t0, Hosts: []store.JobHost{{Host: "n4", Status: store.JobQueued}}},
		} {
			if err := db.CreateJob(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.HeartbeatJobs(ctx, "b", t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		before, at := t0.Add(time.Minute), t0.Add(3*time.Minute)
		if n, err := db.FailAbandonedJobs(ctx, before, at, "by itself", "a"); err != nil || n != 0 {
			t.Errorf("FailAbandonedJobs(except the owner) = %d, %v; want 0", n, err)
		}
		n, err := db.FailAbandonedJobs(ctx, before, at, "stopped", "c")
		if err != nil || n != 2 {
			t.Fatalf("FailAbandonedJobs = %d, %v; want 2", n, err)
		}
		if n, err := db.FailAbandonedJobs(ctx, before, at, "again", ""); err != nil || n != 0 {
			t.Errorf("FailAbandonedJobs again = %d, %v; want 0", n, err)
		}
		dead, _ := db.GetJob(ctx, "dead")
		if !dead.Finished.Equal(at) || dead.Hosts[0].Status != store.JobDone {
			t.Errorf("dead job = %+v", dead)
		}
		for _, h := range dead.Hosts[1:] {
			if h.Status != store.JobFailed || h.Error != "stopped" || !h.Finished.Equal(at) {
				t.Errorf("dead job host = %+v, want failed: stopped", h)
			}
		}
		live, _ := db.GetJob(ctx, "live")
		if !live.Finished.IsZero() || live.Hosts[0].Status != store.JobQueued || !live.Heartbeat.Equal(t0.Add(3*time.Minute)) {
			t.Errorf("live job = %+v", live)
		}
	})
}

// TestMedia: a publication round-trips by host and id (3 MiB), a new one
// replaces it, and expired or deleted ones are gone.
func TestMedia(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		data := make([]byte, 3<<20)
		rand.Read(data)
		t0 := time.Now().UTC().Truncate(time.Second)
		m := store.Media{Host: "n1", ID: "id1", Data: data, ETag: `"sha256:x"`, ModTime: t0, Expires: t0.Add(time.Hour)}
		if err := db.PutMedia(ctx, m); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetMedia(ctx, "n1", "id1")
		if err != nil || !bytes.Equal(got.Data, data) || got.ETag != m.ETag || !got.Expires.Equal(m.Expires) || !got.ModTime.Equal(t0) {
			t.Fatalf("GetMedia = %d bytes %q %v, %v", len(got.Data), got.ETag, got.Expires, err)
		}
		m.ID, m.Data = "id2", []byte("second")
		if err := db.PutMedia(ctx, m); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetMedia(ctx, "n1", "id1"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetMedia(replaced id) = %v, want ErrNotFound", err)
		}
		if got, err := db.GetMedia(ctx, "n1", "id2"); err != nil || string(got.Data) != "second" {
			t.Errorf("GetMedia(id2) = %q, %v", got.Data, err)
		}
		if err := db.PutMedia(ctx, store.Media{Host: "n2", ID: "old", Data: []byte("x"), ModTime: t0, Expires: t0.Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		if n, err := db.DeleteExpiredMedia(ctx, t0); err != nil || n != 1 {
			t.Errorf("DeleteExpiredMedia = %d, %v; want 1", n, err)
		}
		if _, err := db.GetMedia(ctx, "n2", "old"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetMedia(expired) = %v, want ErrNotFound", err)
		}
		if err := db.DeleteMedia(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetMedia(ctx, "n1", "id2"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetMedia(deleted) = %v, want ErrNotFound", err)
		}
	})
}
