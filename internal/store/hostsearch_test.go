package store_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

// TestListHostsSearch: search by name substring, IPv4 prefix and MAC
// prefix, label filters, orders, offsets and the changed-since filter, on
// each driver; LIKE wildcards in the search are literal.
func TestListHostsSearch(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		// web01..web04, db01..db02; web hosts team=lab, web01/web02 also site=dc1.
		for i, n := range []string{"web01", "web02", "web03", "web04", "db01", "db02"} {
			h := testHost(n, fmt.Sprintf("52:54:00:aa:0%d:%02x", i/4, i))
			h.IPv4 = fmt.Sprintf("10.%d.0.%d/24", 1+i/4, 10+i)
			h.IPv6 = ""
			if n[:3] == "web" {
				h.Labels = host.Labels{"team": "lab"}
				if n <= "web02" {
					h.Labels["site"] = "dc1"
				}
			}
			if n == "web03" || n == "db02" {
				h.State = host.StateFailed
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
			{store.HostFilter{Search: "eb0"}, []string{"web01", "web02", "web03", "web04"}},
			{store.HostFilter{Search: "DB"}, []string{"db01", "db02"}},
			{store.HostFilter{Search: "10.2.0."}, []string{"db01", "db02"}},
			{store.HostFilter{Search: "10.1.0.1"}, []string{"web01", "web02", "web03", "web04"}}, // .10 … .13
			{store.HostFilter{Search: "10.1.0.12"}, []string{"web03"}},
			{store.HostFilter{Search: "52:54:00:AA:01"}, []string{"db01", "db02"}},
			{store.HostFilter{Search: "52:54:00:aa:00:01"}, []string{"web02"}},
			{store.HostFilter{Search: "web_1"}, nil}, // _ is not a wildcard
			{store.HostFilter{Search: "%"}, nil},
			{store.HostFilter{Labels: map[string]string{"team": "lab"}}, []string{"web01", "web02", "web03", "web04"}},
			{store.HostFilter{Labels: map[string]string{"team": "lab", "site": "dc1"}}, []string{"web01", "web02"}},
			{store.HostFilter{Labels: map[string]string{"team": "ops"}}, nil},
			{store.HostFilter{Labels: map[string]string{"team": "lab"}, State: host.StateFailed}, []string{"web03"}},
			{store.HostFilter{Search: "web", Labels: map[string]string{"site": "dc1"}, Limit: 1, Offset: 1}, []string{"web02"}},
			{store.HostFilter{Names: []string{"db02", "web01", "nosuch"}}, []string{"db02", "web01"}},
			{store.HostFilter{Names: []string{}}, nil},
			{store.HostFilter{Offset: 4}, []string{"web03", "web04"}},
			{store.HostFilter{Offset: 2, Limit: 2}, []string{"web01", "web02"}},
		} {
			hs, err := db.ListHosts(ctx, tc.f)
			if err != nil {
				t.Fatalf("ListHosts(%+v): %v", tc.f, err)
			}
			if got := names(hs); !slices.Equal(got, tc.want) {
				t.Errorf("ListHosts(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		}

		hs, err := db.ListHosts(ctx, store.HostFilter{Sort: store.SortState})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := names(hs), []string{"db02", "web03", "db01", "web01", "web02", "web04"}; !slices.Equal(got, want) {
			t.Errorf("ListHosts(sort state) = %v, want %v", got, want)
		}

		// Changed since: only the hosts updated after the mark, most
		// recent first with SortUpdated.
		time.Sleep(5 * time.Millisecond)
		mark := time.Now()
		time.Sleep(5 * time.Millisecond)
		for _, n := range []string{"db01", "web04"} {
			if _, err := db.UpdateHost(ctx, n, func(h *host.Host) ([]host.Record, error) {
				h.State = host.StateReimage
				return nil, nil
			}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		hs, err = db.ListHosts(ctx, store.HostFilter{UpdatedAfter: mark, Sort: store.SortUpdated})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := names(hs), []string{"web04", "db01"}; !slices.Equal(got, want) {
			t.Errorf("ListHosts(updated after mark, sort updated) = %v, want %v", got, want)
		}
		hs, err = db.ListHosts(ctx, store.HostFilter{UpdatedAfter: time.Now().Add(time.Second)})
		if err != nil || len(hs) != 0 {
			t.Errorf("ListHosts(updated after the future) = %v, %v; want none", names(hs), err)
		}

		for _, f := range []store.HostFilter{{Sort: "size"}, {Sort: store.SortState, After: "a"}} {
			var ve *host.ValidationError
			if _, err := db.ListHosts(ctx, f); !errors.As(err, &ve) {
				t.Errorf("ListHosts(%+v) error = %v, want a validation error", f, err)
			}
		}
	})
}

// TestCountHostStates: counts by state under the filter, ignoring its
// state and paging; a scoped filter without scopes counts nothing.
func TestCountHostStates(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		for i := range 6 {
			h := testHost(fmt.Sprintf("c%02d", i), fmt.Sprintf("52:54:00:bb:00:%02x", i))
			if i%2 == 0 {
				h.Labels = host.Labels{"team": "lab"}
			}
			if i < 2 {
				h.State = host.StateFailed
			}
			mustCreate(t, db, h)
		}
		for _, tc := range []struct {
			f    store.HostFilter
			want map[host.State]int
		}{
			{store.HostFilter{}, map[host.State]int{host.StateFailed: 2, host.StateReady: 4}},
			{store.HostFilter{State: host.StateFailed, Limit: 1, Offset: 3}, map[host.State]int{host.StateFailed: 2, host.StateReady: 4}},
			{store.HostFilter{Labels: map[string]string{"team": "lab"}}, map[host.State]int{host.StateFailed: 1, host.StateReady: 2}},
			{store.HostFilter{Search: "c05"}, map[host.State]int{host.StateReady: 1}},
			{store.HostFilter{Scoped: true}, map[host.State]int{}},
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{{"team": "lab"}}}, map[host.State]int{host.StateFailed: 1, host.StateReady: 2}},
		} {
			got, err := db.CountHostStates(ctx, tc.f)
			if err != nil {
				t.Fatalf("CountHostStates(%+v): %v", tc.f, err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("CountHostStates(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		}
	})
}
