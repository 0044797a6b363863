package store_test

import (
	"testing"

	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

// TestMaxConns: --db-max-conns caps a server database's pool (each replica
// holds up to that many; PostgreSQL's default max_connections is 100).
func TestMaxConns(t *testing.T) {
	for _, d := range storetest.Drivers {
		if d == store.DriverSQLite {
			continue // SQLite's pool follows the CPUs
		}
		t.Run(d, func(t *testing.T) {
			dsn := storetest.DSN(t, d)
			for _, c := range []struct{ opt, want int }{{0, store.DefaultMaxConns}, {5, 5}} {
				db, err := store.Open(ctx, dsn, store.MaxConns(c.opt))
				if err != nil {
					t.Fatal(err)
				}
				if got := db.MaxOpenConns(); got != c.want {
					t.Errorf("MaxConns(%d): pool cap %d, want %d", c.opt, got, c.want)
				}
				db.Close()
			}
		})
	}
}
