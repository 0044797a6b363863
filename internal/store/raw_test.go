package store_test

import (
	"database/sql"
	"strconv"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/store"
)

// rawOpen opens the database storetest.DSN made for driver d with
// database/sql, bypassing the store, to rewind its schema. It is closed
// when t ends.
func rawOpen(t *testing.T, d, dsn string) *sql.DB {
	t.Helper()
	driver, src := "sqlite", strings.TrimPrefix(dsn, "sqlite:")
	switch d {
	case store.DriverMySQL:
		driver, src = "mysql", dsn
	case store.DriverPostgres:
		driver, src = "pgx", dsn+"&timezone=UTC" // storetest's URLs have a query
	}
	raw, err := sql.Open(driver, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// bindVars rewrites the ? placeholders of q as $1, $2, … for PostgreSQL.
func bindVars(d, q string) string {
	if d != store.DriverPostgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
