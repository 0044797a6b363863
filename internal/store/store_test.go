package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/go-sql-driver/mysql"
)

// each runs f on a fresh SQLite database and on a fresh MariaDB database.
func each(t *testing.T, f func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			db := storetest.Open(t, d)
			if got := db.Driver(); got != d {
				t.Fatalf("Driver() = %q, want %q", got, d)
			}
			f(t, db)
		})
	}
}

var ctx = context.Background()

// testHost returns a host with every field set. Its addresses come from the
// last three bytes of its first MAC, so hosts with different MACs do not
// share an address.
func testHost(name string, macs ...string) host.Host {
	var b [3]int
	if len(macs) > 0 {
		fmt.Sscanf(strings.ToLower(macs[0][9:]), "%x:%x:%x", &b[0], &b[1], &b[2])
	}
	return host.Host{
		Name:             name,
		MACs:             macs,
		IPv4:             fmt.Sprintf("10.%d.%d.%d/8", b[0], b[1], b[2]),
		Gateway:          "10.0.2.2",
		DNS:              []string{"10.0.2.3", "10.0.2.4"},
		IPv6:             fmt.Sprintf("2001:db8::%x:%x:%x/64", b[0], b[1], b[2]),
		Gateway6:         "2001:db8::1",
		VLAN:             42,
		Hostname:         name + "-os",
		Domain:           "example.org",
		Profile:          "",
		CleanThenInstall: true,
		State:            host.StateReady,
		Attempt:          0,
		Inventory: host.Inventory{MAC: "52:54:00:00:00:01", UUID: "u-1", Serial: "S1", Asset: "A1",
			Arch: "x86_64", Platform: "efi", SeenAt: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)},
		TokenHash:    "aa" + fmt.Sprintf("%062d", 1),
		CallbackHash: "bb" + fmt.Sprintf("%062d", 2),
		LastCallback: host.EventInstalled,
	}
}

func mustCreate(t testing.TB, db *store.DB, h host.Host) host.Host {
	t.Helper()
	got, err := db.CreateHost(ctx, h, host.Record{Actor: "admin", Action: "create"})
	if err != nil {
		t.Fatalf("CreateHost(%s): %v", h.Name, err)
	}
	return got
}

func mustGet(t testing.TB, db *store.DB, name string) host.Host {
	t.Helper()
	h, err := db.GetHost(ctx, name)
	if err != nil {
		t.Fatalf("GetHost(%s): %v", name, err)
	}
	return h
}

// sameHost compares hosts, times by instant.
func sameHost(t *testing.T, what string, got, want host.Host) {
	t.Helper()
	for _, p := range [][2]*time.Time{{&got.Deadline, &want.Deadline}, {&got.CreatedAt, &want.CreatedAt},
		{&got.UpdatedAt, &want.UpdatedAt}, {&got.Inventory.SeenAt, &want.Inventory.SeenAt}} {
		if !p[0].Equal(*p[1]) {
			t.Errorf("%s: time %v, want %v", what, *p[0], *p[1])
		}
		if !p[0].IsZero() && p[0].Location() != time.UTC {
			t.Errorf("%s: time %v is not UTC", what, *p[0])
		}
		*p[0], *p[1] = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s =\n%+v\nwant\n%+v", what, got, want)
	}
}

func TestHostCRUD(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		in := testHost("node01", "52:54:00:12:34:56", "52:54:00:aa:bb:01")
		in.State = host.StateInstalling
		in.Attempt = 2
		in.Deadline = time.Date(2030, 5, 6, 7, 8, 9, 987654000, time.UTC)
		before := time.Now().Add(-time.Second)
		created := mustCreate(t, db, in)
		if created.Version != 1 {
			t.Errorf("created.Version = %d, want 1", created.Version)
		}
		if created.CreatedAt.Before(before) || !created.UpdatedAt.Equal(created.CreatedAt) {
			t.Errorf("timestamps %v / %v, want now", created.CreatedAt, created.UpdatedAt)
		}
		want := in
		want.Version, want.CreatedAt, want.UpdatedAt = 1, created.CreatedAt, created.UpdatedAt
		sameHost(t, "CreateHost", created, want)

		sameHost(t, "GetHost", mustGet(t, db, "node01"), want)
		byMAC, err := db.GetHostByMAC(ctx, "52:54:00:AA:BB:01")
		if err != nil {
			t.Fatalf("GetHostByMAC: %v", err)
		}
		sameHost(t, "GetHostByMAC", byMAC, want)

		// A host with no optional fields round-trips to zero values.
		minimal := host.Host{Name: "node02", State: host.StateReady, MACs: []string{"52:54:00:00:00:02"}}
		mustCreate(t, db, minimal)
		got := mustGet(t, db, "node02")
		if got.DNS != nil || !got.Deadline.IsZero() || !got.Inventory.SeenAt.IsZero() || got.Profile != "" {
			t.Errorf("minimal host read back as %+v", got)
		}

		if err := db.DeleteHost(ctx, "node01", host.Record{Actor: "admin", Action: "delete"}); err != nil {
			t.Fatalf("DeleteHost: %v", err)
		}
		if _, err := db.GetHost(ctx, "node01"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetHost after delete: %v, want ErrNotFound", err)
		}
		if _, err := db.GetHostByMAC(ctx, "52:54:00:12:34:56"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetHostByMAC after delete: %v, want ErrNotFound", err)
		}
		evs, err := db.Events(ctx, "node01", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[0].Action != "delete" || evs[1].Action != "create" {
			t.Errorf("events after delete = %+v, want delete, create", evs)
		}
		// The MAC is free again.
		mustCreate(t, db, testHost("node03", "52:54:00:12:34:56"))
	})
}

func TestListHosts(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		if _, err := db.CreateProfile(ctx, host.Profile{Name: "rocky9", Installer: host.InstallerKickstart}); err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			h := testHost(fmt.Sprintf("n%02d", i), fmt.Sprintf("52:54:00:00:01:%02x", i), fmt.Sprintf("52:54:00:00:02:%02x", i))
			if i%3 == 0 {
				h.State = host.StateReimage
				h.Profile = "rocky9"
			}
			mustCreate(t, db, h)
		}
		names := func(hs []host.Host) []string {
			var out []string
			for _, h := range hs {
				out = append(out, h.Name)
			}
			return out
		}
		for _, tc := range []struct {
			f    store.HostFilter
			want []string
		}{
			{store.HostFilter{}, []string{"n00", "n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09", "n10", "n11"}},
			{store.HostFilter{Limit: 3}, []string{"n00", "n01", "n02"}},
			{store.HostFilter{After: "n02", Limit: 3}, []string{"n03", "n04", "n05"}},
			{store.HostFilter{After: "n10"}, []string{"n11"}},
			{store.HostFilter{After: "n11"}, nil},
			{store.HostFilter{State: host.StateReimage}, []string{"n00", "n03", "n06", "n09"}},
			{store.HostFilter{Profile: "rocky9", After: "n03", Limit: 1}, []string{"n06"}},
			{store.HostFilter{State: host.StateReady, Profile: "rocky9"}, nil},
		} {
			hs, err := db.ListHosts(ctx, tc.f)
			if err != nil {
				t.Fatalf("ListHosts(%+v): %v", tc.f, err)
			}
			if got := names(hs); !slices.Equal(got, tc.want) {
				t.Errorf("ListHosts(%+v) = %v, want %v", tc.f, got, tc.want)
			}
			for _, h := range hs {
				want := []string{"52:54:00:00:01:" + fmt.Sprintf("%02x", atoi(h.Name[1:])), "52:54:00:00:02:" + fmt.Sprintf("%02x", atoi(h.Name[1:]))}
				if !slices.Equal(h.MACs, want) {
					t.Errorf("ListHosts: %s has MACs %v, want %v", h.Name, h.MACs, want)
				}
			}
		}
	})
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// TestListHostsMany lists more hosts than fit one IN list, so the MACs come
// from the range query.
func TestListHostsMany(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		const n = 700
		createMany(t, db, n, 8)
		for _, f := range []store.HostFilter{{}, {State: host.StateReady}, {After: "h00010", Limit: 600}} {
			hs, err := db.ListHosts(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hs {
				if want := []string{macFor(atoi(h.Name[1:]))}; !slices.Equal(h.MACs, want) {
					t.Fatalf("ListHosts(%+v): %s has MACs %v, want %v", f, h.Name, h.MACs, want)
				}
			}
			wantN := n
			if f.Limit > 0 {
				wantN = f.Limit
			}
			if len(hs) != wantN {
				t.Errorf("ListHosts(%+v) returned %d hosts, want %d", f, len(hs), wantN)
			}
		}
	})
}

func macFor(i int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}

// createMany creates hosts h00000… with one MAC each, from workers
// goroutines.
func createMany(tb testing.TB, db *store.DB, n, workers int) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				h := testHost(fmt.Sprintf("h%05d", i), macFor(i))
				if _, err := db.CreateHost(ctx, h, host.Record{Actor: "admin", Action: "create"}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("CreateHost: %v", err)
	}
}

func TestConflicts(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		mustCreate(t, db, testHost("node02", "52:54:00:00:00:02"))

		if _, err := db.CreateHost(ctx, testHost("node01", "52:54:00:00:00:09"), host.Record{}); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateHost(duplicate name) = %v, want ErrConflict", err)
		}
		if _, err := db.CreateHost(ctx, testHost("node03", "52:54:00:00:00:03", "52:54:00:00:00:01"), host.Record{}); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateHost(MAC of node01) = %v, want ErrConflict", err)
		}
		// The failed create left nothing behind: not the host, not its first MAC.
		if _, err := db.GetHost(ctx, "node03"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetHost(node03) after failed create = %v, want ErrNotFound", err)
		}
		if _, err := db.GetHostByMAC(ctx, "52:54:00:00:00:03"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetHostByMAC(52:54:00:00:00:03) after failed create = %v, want ErrNotFound", err)
		}

		// Taking another host's MAC in an update conflicts and writes nothing.
		_, err := db.UpdateHost(ctx, "node02", func(h *host.Host) ([]host.Record, error) {
			h.MACs = append(h.MACs, "52:54:00:00:00:01")
			h.IPv4 = "10.9.9.9/24"
			return []host.Record{{Actor: "admin", Action: "update"}}, nil
		})
		if !errors.Is(err, host.ErrConflict) {
			t.Errorf("UpdateHost(MAC of node01) = %v, want ErrConflict", err)
		}
		got := mustGet(t, db, "node02")
		if got.Version != 1 || got.IPv4 != "10.0.0.2/8" || !slices.Equal(got.MACs, []string{"52:54:00:00:00:02"}) {
			t.Errorf("node02 after conflicting update = version %d ipv4 %s MACs %v, want unchanged", got.Version, got.IPv4, got.MACs)
		}
		if evs, _ := db.Events(ctx, "node02", 0); len(evs) != 1 {
			t.Errorf("node02 has %d events after conflicting update, want 1", len(evs))
		}
		if h, err := db.GetHostByMAC(ctx, "52:54:00:00:00:01"); err != nil || h.Name != "node01" {
			t.Errorf("GetHostByMAC(52:54:00:00:00:01) = %s, %v; want node01", h.Name, err)
		}
		// MACs are compared lower-cased.
		mustCreate(t, db, testHost("node04", "52:54:00:00:00:0A"))
		if h := mustGet(t, db, "node04"); !slices.Equal(h.MACs, []string{"52:54:00:00:00:0a"}) {
			t.Errorf("MACs stored as %v, want lower case", h.MACs)
		}
		if _, err := db.CreateHost(ctx, testHost("node05", "52:54:00:00:00:0a"), host.Record{}); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateHost(MAC of node04 in other case) = %v, want ErrConflict", err)
		}
		// Renaming is refused.
		_, err = db.UpdateHost(ctx, "node02", func(h *host.Host) ([]host.Record, error) { h.Name = "node09"; return nil, nil })
		var ve *host.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("UpdateHost(rename) = %v, want a ValidationError", err)
		}
	})
}

func TestNotFound(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		called := false
		checks := map[string]error{}
		_, checks["GetHost"] = db.GetHost(ctx, "nope")
		_, checks["GetHostByMAC"] = db.GetHostByMAC(ctx, "52:54:00:00:00:99")
		_, checks["UpdateHost"] = db.UpdateHost(ctx, "nope", func(*host.Host) ([]host.Record, error) { called = true; return nil, nil })
		checks["DeleteHost"] = db.DeleteHost(ctx, "nope", host.Record{})
		checks["SetInventory"] = db.SetInventory(ctx, "nope", host.Inventory{Arch: "x86_64"})
		_, checks["GetProfile"] = db.GetProfile(ctx, "nope")
		_, checks["UpdateProfile"] = db.UpdateProfile(ctx, "nope", func(*host.Profile) error { called = true; return nil })
		checks["DeleteProfile"] = db.DeleteProfile(ctx, "nope")
		_, checks["APITokenByHash"] = db.APITokenByHash(ctx, "00")
		for name, err := range checks {
			if !errors.Is(err, host.ErrNotFound) {
				t.Errorf("%s(unknown) = %v, want ErrNotFound", name, err)
			}
		}
		if called {
			t.Error("an update function was called for an unknown object")
		}
		evs, err := db.Events(ctx, "nope", 10)
		if err != nil || len(evs) != 0 {
			t.Errorf("Events(unknown) = %v, %v; want none", evs, err)
		}
	})
}

func TestUpdateHost(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		created := mustCreate(t, db, testHost("node01", "52:54:00:00:00:01", "52:54:00:00:00:02"))
		deadline := time.Now().Add(time.Hour)
		got, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			if h.Version != 1 {
				t.Errorf("fn sees version %d, want 1", h.Version)
			}
			h.State, h.Attempt, h.Deadline = host.StateInstalling, 1, deadline
			h.MACs = []string{"52:54:00:00:00:03", "52:54:00:00:00:01"}
			h.DNS = nil
			h.CallbackHash = ""
			return []host.Record{
				{Actor: "boot", Event: host.EventServe, From: host.StateReimage, To: host.StateInstalling, Attempt: 1, Reason: "served", RequestID: "r1"},
				{Actor: "boot", Action: "note", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
			}, nil
		})
		if err != nil {
			t.Fatalf("UpdateHost: %v", err)
		}
		if got.Version != 2 || got.UpdatedAt.Before(created.UpdatedAt) || !got.CreatedAt.Equal(created.CreatedAt) {
			t.Errorf("UpdateHost returned version %d created %v updated %v", got.Version, got.CreatedAt, got.UpdatedAt)
		}
		sameHost(t, "GetHost after UpdateHost", mustGet(t, db, "node01"), got)
		if !got.Deadline.Equal(deadline.UTC().Truncate(time.Microsecond)) {
			t.Errorf("deadline = %v, want %v", got.Deadline, deadline)
		}
		if _, err := db.GetHostByMAC(ctx, "52:54:00:00:00:02"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("removed MAC still finds a host: %v", err)
		}
		if h, err := db.GetHostByMAC(ctx, "52:54:00:00:00:03"); err != nil || h.Name != "node01" {
			t.Errorf("GetHostByMAC(new MAC) = %q, %v", h.Name, err)
		}
		if !slices.Equal(got.MACs, []string{"52:54:00:00:00:03", "52:54:00:00:00:01"}) {
			t.Errorf("MACs = %v, want the order given", got.MACs)
		}
		evs, err := db.Events(ctx, "node01", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 3 {
			t.Fatalf("%d events, want 3", len(evs))
		}
		serve := evs[1]
		if serve.Host != "node01" || serve.Event != host.EventServe || serve.From != host.StateReimage ||
			serve.To != host.StateInstalling || serve.Attempt != 1 || serve.Reason != "served" || serve.RequestID != "r1" ||
			serve.Actor != "boot" || !serve.Time.Equal(got.UpdatedAt) || serve.ID == 0 {
			t.Errorf("serve event = %+v", serve)
		}
		if note := evs[0]; note.Action != "note" || !note.Time.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("note event = %+v, want its own time kept", note)
		}

		// A no-op update still bumps the version.
		got, err = db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) { return nil, nil })
		if err != nil || got.Version != 3 {
			t.Errorf("no-op UpdateHost = version %d, %v; want 3", got.Version, err)
		}
	})
}

func TestUpdateHostFnError(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		boom := errors.New("boom")
		_, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			h.State = host.StateFailed
			h.MACs = nil
			return []host.Record{{Actor: "x"}}, fmt.Errorf("deciding: %w", boom)
		})
		if !errors.Is(err, boom) {
			t.Fatalf("UpdateHost = %v, want fn's error", err)
		}
		_, err = db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			_, err := host.Next(h.State, host.EventInstalled)
			return nil, err
		})
		if !errors.Is(err, host.ErrInvalidTransition) {
			t.Fatalf("UpdateHost = %v, want ErrInvalidTransition", err)
		}
		got := mustGet(t, db, "node01")
		if got.Version != 1 || got.State != host.StateReady || len(got.MACs) != 1 {
			t.Errorf("after failed fn: version %d state %s MACs %v; want unchanged", got.Version, got.State, got.MACs)
		}
		if evs, _ := db.Events(ctx, "node01", 0); len(evs) != 1 {
			t.Errorf("%d events after failed fn, want 1", len(evs))
		}
	})
}

// TestUpdateHostConcurrent increments a counter from many goroutines: no
// update may be lost.
func TestUpdateHostConcurrent(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				_, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
					h.Attempt++
					return []host.Record{{Actor: "test", Attempt: h.Attempt}}, nil
				})
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("UpdateHost: %v", err)
		}
		got := mustGet(t, db, "node01")
		if got.Attempt != n || got.Version != n+1 {
			t.Errorf("after %d increments: attempt %d version %d, want %d and %d", n, got.Attempt, got.Version, n, n+1)
		}
		evs, _ := db.Events(ctx, "node01", 0)
		var attempts []int
		for _, e := range evs[:len(evs)-1] {
			attempts = append(attempts, e.Attempt)
		}
		slices.Sort(attempts)
		for i, a := range attempts {
			if a != i+1 {
				t.Fatalf("event attempts %v, want 1..%d once each", attempts, n)
			}
		}
	})
}

// TestBootRace has many boots of one host race through the server's boot
// path: plan outside, then re-plan on the locked row and store the
// transition. Every attempt number must be served exactly once.
func TestBootRace(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		h := testHost("node01", "52:54:00:00:00:01")
		h.State = host.StateReimage
		mustCreate(t, db, h)
		policy := host.Policy{MaxAttempts: 100, InstallTimeout: time.Hour, CleanTimeout: time.Hour}
		const n = 50
		var (
			mu     sync.Mutex
			served []int
			wg     sync.WaitGroup
		)
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				cur, err := db.GetHost(ctx, "node01")
				if err != nil {
					errs <- err
					return
				}
				if plan := host.PlanBoot(cur, time.Now(), policy); plan.Action != host.ActionInstall {
					errs <- fmt.Errorf("first plan %+v, want install", plan)
					return
				}
				var plan host.BootPlan
				_, err = db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
					plan = host.PlanBoot(*h, time.Now(), policy)
					if plan.Event == "" {
						return nil, nil
					}
					to, err := host.Next(h.State, plan.Event)
					if err != nil {
						return nil, err
					}
					rec := host.Record{Actor: "boot", Event: plan.Event, From: h.State, To: to, Attempt: plan.Attempt, Reason: plan.Reason}
					h.State, h.Attempt, h.Deadline = to, plan.Attempt, plan.Deadline
					return []host.Record{rec}, nil
				})
				if err != nil {
					errs <- err
					return
				}
				if plan.Action == host.ActionInstall {
					mu.Lock()
					served = append(served, plan.Attempt)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("boot: %v", err)
		}
		slices.Sort(served)
		if len(served) != n {
			t.Errorf("%d installs served, want %d: %v", len(served), n, served)
		}
		for i, a := range served {
			if a != i+1 {
				t.Fatalf("served attempts %v, want 1..%d each exactly once", served, n)
			}
		}
		got := mustGet(t, db, "node01")
		if got.State != host.StateInstalling || got.Attempt != n || got.Version != n+1 {
			t.Errorf("host after race: state %s attempt %d version %d; want installing, %d, %d", got.State, got.Attempt, got.Version, n, n+1)
		}
	})
}

func TestSetInventory(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		inv := host.Inventory{MAC: "52:54:00:00:00:01", UUID: "4c4c4544-0000", Serial: "SN9", Arch: "arm64",
			Platform: "efi", SeenAt: time.Date(2026, 11, 22, 1, 2, 3, 456789000, time.FixedZone("x", 3600))}
		for range 2 { // the second, identical write must not look like "not found"
			if err := db.SetInventory(ctx, "node01", inv); err != nil {
				t.Fatalf("SetInventory: %v", err)
			}
		}
		got := mustGet(t, db, "node01")
		if got.Version != 1 {
			t.Errorf("version %d after SetInventory, want 1", got.Version)
		}
		if !got.Inventory.SeenAt.Equal(inv.SeenAt) || got.Inventory.SeenAt.Location() != time.UTC {
			t.Errorf("SeenAt = %v, want %v in UTC", got.Inventory.SeenAt, inv.SeenAt)
		}
		got.Inventory.SeenAt, inv.SeenAt = time.Time{}, time.Time{}
		if got.Inventory != inv {
			t.Errorf("Inventory = %+v, want %+v", got.Inventory, inv)
		}
		if evs, _ := db.Events(ctx, "node01", 0); len(evs) != 1 {
			t.Errorf("%d events after SetInventory, want 1", len(evs))
		}
	})
}

func TestEventsOrder(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		mustCreate(t, db, testHost("node02", "52:54:00:00:00:02"))
		for i := 1; i <= 5; i++ {
			for _, name := range []string{"node01", "node02"} {
				_, err := db.UpdateHost(ctx, name, func(h *host.Host) ([]host.Record, error) {
					return []host.Record{{Actor: "admin", Action: "update", Reason: fmt.Sprintf("r%d", i)}}, nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		evs, err := db.Events(ctx, "node01", 3)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			if e.Host != "node01" {
				t.Errorf("event of %s in node01's events", e.Host)
			}
			got = append(got, e.Reason)
		}
		if want := []string{"r5", "r4", "r3"}; !slices.Equal(got, want) {
			t.Errorf("Events(node01, 3) = %v, want %v", got, want)
		}
		all, _ := db.Events(ctx, "node01", 0)
		if len(all) != 6 || all[5].Action != "create" {
			t.Errorf("Events(node01, 0) has %d events ending %+v, want 6 ending with create", len(all), all[len(all)-1])
		}
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID || all[i].Time.After(all[i-1].Time) {
				t.Errorf("events not newest first: %+v before %+v", all[i-1], all[i])
			}
		}
	})
}

func TestExpiredHosts(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		base := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
		for i, c := range []struct {
			state    host.State
			deadline time.Time
		}{
			{host.StateInstalling, base.Add(-time.Hour)},           // e0: expired
			{host.StateInstalling, base.Add(time.Hour)},            // e1: running
			{host.StateCleaning, base.Add(-time.Microsecond)},      // e2: expired
			{host.StateCleaning, base},                             // e3: not before now
			{host.StateReady, base.Add(-time.Hour)},                // e4: not in an attempt
			{host.StateInstalling, time.Time{}},                    // e5: no deadline
			{host.StateFailed, base.Add(-24 * time.Hour)},          // e6
			{host.StateInstalling, base.Add(-30 * 24 * time.Hour)}, // e7: expired
		} {
			h := testHost(fmt.Sprintf("e%d", i), fmt.Sprintf("52:54:00:00:00:%02x", i))
			h.State, h.Deadline = c.state, c.deadline
			mustCreate(t, db, h)
		}
		hs, err := db.ExpiredHosts(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range hs {
			got = append(got, h.Name)
			if !host.Expired(h, base) || len(h.MACs) != 1 {
				t.Errorf("ExpiredHosts returned %s (state %s, deadline %v, MACs %v)", h.Name, h.State, h.Deadline, h.MACs)
			}
		}
		if want := []string{"e0", "e2", "e7"}; !slices.Equal(got, want) {
			t.Errorf("ExpiredHosts = %v, want %v", got, want)
		}
	})
}

func TestCountHosts(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		got, err := db.CountHosts(ctx)
		if err != nil || len(got) != 0 {
			t.Fatalf("CountHosts(empty) = %v, %v", got, err)
		}
		for i, s := range []host.State{host.StateReady, host.StateReady, host.StateFailed, host.StateReimage, host.StateReady} {
			h := testHost(fmt.Sprintf("c%d", i), fmt.Sprintf("52:54:00:00:00:%02x", i))
			h.State = s
			mustCreate(t, db, h)
		}
		got, err = db.CountHosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[host.State]int{host.StateReady: 3, host.StateFailed: 1, host.StateReimage: 1}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("CountHosts = %v, want %v", got, want)
		}
	})
}

func TestProfiles(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		p := host.Profile{
			Name: "rocky9", Kernel: "https://mirror.example/rocky9/vmlinuz",
			Initrds:   []string{"https://mirror.example/rocky9/initrd.img", "https://mirror.example/extra.img"},
			Cmdline:   "inst.repo=https://mirror.example/rocky9 console=ttyS0",
			Installer: host.InstallerKickstart, Config: "text\n{{.Host.Name}}\n", FlipOnServe: true,
			Image: "https://x/disk.raw.zst", ImageSHA256: fmt.Sprintf("%064d", 7), TargetDisk: "size>=100G", CleanMethod: "zero",
		}
		created, err := db.CreateProfile(ctx, p)
		if err != nil {
			t.Fatalf("CreateProfile: %v", err)
		}
		if created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
			t.Errorf("CreateProfile timestamps %v %v", created.CreatedAt, created.UpdatedAt)
		}
		if _, err := db.CreateProfile(ctx, host.Profile{Name: "rocky9"}); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateProfile(duplicate) = %v, want ErrConflict", err)
		}
		got, err := db.GetProfile(ctx, "rocky9")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, created) {
			t.Errorf("GetProfile =\n%+v\nwant\n%+v", got, created)
		}
		if _, err := db.CreateProfile(ctx, host.Profile{Name: "debian12", Installer: host.InstallerPreseed}); err != nil {
			t.Fatal(err)
		}
		all, err := db.ListProfiles(ctx)
		if err != nil || len(all) != 2 || all[0].Name != "debian12" || all[1].Name != "rocky9" {
			t.Errorf("ListProfiles = %+v, %v; want debian12, rocky9", all, err)
		}
		if all[0].Initrds != nil {
			t.Errorf("empty Initrds read back as %#v", all[0].Initrds)
		}

		boom := errors.New("boom")
		if _, err := db.UpdateProfile(ctx, "rocky9", func(p *host.Profile) error { p.Kernel = "x"; return boom }); !errors.Is(err, boom) {
			t.Errorf("UpdateProfile(fn error) = %v, want fn's error", err)
		}
		upd, err := db.UpdateProfile(ctx, "rocky9", func(p *host.Profile) error {
			p.Initrds = p.Initrds[:1]
			p.FlipOnServe = false
			p.Config = ""
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = db.GetProfile(ctx, "rocky9")
		if !reflect.DeepEqual(got, upd) || len(got.Initrds) != 1 || got.FlipOnServe || got.Config != "" ||
			got.Kernel != p.Kernel || !got.CreatedAt.Equal(created.CreatedAt) {
			t.Errorf("after UpdateProfile: %+v (returned %+v)", got, upd)
		}

		// Referenced profiles cannot be deleted.
		h := testHost("node01", "52:54:00:00:00:01")
		h.Profile = "rocky9"
		mustCreate(t, db, h)
		if err := db.DeleteProfile(ctx, "rocky9"); !errors.Is(err, host.ErrConflict) {
			t.Errorf("DeleteProfile(in use) = %v, want ErrConflict", err)
		}
		if _, err := db.GetProfile(ctx, "rocky9"); err != nil {
			t.Errorf("profile gone after refused delete: %v", err)
		}
		if _, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) { h.Profile = "debian12"; return nil, nil }); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteProfile(ctx, "rocky9"); err != nil {
			t.Errorf("DeleteProfile(unused) = %v", err)
		}
		if _, err := db.GetProfile(ctx, "rocky9"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetProfile after delete = %v, want ErrNotFound", err)
		}
	})
}

func TestAPITokens(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		if n, err := db.CountAPITokens(ctx); err != nil || n != 0 {
			t.Fatalf("CountAPITokens(empty) = %d, %v", n, err)
		}
		tok := host.APIToken{Name: "admin", Hash: fmt.Sprintf("%064d", 1), Role: "admin"}
		if err := db.CreateAPIToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAPIToken(ctx, host.APIToken{Name: "admin", Hash: fmt.Sprintf("%064d", 2), Role: "audit"}); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateAPIToken(duplicate name) = %v, want ErrConflict", err)
		}
		if err := db.CreateAPIToken(ctx, host.APIToken{Name: "other", Hash: tok.Hash, Role: "audit"}); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateAPIToken(duplicate hash) = %v, want ErrConflict", err)
		}
		if err := db.CreateAPIToken(ctx, host.APIToken{Name: "ci", Hash: fmt.Sprintf("%064d", 3), Role: "reimage"}); err != nil {
			t.Fatal(err)
		}
		got, err := db.APITokenByHash(ctx, tok.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "admin" || got.Role != "admin" || got.Hash != tok.Hash || got.CreatedAt.IsZero() {
			t.Errorf("APITokenByHash = %+v", got)
		}
		if n, err := db.CountAPITokens(ctx); err != nil || n != 2 {
			t.Errorf("CountAPITokens = %d, %v; want 2", n, err)
		}
	})
}

// TestReopen opens one database several times, twice at once: migrations
// run once and data survives.
func TestReopen(t *testing.T) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			dsn := storetest.DSN(t, d)
			var wg sync.WaitGroup
			dbs := make([]*store.DB, 3)
			errs := make([]error, 3)
			for i := range 3 {
				wg.Go(func() { dbs[i], errs[i] = store.Open(ctx, dsn) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("concurrent Open #%d: %v", i, err)
				}
			}
			mustCreate(t, dbs[0], testHost("node01", "52:54:00:00:00:01"))
			for _, db := range dbs {
				db.Close()
			}
			db := storetest.OpenDSN(t, dsn)
			if h := mustGet(t, db, "node01"); h.Version != 1 {
				t.Errorf("reopened host has version %d", h.Version)
			}
			v, err := db.SchemaVersion(ctx)
			if err != nil || v != store.LatestSchema {
				t.Errorf("SchemaVersion = %d, %v; want %d", v, err, store.LatestSchema)
			}
			if n, err := db.Migrations(ctx); err != nil || n != store.LatestSchema {
				t.Errorf("Migrations = %d, %v; want %d (each applied once)", n, err, store.LatestSchema)
			}
		})
	}
}

// TestOpenDSN covers the DSN forms Open accepts.
func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	for _, dsn := range []string{dir + "/a.db", dir + "/b.sqlite", "sqlite:" + dir + "/c"} {
		db, err := store.Open(ctx, dsn)
		if err != nil {
			t.Errorf("Open(%q): %v", dsn, err)
			continue
		}
		if db.Driver() != store.DriverSQLite {
			t.Errorf("Open(%q).Driver() = %q", dsn, db.Driver())
		}
		file := strings.TrimPrefix(dsn, "sqlite:")
		if _, err := os.Stat(file + "-wal"); err != nil {
			t.Errorf("Open(%q): no write-ahead log: %v", dsn, err)
		}
		db.Close()
	}
	for _, dsn := range []string{"", "sqlite:", "nonsense", "sqlite:" + dir + "/x.db?mode=ro", "mysql://"} {
		if db, err := store.Open(ctx, dsn); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error", dsn)
		}
	}
	t.Run("mysql-url", func(t *testing.T) {
		cfg, err := mysql.ParseDSN(storetest.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName, RawQuery: "timeout=5s"}
		if cfg.User != "" {
			u.User = url.UserPassword(cfg.User, cfg.Passwd)
			if cfg.Passwd == "" {
				u.User = url.User(cfg.User)
			}
		}
		db, err := store.Open(ctx, u.String())
		if err != nil {
			t.Fatalf("Open(mysql URL): %v", err)
		}
		defer db.Close()
		if db.Driver() != store.DriverMySQL {
			t.Errorf("Driver() = %q", db.Driver())
		}
		if err := db.Ping(ctx); err != nil {
			t.Error(err)
		}
	})
}
