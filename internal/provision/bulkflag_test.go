package provision_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/store"
)

// TestBulkFlagOnly: a bulk job via "" flags each host of its explicit list
// by the rules of admin events and touches no BMC; cancel is a bulk event
// too (flag only); a host the state does not allow fails with the
// transition's words; via redfish with cancel, an unknown via and an
// unknown action are refused before anything runs.
func TestBulkFlagOnly(t *testing.T) {
	e := newBMCCore(t)
	ctx := context.Background()
	op := person(t, "alice", "operator")

	job, err := e.core.StartBulk(ctx, op, host.EventReimage,
		provision.BulkRequest{Reason: "lab refresh", Selector: provision.BulkSelector{Names: []string{"lab02", "lab01", "lab02"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := jobNames(job); !slices.Equal(got, []string{"lab02", "lab01"}) {
		t.Errorf("job hosts = %v, want [lab02 lab01] (the given list, in order, once each)", got)
	}
	if job.Via != "" {
		t.Errorf("job.Via = %q, want empty", job.Via)
	}
	for name, h := range jobHosts(e.waitJob(t, op, job.ID)) {
		if h.Status != provision.JobDone {
			t.Errorf("%s = %+v, want done", name, h)
		}
	}
	for _, name := range []string{"lab01", "lab02"} {
		h, _ := e.db.GetHost(ctx, name)
		if h.State != host.StateReimage {
			t.Errorf("%s is %s, want reimage", name, h.State)
		}
		if n := e.sims[name].State().Requests; n != 0 {
			t.Errorf("%s: %d BMC requests, want none (flag only)", name, n)
		}
		if ev := e.events(t, name)[0]; ev.Event != host.EventReimage || ev.Actor != "ldap:alice" || !strings.Contains(ev.Reason, "lab refresh") {
			t.Errorf("%s: last event %+v, want reimage by ldap:alice with the reason", name, ev)
		}
	}
	if h, _ := e.db.GetHost(ctx, "ops01"); h.State != host.StateReady {
		t.Errorf("ops01 is %s, want ready (not in the list)", h.State)
	}

	job, err = e.core.StartBulk(ctx, op, host.EventCancel,
		provision.BulkRequest{Selector: provision.BulkSelector{Names: []string{"lab01", "ops01"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := jobHosts(e.waitJob(t, op, job.ID))
	if got["lab01"].Status != provision.JobDone {
		t.Errorf("cancel lab01 = %+v, want done", got["lab01"])
	}
	if got["ops01"].Status != provision.JobFailed || got["ops01"].Error == "" {
		t.Errorf("cancel ops01 (ready) = %+v, want failed with the reason", got["ops01"])
	}
	if h, _ := e.db.GetHost(ctx, "lab01"); h.State != host.StateReady {
		t.Errorf("lab01 after cancel is %s, want ready", h.State)
	}

	for _, tc := range []struct {
		e    host.Event
		r    provision.BulkRequest
		want error
	}{
		{host.EventCancel, provision.BulkRequest{Via: "redfish", Selector: provision.BulkSelector{Names: []string{"lab01"}}}, &host.ValidationError{}},
		{host.EventReimage, provision.BulkRequest{Via: "pigeon", Selector: provision.BulkSelector{Names: []string{"lab01"}}}, &host.ValidationError{}},
		{host.EventHold, provision.BulkRequest{Selector: provision.BulkSelector{Names: []string{"lab01"}}}, host.ErrNotFound},
		{host.EventReimage, provision.BulkRequest{Reason: strings.Repeat("x", 1001), Selector: provision.BulkSelector{Names: []string{"lab01"}}}, &host.ValidationError{}},
	} {
		_, err := e.core.StartBulk(ctx, op, tc.e, tc.r)
		var ve *host.ValidationError
		if _, isVE := tc.want.(*host.ValidationError); isVE && !errors.As(err, &ve) || !isVE && !errors.Is(err, tc.want) {
			t.Errorf("StartBulk(%s, via %q) = %v, want %v", tc.e, tc.r.Via, err, tc.want)
		}
	}
	if h, _ := e.db.GetHost(ctx, "lab01"); h.State != host.StateReady {
		t.Errorf("lab01 after refused jobs is %s, want ready", h.State)
	}
}

// TestBulkNames: a filter resolves once to the names the caller may
// bulk-operate, in the filter's order; a list larger than the limit is
// refused; a host added afterwards is not in a job started with the list.
func TestBulkNames(t *testing.T) {
	e := newBMCCore(t)
	ctx := context.Background()
	labOp := person(t, "alice", "operator@team=lab", "viewer")

	names, err := e.core.BulkNames(ctx, labOp, store.HostFilter{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"lab01", "lab02"}) {
		t.Errorf("BulkNames(all) as operator@team=lab = %v, want [lab01 lab02]", names)
	}
	if _, err := e.core.BulkNames(ctx, labOp, store.HostFilter{}, 1); err == nil {
		t.Error("BulkNames over the limit: no error")
	}
	if _, err := e.core.BulkNames(ctx, person(t, "vera", "viewer"), store.HostFilter{}, 100); !errors.Is(err, host.ErrForbidden) {
		t.Errorf("BulkNames as a viewer = %v, want forbidden", err)
	}
	counts, err := e.core.CountHosts(ctx, labOp, store.HostFilter{Labels: map[string]string{"team": "lab"}})
	if err != nil || !maps.Equal(counts, map[host.State]int{host.StateReady: 2}) {
		t.Errorf("CountHosts(team=lab) = %v, %v; want ready: 2", counts, err)
	}

	// The data changes after the list was resolved: the job runs the list.
	macs, ip, gw, dns, lbl := []string{"52:54:00:00:00:09"}, "10.0.2.99/24", "10.0.2.2", []string{"10.0.2.3"}, host.Labels{"team": "lab"}
	if _, err := e.core.CreateHost(ctx, e.admin, provision.NewHost{Name: "lab03",
		HostUpdate: provision.HostUpdate{MACs: &macs, IPv4: &ip, Gateway: &gw, DNS: &dns, Labels: &lbl}}); err != nil {
		t.Fatal(err)
	}
	job, err := e.core.StartBulk(ctx, labOp, host.EventHold, provision.BulkRequest{Selector: provision.BulkSelector{Names: names}})
	if !errors.Is(err, host.ErrNotFound) {
		t.Errorf("bulk hold = %v, %v; want not found (not a bulk event)", job, err)
	}
	job, err = e.core.StartBulk(ctx, labOp, host.EventClean, provision.BulkRequest{Selector: provision.BulkSelector{Names: names}})
	if err != nil {
		t.Fatal(err)
	}
	if got := jobNames(e.waitJob(t, labOp, job.ID)); !slices.Equal(got, []string{"lab01", "lab02"}) {
		t.Errorf("job ran %v, want exactly [lab01 lab02]", got)
	}
	if h, _ := e.db.GetHost(ctx, "lab03"); h.State != host.StateReady {
		t.Errorf("lab03 (added after the list) is %s, want ready", h.State)
	}
}

func jobNames(j provision.Job) []string {
	var out []string
	for _, h := range j.Hosts {
		out = append(out, h.Host)
	}
	return out
}
