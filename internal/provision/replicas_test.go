package provision_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

// replica is one bootpilot replica: a core on its own connection to a
// shared database, with a context that stops it.
type replica struct {
	core *provision.Core
	db   *store.DB
	stop context.CancelFunc
}

// newReplicas starts n replicas (named a, b, …) on one fresh database of
// driver, sharing one secret key and media key, with job lease lease.
func newReplicas(t *testing.T, driver string, n int, lease time.Duration) []replica {
	t.Helper()
	dsn := storetest.DSN(t, driver)
	key, err := secretbox.NewKey(bytes.Repeat([]byte{7}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	var out []replica
	for i := range n {
		db := storetest.OpenDSN(t, dsn)
		core, err := provision.New(provision.Options{Store: db, ExternalURL: "https://127.0.0.1:8443", CleanProfile: "agent-clean",
			ISO: func(w io.Writer, h host.Host, tok string) error {
				_, err := fmt.Fprintf(w, "ISO %s %s %s", h.Name, tok, strings.Repeat("x", 100<<10))
				return err
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		t.Cleanup(stop)
		core.EnableBMC(provision.BMCOptions{Secrets: secretbox.NewKeyring(key), MediaKey: bytes.Repeat([]byte("k"), 32),
			Replica: string(rune('a' + i)), JobLease: lease, Context: ctx,
			Endpoint: func(ep *redfish.Endpoint) {
				ep.RetryBackoff, ep.MaxBackoff, ep.TaskPoll = time.Millisecond, 5*time.Millisecond, time.Millisecond
			}})
		out = append(out, replica{core: core, db: db, stop: stop})
	}
	return out
}

// addHosts creates the profiles and hosts names through core, each with
// a BMC at bmcURL.
func addHosts(t *testing.T, core *provision.Core, admin provision.Caller, bmcURL string, names ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := core.GetProfile(ctx, admin, "rocky9"); err != nil {
		for _, p := range []host.Profile{
			{Name: "rocky9", Kernel: "https://mirror.example/rocky9/vmlinuz", Initrds: []string{"https://mirror.example/rocky9/initrd.img"},
				Installer: "kickstart"},
			{Name: "agent-clean", Kernel: "https://mirror.example/agent/vmlinuz", Initrds: []string{"https://mirror.example/agent/agent.cpio.gz"},
				Installer: "none", CleanMethod: "zero"},
		} {
			if _, err := core.CreateProfile(ctx, admin, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range names {
		var i int
		fmt.Sscanf(name[len(name)-2:], "%d", &i)
		macs, ip, gw, profile := []string{fmt.Sprintf("52:54:00:00:01:%02x", i)}, fmt.Sprintf("10.0.3.%d/24", 10+i), "10.0.3.2", "rocky9"
		dns := []string{"10.0.3.3"}
		_, err := core.CreateHost(ctx, admin, provision.NewHost{Name: name, HostUpdate: provision.HostUpdate{
			MACs: &macs, IPv4: &ip, Gateway: &gw, DNS: &dns, Profile: &profile}})
		if err != nil {
			t.Fatal(err)
		}
		if bmcURL == "" {
			continue
		}
		if _, err := core.SetBMC(ctx, admin, name, host.BMCSettings{URL: bmcURL, Username: simUser, Password: simPass, Insecure: true}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJobAcrossReplicas: a job started on replica a is visible from
// replica b with its progress; while a heartbeats, b's sweep leaves it
// alone, even past the lease; once a stops mid-job, b's sweep fails every
// unfinished host, once, and finishes the job.
func TestJobAcrossReplicas(t *testing.T) {
	for _, driver := range storetest.Drivers {
		t.Run(driver, func(t *testing.T) { testJobAcrossReplicas(t, driver) })
	}
}

func testJobAcrossReplicas(t *testing.T, driver string) {
	const lease = 800 * time.Millisecond
	rs := newReplicas(t, driver, 2, lease)
	a, b := rs[0], rs[1]
	admin := person(t, "root", "admin")
	ctx := context.Background()

	// A BMC that never answers: the job's first host stays running (it
	// holds the BMC), the second queued behind it.
	release := make(chan struct{})
	hang := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	hang.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	addHosts(t, a.core, admin, hang.URL, "job01", "job02")

	job, err := a.core.StartBulk(ctx, admin, host.EventReimage, provision.BulkRequest{
		Selector: provision.BulkSelector{Names: []string{"job01", "job02", "ghost"}}, Via: "redfish"})
	if err != nil {
		t.Fatal(err)
	}
	// b sees the job and its progress.
	var got provision.Job
	waitFor(t, "b to see one host running, one queued, ghost failed", func() bool {
		got, err = b.core.GetJob(ctx, admin, job.ID)
		return err == nil && got.Counts[provision.JobRunning] == 1 && got.Counts[provision.JobQueued] == 1 &&
			got.Counts[provision.JobFailed] == 1
	})
	if got.Actor != admin.Actor() || got.Action != host.EventReimage || got.Via != "redfish" || len(got.Hosts) != 3 ||
		got.Hosts[0].Host != "job01" || got.Hosts[2].Host != "ghost" || !strings.Contains(got.Hosts[2].Error, "not found") {
		t.Errorf("b: GetJob = %+v", got)
	}
	list, err := b.core.ListJobs(ctx, admin)
	if err != nil || len(list) != 1 || list[0].ID != job.ID || list[0].Hosts != nil || list[0].Counts[provision.JobRunning] != 1 {
		t.Errorf("b: ListJobs = %+v, %v; want the job without hosts", list, err)
	}

	// a heartbeats: past the lease, b's sweep changes nothing.
	time.Sleep(lease + lease/2)
	b.core.SweepOnce(ctx)
	if got, _ = b.core.GetJob(ctx, admin, job.ID); got.Counts[provision.JobFailed] != 1 || !got.Finished.IsZero() {
		t.Fatalf("b's sweep while a runs the job: %+v", got)
	}

	// a dies mid-job; b's sweep after the lease fails the rest.
	a.stop()
	time.Sleep(lease + lease/2)
	if got, _ = a.core.GetJob(ctx, admin, job.ID); got.Counts[provision.JobFailed] != 1 {
		t.Errorf("a recorded its own stop: %+v (the sweep's to do)", got)
	}
	var wg sync.WaitGroup
	for range 3 { // sweeps of several replicas at once
		wg.Add(1)
		go func() { defer wg.Done(); b.core.SweepJobs(ctx) }()
	}
	wg.Wait()
	got, err = b.core.GetJob(ctx, admin, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Counts[provision.JobFailed] != 3 || got.Finished.IsZero() {
		t.Fatalf("after b's sweep: %+v, want every host failed and the job finished", got)
	}
	for _, h := range got.Hosts[:2] {
		if h.Error != provision.JobAbandoned || h.Finished.IsZero() {
			t.Errorf("host %s: %+v, want failed: %q", h.Host, h, provision.JobAbandoned)
		}
	}
	if !strings.Contains(got.Hosts[2].Error, "not found") {
		t.Errorf("ghost: %+v, want its own error kept", got.Hosts[2])
	}
	finished := got.Finished
	b.core.SweepJobs(ctx)
	if again, _ := b.core.GetJob(ctx, admin, job.ID); !again.Finished.Equal(finished) || again.Hosts[0].Finished != got.Hosts[0].Finished {
		t.Errorf("a second sweep changed the job: %+v", again)
	}
}

// TestMediaAcrossReplicas: an ISO published by replica a is served by
// replica b's media handler, byte for byte, with ranges and HEAD; once a
// ejects it, b answers 404.
func TestMediaAcrossReplicas(t *testing.T) {
	for _, driver := range storetest.Drivers {
		t.Run(driver, func(t *testing.T) { testMediaAcrossReplicas(t, driver) })
	}
}

func testMediaAcrossReplicas(t *testing.T, driver string) {
	rs := newReplicas(t, driver, 2, time.Minute)
	a, b := rs[0], rs[1]
	admin := person(t, "root", "admin")
	ctx := context.Background()
	sim := bmcsim.New(bmcsim.Config{Username: simUser, Password: simPass, PoweredOn: true})
	srv := httptest.NewTLSServer(sim)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	addHosts(t, a.core, admin, srv.URL, "med01")

	if _, err := a.core.InsertMedia(ctx, admin, "med01", "test"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(sim.CD().Image)
	if err != nil || !strings.Contains(u.Path, "/media/v1/med01.iso") {
		t.Fatalf("inserted image %q: %v", sim.CD().Image, err)
	}
	serve := func(r replica, method, rng string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, u.RequestURI(), nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		w := httptest.NewRecorder()
		r.core.MediaHandler().ServeHTTP(w, req)
		return w
	}
	fromA, fromB := serve(a, "GET", ""), serve(b, "GET", "")
	if fromA.Code != 200 || fromB.Code != 200 || !bytes.Equal(fromA.Body.Bytes(), fromB.Body.Bytes()) ||
		!bytes.HasPrefix(fromB.Body.Bytes(), []byte("ISO med01 ")) {
		t.Fatalf("GET from a = %d (%d bytes), from b = %d (%d bytes %.20q); want 200 and the same ISO",
			fromA.Code, fromA.Body.Len(), fromB.Code, fromB.Body.Len(), fromB.Body.Bytes())
	}
	iso := fromB.Body.Bytes()
	if w := serve(b, "GET", "bytes=16384-32767"); w.Code != 206 || !bytes.Equal(w.Body.Bytes(), iso[16384:32768]) {
		t.Errorf("ranged GET from b = %d, %d bytes; want 206 and bytes 16384-32767", w.Code, w.Body.Len())
	}
	if w := serve(b, "HEAD", ""); w.Code != 200 || w.Header().Get("Content-Length") != fmt.Sprint(len(iso)) || w.Body.Len() != 0 {
		t.Errorf("HEAD from b = %d, length %q, %d body bytes", w.Code, w.Header().Get("Content-Length"), w.Body.Len())
	}
	if err := a.core.EjectMedia(ctx, admin, "med01", "test"); err != nil {
		t.Fatal(err)
	}
	if w := serve(b, "GET", ""); w.Code != 404 {
		t.Errorf("GET from b after a ejected = %d, want 404", w.Code)
	}
}

// TestSweepAcrossReplicas: two replicas sweeping the same expired hosts at
// once time each out exactly once, with one audit record.
func TestSweepAcrossReplicas(t *testing.T) {
	for _, driver := range storetest.Drivers {
		t.Run(driver, func(t *testing.T) {
			rs := newReplicas(t, driver, 2, time.Minute)
			admin := person(t, "root", "admin")
			ctx := context.Background()
			names := []string{"swp01", "swp02", "swp03", "swp04"}
			addHosts(t, rs[0].core, admin, "", names...)
			for _, n := range names {
				_, err := rs[0].db.UpdateHost(ctx, n, func(h *host.Host) ([]host.Record, error) {
					h.State, h.Attempt, h.Deadline = host.StateInstalling, 1, time.Now().Add(-time.Minute)
					return nil, nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, r := range rs {
				wg.Add(1)
				go func() { defer wg.Done(); <-start; r.core.SweepOnce(ctx) }()
			}
			close(start)
			wg.Wait()
			for _, n := range names {
				h, err := rs[1].db.GetHost(ctx, n)
				if err != nil || h.State != host.StateFailed {
					t.Errorf("%s after the sweeps: %s, %v; want failed", n, h.State, err)
				}
				evs, err := rs[1].db.Events(ctx, n, 100)
				if err != nil {
					t.Fatal(err)
				}
				timeouts := 0
				for _, e := range evs {
					if e.Event == host.EventTimeout {
						timeouts++
					}
				}
				if timeouts != 1 {
					t.Errorf("%s: %d timeout records, want 1", n, timeouts)
				}
			}
		})
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
