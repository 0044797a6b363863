// Package storetest opens real databases for tests: a temporary SQLite file,
// or a fresh MariaDB/MySQL or PostgreSQL database that is dropped when the
// test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// DefaultMySQL is the server tests use unless BOOTPILOT_TEST_MYSQL names
// another (a go-sql-driver DSN; its database name is ignored).
const DefaultMySQL = "root@tcp(127.0.0.1:3306)/"

// DefaultPostgres is the server tests use unless BOOTPILOT_TEST_POSTGRES
// names another (a postgres:// URL; its database name is ignored).
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Drivers lists the drivers Open accepts, for tests that run on each.
var Drivers = []string{store.DriverSQLite, store.DriverMySQL, store.DriverPostgres}

// MySQLDSN creates a fresh database bootpilot_test_<random> on the test
// MariaDB/MySQL server, drops it when tb ends, and returns its DSN. When no
// server answers it calls testenv.Missing (a skip, or a failure in CI).
func MySQLDSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("BOOTPILOT_TEST_MYSQL")
	if base == "" {
		base = DefaultMySQL
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		tb.Fatalf("BOOTPILOT_TEST_MYSQL: %v", err)
	}
	cfg.DBName = ""
	cfg.Timeout = 5 * time.Second
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatalf("open %s: %v", cfg.Addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		testenv.Missing(tb, "MariaDB/MySQL at %s (set BOOTPILOT_TEST_MYSQL): %v", cfg.Addr, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "bootpilot_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		admin.Close()
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// PostgresDSN creates a fresh database bootpilot_test_<random> on the test
// PostgreSQL server, drops it when tb ends, and returns its postgres:// URL.
// When no server answers it calls testenv.Missing (a skip, or a failure in
// CI).
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("BOOTPILOT_TEST_POSTGRES")
	if base == "" {
		base = DefaultPostgres
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql" {
		tb.Fatalf("BOOTPILOT_TEST_POSTGRES: want a postgres:// URL, got %q", base)
	}
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "5")
	}
	u.RawQuery = q.Encode()
	admin, err := sql.Open("pgx", u.String())
	if err != nil {
		tb.Fatalf("open %s: %v", u.Host, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		testenv.Missing(tb, "PostgreSQL at %s (set BOOTPILOT_TEST_POSTGRES): %v", u.Host, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "bootpilot_test_" + hex.EncodeToString(b)
	// A linguistic default collation (ICU en-US: case-insensitive order,
	// '~' before letters and digits), as an operator's database may have:
	// the store's string columns must bring their own byte order.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+
		" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"); err != nil {
		admin.Close()
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// DSN returns a DSN for a fresh, empty database of driver (one of
// Drivers), removed when tb ends.
func DSN(tb testing.TB, driver string) string {
	tb.Helper()
	switch driver {
	case store.DriverSQLite:
		return "sqlite:" + filepath.Join(tb.TempDir(), "bootpilot.db")
	case store.DriverMySQL:
		return MySQLDSN(tb)
	case store.DriverPostgres:
		return PostgresDSN(tb)
	}
	tb.Fatalf("storetest: unknown driver %q", driver)
	return ""
}

// Open opens a fresh, migrated database of driver (one of Drivers) and
// closes it when tb ends.
func Open(tb testing.TB, driver string) *store.DB {
	tb.Helper()
	return OpenDSN(tb, DSN(tb, driver))
}

// OpenDSN opens dsn with store.Open and closes it when tb ends.
func OpenDSN(tb testing.TB, dsn string) *store.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return db
}
