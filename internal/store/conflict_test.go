package store_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

// TestConflictNamesOwner: every refused create or update says what is
// taken and by which host, and is a *host.ConflictError (an ErrConflict)
// without the store's wrapping, so the API can answer it as it is.
func TestConflictNamesOwner(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		n1 := testHost("node01", "52:54:00:00:00:01")
		n1.IPv4, n1.IPv6 = "10.0.2.15/24", "2001:db8::15/64"
		mustCreate(t, db, n1)
		n2 := testHost("node02", "52:54:00:00:00:02")
		n2.IPv4, n2.IPv6 = "10.0.2.1/24", "2001:db8::1/64" // prefixes of node01's as text
		mustCreate(t, db, n2)
		n3 := testHost("node03", "52:54:00:00:00:03")
		n3.IPv6 = ""
		mustCreate(t, db, n3)
		n4 := testHost("node04", "52:54:00:00:00:04")
		n4.IPv6 = "" // no IPv6 twice is no conflict
		mustCreate(t, db, n4)

		tests := []struct {
			name string
			mut  func(h *host.Host)
			want string
		}{
			{"name", func(h *host.Host) { h.Name = "node01" }, "host node01 already exists"},
			{"MAC", func(h *host.Host) { h.MACs = []string{"52:54:00:00:00:09", "52:54:00:00:00:01"} },
				"MAC 52:54:00:00:00:01 already belongs to host node01"},
			{"MAC other case", func(h *host.Host) { h.MACs = []string{"52:54:00:00:00:0A", "52:54:00:00:00:02"} },
				"MAC 52:54:00:00:00:02 already belongs to host node02"},
			{"IPv4", func(h *host.Host) { h.IPv4 = "10.0.2.15/24" }, "IPv4 address 10.0.2.15 is already used by host node01"},
			{"IPv4 other prefix", func(h *host.Host) { h.IPv4 = "10.0.2.15/16" }, "IPv4 address 10.0.2.15 is already used by host node01"},
			{"IPv6", func(h *host.Host) { h.IPv6 = "2001:db8::15/64" }, "IPv6 address 2001:db8::15 is already used by host node01"},
			{"IPv6 other prefix", func(h *host.Host) { h.IPv6 = "2001:db8::1/128" }, "IPv6 address 2001:db8::1 is already used by host node02"},
		}
		for _, tt := range tests {
			h := testHost("node09", "52:54:00:00:00:09")
			tt.mut(&h)
			_, err := db.CreateHost(ctx, h, host.Record{Actor: "admin", Action: "create"})
			var ce *host.ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, host.ErrConflict) || err.Error() != tt.want {
				t.Errorf("CreateHost(%s) = %v, want ConflictError %q", tt.name, err, tt.want)
			}
			if tt.name == "name" {
				continue
			}
			_, err = db.UpdateHost(ctx, "node04", func(h *host.Host) ([]host.Record, error) {
				tt.mut(h)
				h.Name = "node04"
				return []host.Record{{Actor: "admin", Action: "update"}}, nil
			})
			if !errors.As(err, &ce) || err.Error() != tt.want {
				t.Errorf("UpdateHost(node04, %s) = %v, want ConflictError %q", tt.name, err, tt.want)
			}
		}
		if _, err := db.GetHost(ctx, "node09"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetHost(node09) after refused creates = %v, want ErrNotFound", err)
		}
		if got := mustGet(t, db, "node04"); got.Version != 1 {
			t.Errorf("node04 after refused updates: version %d, want 1", got.Version)
		}
		// A host keeps its own addresses and MACs through an update, and
		// takes addresses nobody has.
		h, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			h.IPv4 = "10.0.2.15/16"
			h.MACs = append(h.MACs, "52:54:00:00:00:11")
			return nil, nil
		})
		if err != nil || h.IPv4 != "10.0.2.15/16" {
			t.Errorf("UpdateHost(node01, own address, new prefix) = %+v, %v", h, err)
		}
		if _, err := db.UpdateHost(ctx, "node04", func(h *host.Host) ([]host.Record, error) {
			h.IPv4, h.IPv6 = "10.0.2.16/24", "2001:db8::16/64"
			return nil, nil
		}); err != nil {
			t.Errorf("UpdateHost(node04, free addresses) = %v", err)
		}
	})
}

// TestEventFieldsAndLastError: an event's fields and a host's last error are
// stored and read back.
func TestEventFieldsAndLastError(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		_, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			h.LastError = `clean profile "agent-clean" does not exist`
			return []host.Record{{Actor: "admin", Action: "update", Fields: []string{"dns", "ipv4"}}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, db, "node01"); got.LastError != `clean profile "agent-clean" does not exist` {
			t.Errorf("LastError = %q", got.LastError)
		}
		evs, err := db.Events(ctx, "node01", 1)
		if err != nil || len(evs) != 1 || !slices.Equal(evs[0].Fields, []string{"dns", "ipv4"}) {
			t.Errorf("Events = %+v, %v; want fields [dns ipv4]", evs, err)
		}
	})
}

// TestMigrateV4 upgrades a database that predates v4: its hosts and events
// read back with an empty last error and no fields, and the duplicate
// address check works on the old rows.
func TestMigrateV4(t *testing.T) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			dsn := storetest.DSN(t, d)
			db := storetest.OpenDSN(t, dsn)
			mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
			db.Close()
			raw := rawOpen(t, d, dsn)
			drop := []string{"DROP INDEX idx_hosts_ipv4", "DROP INDEX idx_hosts_ipv6"}
			if d == store.DriverMySQL {
				drop = []string{"DROP INDEX idx_hosts_ipv4 ON hosts", "DROP INDEX idx_hosts_ipv6 ON hosts"}
			}
			for _, q := range append(drop, "ALTER TABLE hosts DROP COLUMN last_error", "ALTER TABLE events DROP COLUMN fields",
				"DELETE FROM schema_migrations WHERE version = 4") {
				if _, err := raw.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			raw.Close()
			db = storetest.OpenDSN(t, dsn)
			if v, err := db.SchemaVersion(ctx); err != nil || v != store.LatestSchema {
				t.Errorf("SchemaVersion after upgrade = %d, %v; want %d", v, err, store.LatestSchema)
			}
			if got := mustGet(t, db, "node01"); got.LastError != "" {
				t.Errorf("LastError after upgrade = %q, want empty", got.LastError)
			}
			if evs, err := db.Events(ctx, "node01", 0); err != nil || len(evs) != 1 || evs[0].Fields != nil || evs[0].Action != "create" {
				t.Errorf("Events after upgrade = %+v, %v; want the create event", evs, err)
			}
			h := testHost("node02", "52:54:00:00:00:02")
			h.IPv4 = testHost("", "52:54:00:00:00:01").IPv4
			if _, err := db.CreateHost(ctx, h, host.Record{}); !errors.Is(err, host.ErrConflict) {
				t.Errorf("CreateHost(node01's address) after upgrade = %v, want ErrConflict", err)
			}
		})
	}
}
