package provision_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

const (
	simUser = "admin"
	simPass = "Sup3r-S3cret-BMC-pw"
)

// person is a directory user with these grants ("operator@team=lab").
func person(tb testing.TB, name string, grants ...string) provision.Caller {
	tb.Helper()
	id := auth.Identity{Name: name, Source: auth.SourceLDAP}
	for _, s := range grants {
		g, err := auth.ParseGrant(s)
		if err != nil {
			tb.Fatal(err)
		}
		id.Grants = append(id.Grants, g)
	}
	return provision.Caller{Identity: id, RequestID: "req-" + name, ClientAddr: "192.0.2.7"}
}

// bmcCore is a core with BMC operations on a real database, hosts lab01
// and lab02 (team=lab) and ops01 (team=ops), each with its own simulated
// BMC.
type bmcCore struct {
	core  *provision.Core
	db    *store.DB
	admin provision.Caller
	sims  map[string]*bmcsim.BMC
}

func newBMCCore(t *testing.T) *bmcCore {
	t.Helper()
	db := storetest.Open(t, "sqlite")
	core, err := provision.New(provision.Options{Store: db, ExternalURL: "https://127.0.0.1:8443", CleanProfile: "agent-clean",
		ISO: func(w io.Writer, h host.Host, tok string) error {
			_, err := fmt.Fprintf(w, "ISO %s %s", h.Name, tok)
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := secretbox.NewKey(bytes.Repeat([]byte{7}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	core.EnableBMC(provision.BMCOptions{Secrets: secretbox.NewKeyring(key), MediaKey: bytes.Repeat([]byte("k"), 32),
		Endpoint: func(ep *redfish.Endpoint) {
			ep.RetryBackoff, ep.MaxBackoff, ep.TaskPoll = time.Millisecond, 5*time.Millisecond, time.Millisecond
		}})
	e := &bmcCore{core: core, db: db, admin: person(t, "root", "admin"), sims: map[string]*bmcsim.BMC{}}
	ctx := context.Background()
	for _, p := range []host.Profile{
		{Name: "rocky9", Kernel: "https://mirror.example/rocky9/vmlinuz", Initrds: []string{"https://mirror.example/rocky9/initrd.img"},
			Installer: "kickstart"},
		{Name: "agent-clean", Kernel: "https://mirror.example/agent/vmlinuz", Initrds: []string{"https://mirror.example/agent/agent.cpio.gz"},
			Installer: "none", CleanMethod: "zero"},
	} {
		if _, err := core.CreateProfile(ctx, e.admin, p); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"lab01", "lab02", "ops01"} {
		macs, ip, gw, profile := []string{fmt.Sprintf("52:54:00:00:00:%02x", i+1)}, fmt.Sprintf("10.0.2.%d/24", 10+i), "10.0.2.2", "rocky9"
		labels, dns := host.Labels{"team": strings.TrimRight(name, "0123456789")}, []string{"10.0.2.3"}
		_, err := core.CreateHost(ctx, e.admin, provision.NewHost{Name: name, HostUpdate: provision.HostUpdate{
			MACs: &macs, IPv4: &ip, Gateway: &gw, DNS: &dns, Profile: &profile, Labels: &labels}})
		if err != nil {
			t.Fatal(err)
		}
		sim := bmcsim.New(bmcsim.Config{Username: simUser, Password: simPass, PoweredOn: true})
		srv := httptest.NewTLSServer(sim)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		t.Cleanup(srv.Close)
		e.sims[name] = sim
		if _, err := core.SetBMC(ctx, e.admin, name, host.BMCSettings{URL: srv.URL, Username: simUser, Password: simPass, Insecure: true}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// events returns host name's audit trail, newest first.
func (e *bmcCore) events(t *testing.T, name string) []host.Record {
	t.Helper()
	evs, err := e.db.Events(context.Background(), name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestBMCAuthorization: every BMC call authorizes first. A host outside the
// caller's grants is not found and one they see without the permission is
// forbidden — and then nothing reaches the BMC, the store or the audit
// trail. Allowed calls are audited under the caller's actor.
func TestBMCAuthorization(t *testing.T) {
	e := newBMCCore(t)
	ctx := context.Background()
	calls := []struct {
		name string
		perm auth.Permission
		call func(cl provision.Caller, h string) error
	}{
		{"GetBMC", auth.PermRead, func(cl provision.Caller, h string) error {
			b, err := e.core.GetBMC(ctx, cl, h)
			if err == nil && !b.HasPassword {
				return errors.New("GetBMC lost the password")
			}
			return err
		}},
		{"SetBMC", auth.PermEdit, func(cl provision.Caller, h string) error {
			b, err := e.core.GetBMC(ctx, e.admin, h)
			if err != nil {
				return err
			}
			_, err = e.core.SetBMC(ctx, cl, h, host.BMCSettings{URL: b.URL, Username: simUser, Insecure: true, Session: true})
			return err
		}},
		{"TestBMC", auth.PermOperate, func(cl provision.Caller, h string) error {
			_, err := e.core.TestBMC(ctx, cl, h)
			return err
		}},
		{"Power", auth.PermOperate, func(cl provision.Caller, h string) error {
			_, err := e.core.Power(ctx, cl, h, provision.PowerRequest{Action: "on", Reason: "test"})
			return err
		}},
		{"InsertMedia", auth.PermOperate, func(cl provision.Caller, h string) error {
			_, err := e.core.InsertMedia(ctx, cl, h, "test")
			return err
		}},
		{"EjectMedia", auth.PermOperate, func(cl provision.Caller, h string) error {
			return e.core.EjectMedia(ctx, cl, h, "test")
		}},
		{"DeleteBMC", auth.PermEdit, func(cl provision.Caller, h string) error {
			return e.core.DeleteBMC(ctx, cl, h)
		}},
	}
	callers := []provision.Caller{
		person(t, "viewer", "viewer@team=lab"),
		person(t, "operator", "operator@team=lab"),
		person(t, "editor", "editor@team=lab"),
	}
	for _, cl := range callers {
		for _, c := range calls {
			for _, h := range []string{"lab01", "ops01"} {
				var want error // nil: allowed
				switch {
				case h == "ops01":
					want = host.ErrNotFound
				case !cl.Can(c.perm, host.Labels{"team": "lab"}):
					want = host.ErrForbidden
				}
				sim := e.sims[h]
				reqs, evs := sim.State().Requests, len(e.events(t, h))
				err := c.call(cl, h)
				switch {
				case want == nil && err != nil:
					t.Errorf("%s(%s) as %s = %v, want allowed", c.name, h, cl.Actor(), err)
				case want != nil && !errors.Is(err, want):
					t.Errorf("%s(%s) as %s = %v, want %v", c.name, h, cl.Actor(), err, want)
				case want != nil:
					if n := sim.State().Requests - reqs; n != 0 {
						t.Errorf("refused %s(%s) as %s sent %d requests to the BMC", c.name, h, cl.Actor(), n)
					}
					if n := len(e.events(t, h)) - evs; n != 0 {
						t.Errorf("refused %s(%s) as %s wrote %d events", c.name, h, cl.Actor(), n)
					}
					if _, err := e.core.GetBMC(ctx, e.admin, h); err != nil {
						t.Errorf("after a refused %s(%s) as %s: GetBMC = %v", c.name, h, cl.Actor(), err)
					}
				case c.perm != auth.PermRead:
					if ev := e.events(t, h)[0]; ev.Actor != cl.Actor() || ev.RequestID != cl.RequestID || ev.ClientAddr != cl.ClientAddr {
						t.Errorf("%s(%s) as %s: last event %+v, want its actor, request id and address", c.name, h, cl.Actor(), ev)
					}
				}
				if c.name == "DeleteBMC" && err == nil { // put it back for the next caller
					if _, err := e.core.SetBMC(ctx, e.admin, h, host.BMCSettings{URL: "https://127.0.0.1:1", Username: simUser, Password: simPass}); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// waitJob polls job id as cl until it is finished.
func (e *bmcCore) waitJob(t *testing.T, cl provision.Caller, id string) provision.Job {
	t.Helper()
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		j, err := e.core.GetJob(context.Background(), cl, id)
		if err != nil {
			t.Fatalf("GetJob(%s) as %s = %v", id, cl.Actor(), err)
		}
		if !j.Finished.IsZero() {
			return j
		}
	}
	t.Fatalf("job %s did not finish", id)
	return provision.Job{}
}

func jobHosts(j provision.Job) map[string]provision.JobHost {
	m := map[string]provision.JobHost{}
	for _, h := range j.Hosts {
		m[h.Host] = h
	}
	return m
}

// TestBulkScoped: a bulk job only ever touches hosts its caller may
// operate. Names the caller cannot see fail exactly like names that do not
// exist; a visible host without the permission fails forbidden; a selector
// by state selects only among the hosts the caller may operate. Jobs show
// each caller only the hosts they see.
func TestBulkScoped(t *testing.T) {
	e := newBMCCore(t)
	ctx := context.Background()
	labOp := person(t, "alice", "operator@team=lab")
	mixed := person(t, "bob", "operator@team=lab", "viewer@team=ops")
	opsView := person(t, "carol", "viewer@team=ops")
	outsider := person(t, "dave", "viewer@team=none")
	opsEvents := len(e.events(t, "ops01"))

	if _, err := e.core.StartBulk(ctx, person(t, "eve", "viewer"), host.EventReimage,
		provision.BulkRequest{Via: "redfish", Selector: provision.BulkSelector{Names: []string{"lab01"}}}); !errors.Is(err, host.ErrForbidden) {
		t.Errorf("StartBulk as a viewer = %v, want forbidden", err)
	}

	job1, err := e.core.StartBulk(ctx, labOp, host.EventReimage,
		provision.BulkRequest{Via: "redfish", Reason: "fleet", Selector: provision.BulkSelector{Names: []string{"lab01", "ops01", "nosuch"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := jobHosts(e.waitJob(t, labOp, job1.ID))
	if h := got["lab01"]; h.Status != provision.JobDone {
		t.Errorf("lab01 in job 1 = %+v, want done", h)
	}
	hidden, missing := got["ops01"], got["nosuch"]
	if hidden.Status != provision.JobFailed || missing.Status != provision.JobFailed ||
		strings.ReplaceAll(hidden.Error, "ops01", "X") != strings.ReplaceAll(missing.Error, "nosuch", "X") || hidden.BMC != "" {
		t.Errorf("invisible host = %+v, missing host = %+v: want both failed, the same words", hidden, missing)
	}

	job2, err := e.core.StartBulk(ctx, mixed, host.EventReimage,
		provision.BulkRequest{Via: "redfish", Selector: provision.BulkSelector{State: host.StateReady}})
	if err != nil {
		t.Fatal(err)
	}
	if names := slices.Collect(func(yield func(string) bool) {
		for _, h := range job2.Hosts {
			yield(h.Host)
		}
	}); !slices.Equal(names, []string{"lab02"}) {
		t.Errorf("state=ready as operator@team=lab,viewer@team=ops selects %v, want [lab02]", names)
	}
	e.waitJob(t, mixed, job2.ID)

	job3, err := e.core.StartBulk(ctx, mixed, host.EventClean,
		provision.BulkRequest{Via: "redfish", Selector: provision.BulkSelector{Names: []string{"ops01"}}})
	if err != nil {
		t.Fatal(err)
	}
	if h := jobHosts(e.waitJob(t, mixed, job3.ID))["ops01"]; h.Status != provision.JobFailed || !strings.Contains(h.Error, "forbidden") {
		t.Errorf("ops01 as a viewer of it = %+v, want failed: forbidden", h)
	}

	for _, name := range []string{"lab01", "lab02"} {
		if h, _ := e.db.GetHost(ctx, name); h.State != host.StateReimage {
			t.Errorf("%s is %s, want reimage", name, h.State)
		}
	}
	if h, _ := e.db.GetHost(ctx, "ops01"); h.State != host.StateReady || e.sims["ops01"].State().Requests != 0 ||
		len(e.events(t, "ops01")) != opsEvents {
		t.Errorf("ops01: %s, %d BMC requests, %d new events; want untouched", h.State,
			e.sims["ops01"].State().Requests, len(e.events(t, "ops01"))-opsEvents)
	}

	// Jobs as others see them.
	j, err := e.core.GetJob(ctx, opsView, job1.ID)
	if err != nil || len(j.Hosts) != 1 || j.Hosts[0].Host != "ops01" || j.Counts[provision.JobFailed] != 1 || j.Counts[provision.JobDone] != 0 {
		t.Errorf("job 1 as a viewer of ops = %+v, %v; want only ops01", j, err)
	}
	if _, err := e.core.GetJob(ctx, opsView, job2.ID); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("job 2 (lab02 only) as a viewer of ops = %v, want not found", err)
	}
	if _, err := e.core.GetJob(ctx, outsider, job1.ID); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("job 1 as an outsider = %v, want not found", err)
	}
	for _, c := range []struct {
		cl   provision.Caller
		want []string
	}{
		{e.admin, []string{job1.ID, job2.ID, job3.ID}},
		{opsView, []string{job1.ID, job3.ID}},
		{outsider, nil},
	} {
		js, err := e.core.ListJobs(ctx, c.cl)
		var ids []string
		for _, j := range js {
			ids = append(ids, j.ID)
			if j.Hosts != nil {
				t.Errorf("ListJobs as %s shows hosts of job %s", c.cl.Actor(), j.ID)
			}
		}
		if err != nil || !slices.Equal(ids, c.want) {
			t.Errorf("ListJobs as %s = %v, %v; want %v", c.cl.Actor(), ids, err, c.want)
		}
	}
	if j, _ := e.core.GetJob(ctx, e.admin, job1.ID); len(j.Hosts) != 3 || j.Actor != labOp.Actor() {
		t.Errorf("job 1 as admin = %+v, want 3 hosts started by %s", j, labOp.Actor())
	}
	evs, err := e.db.ListEvents(ctx, store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(r host.Record) bool {
		return r.Action == "bulk" && r.Actor == labOp.Actor() && r.RequestID == labOp.RequestID && strings.Contains(r.Reason, job1.ID)
	}) {
		t.Errorf("no bulk event for job 1 by %s", labOp.Actor())
	}
}

// TestEjectAfterTransitionAsSystem: when a host with our media inserted
// becomes ready, the core ejects the media on its own, audited as
// system:bootpilot.
func TestEjectAfterTransitionAsSystem(t *testing.T) {
	e := newBMCCore(t)
	ctx := context.Background()
	op := person(t, "alice", "operator@team=lab")
	res, err := e.core.Act(ctx, op, "lab01", host.EventReimage, provision.ActionOptions{Via: "redfish"})
	if err != nil || res.Redfish == nil || !e.sims["lab01"].CD().Inserted {
		t.Fatalf("reimage via redfish = %+v, %v; CD %+v", res, err, e.sims["lab01"].CD())
	}
	if _, err := e.core.Act(ctx, op, "lab01", host.EventCancel, provision.ActionOptions{}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := e.core.GetBMC(ctx, op, "lab01"); err == nil && !b.MediaInserted {
			break
		}
		if time.Now().After(end) {
			t.Fatal("media not ejected after cancel")
		}
	}
	i := slices.IndexFunc(e.events(t, "lab01"), func(r host.Record) bool { return r.Action == "redfish-eject" })
	if i < 0 {
		t.Fatal("no redfish-eject event")
	}
	if ev := e.events(t, "lab01")[i]; ev.Actor != "system:bootpilot" {
		t.Errorf("eject after cancel by %q, want system:bootpilot", ev.Actor)
	}
	if e.sims["lab01"].CD().Inserted {
		t.Error("the CD is still inserted")
	}
}
