package store_test

import (
	"net/url"
	"sync"
	"testing"

	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

// TestOpenReplicasMigrateOnce starts replicas on one empty database at the
// same instant: the migration lock lets each migration run exactly once
// and every replica open.
func TestOpenReplicasMigrateOnce(t *testing.T) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			dsn := storetest.DSN(t, d)
			const replicas = 4
			start := make(chan struct{})
			var wg sync.WaitGroup
			errs := make([]error, replicas)
			dbs := make([]*store.DB, replicas)
			for i := range replicas {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					dbs[i], errs[i] = store.Open(ctx, dsn)
				}()
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("replica %d: Open: %v", i, err)
					continue
				}
				defer dbs[i].Close()
			}
			if t.Failed() {
				return
			}
			if n, err := dbs[0].Migrations(ctx); err != nil || n != store.LatestSchema {
				t.Errorf("Migrations = %d, %v; want %d (each applied once)", n, err, store.LatestSchema)
			}
		})
	}
}

// TestCheckWritePostgresReadOnly shows that CheckWrite fails on a
// PostgreSQL database that takes reads only (as a hot standby does).
func TestCheckWritePostgresReadOnly(t *testing.T) {
	dsn := storetest.DSN(t, store.DriverPostgres)
	db := storetest.OpenDSN(t, dsn)
	if err := db.CheckWrite(ctx); err != nil {
		t.Fatalf("CheckWrite on a writable database: %v", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("default_transaction_read_only", "on") // a session parameter
	u.RawQuery = q.Encode()
	// The database is migrated, so Open only reads.
	ro, err := store.Open(ctx, u.String())
	if err != nil {
		t.Fatalf("Open(read-only session): %v", err)
	}
	defer ro.Close()
	if err := ro.CheckWrite(ctx); err == nil {
		t.Error("CheckWrite on a read-only session succeeded, want an error")
	}
}

// TestOpenPostgresURL opens a postgresql:// URL (the other scheme libpq
// accepts) and refuses URLs without a host or database.
func TestOpenPostgresURL(t *testing.T) {
	for _, dsn := range []string{"postgres://", "postgres://127.0.0.1:5432", "postgresql:///db", "sqlserver://"} {
		if db, err := store.Open(ctx, dsn); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error", dsn)
		}
	}
	u, err := url.Parse(storetest.DSN(t, store.DriverPostgres))
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = "postgresql"
	db, err := store.Open(ctx, u.String())
	if err != nil {
		t.Fatalf("Open(postgresql URL): %v", err)
	}
	defer db.Close()
	if db.Driver() != store.DriverPostgres {
		t.Errorf("Driver() = %q, want %q", db.Driver(), store.DriverPostgres)
	}
}
