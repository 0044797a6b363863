package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/jackc/pgx/v5/pgconn"
	mssql "github.com/microsoft/go-mssqldb"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlserver"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// The column types the frozen migration models name in their tags are
// MySQL's (text, mediumtext). PostgreSQL and SQL Server get their own
// equivalents from the dialects below, and every string column compares
// byte by byte like MySQL's utf8mb4_bin: the store's LIKE searches are
// case-sensitive, and its index ranges ([s, s+"~"), ["A/", "A0")) assume
// ASCII order, which a locale collation such as en_US.UTF-8 does not keep.

// pgDialector is gorm's PostgreSQL dialect with string columns in the "C"
// collation and MySQL's text types mapped to text.
type pgDialector struct{ postgres.Dialector }

// Migrator returns gorm's PostgreSQL migrator with d's column types.
func (d pgDialector) Migrator(db *gorm.DB) gorm.Migrator {
	m := d.Dialector.Migrator(db).(postgres.Migrator)
	m.Dialector = d
	return m
}

// DataTypeOf returns the PostgreSQL type of field.
func (d pgDialector) DataTypeOf(field *schema.Field) string {
	switch strings.ToLower(string(field.DataType)) {
	case "text", "mediumtext", "longtext":
		return `text COLLATE "C"`
	case string(schema.String):
		return d.Dialector.DataTypeOf(field) + ` COLLATE "C"`
	}
	return d.Dialector.DataTypeOf(field)
}

// msDialector is gorm's SQL Server dialect with MySQL's text types mapped to
// nvarchar(MAX) (SQL Server's text is deprecated and cannot be compared).
// Binary collations are the database's choice on SQL Server (README).
type msDialector struct{ sqlserver.Dialector }

// Migrator returns gorm's SQL Server migrator with d's column types.
func (d msDialector) Migrator(db *gorm.DB) gorm.Migrator {
	m := d.Dialector.Migrator(db).(sqlserver.Migrator)
	m.Dialector = d
	return m
}

// Initialize sets up gorm's SQL Server dialect, then replaces FOR UPDATE
// (which T-SQL lacks) by the table hint WITH (UPDLOCK, ROWLOCK): the row
// stays locked until the transaction ends, as FOR UPDATE does elsewhere.
func (d msDialector) Initialize(db *gorm.DB) error {
	if err := d.Dialector.Initialize(db); err != nil {
		return err
	}
	db.ClauseBuilders["FOR"] = func(clause.Clause, clause.Builder) {} // written as a hint by FROM
	db.ClauseBuilders["FROM"] = msFrom
	return nil
}

// msFrom writes a FROM clause with the lock hint of the statement's
// Locking clause after its first table.
func msFrom(c clause.Clause, b clause.Builder) {
	from, _ := c.Expression.(clause.From)
	b.WriteString("FROM ")
	if len(from.Tables) > 0 {
		for i, t := range from.Tables {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteQuoted(t)
		}
	} else {
		b.WriteQuoted(clause.Table{Name: clause.CurrentTable})
	}
	if stmt, ok := b.(*gorm.Statement); ok {
		if lc, ok := stmt.Clauses["FOR"]; ok {
			if l, ok := lc.Expression.(clause.Locking); ok {
				switch strings.ToUpper(l.Strength) {
				case clause.LockingStrengthUpdate:
					b.WriteString(" WITH (UPDLOCK, ROWLOCK)")
				case clause.LockingStrengthShare:
					b.WriteString(" WITH (HOLDLOCK, ROWLOCK)")
				}
			}
		}
	}
	for _, j := range from.Joins {
		b.WriteByte(' ')
		j.Build(b)
	}
}

// DataTypeOf returns the SQL Server type of field.
func (d msDialector) DataTypeOf(field *schema.Field) string {
	switch strings.ToLower(string(field.DataType)) {
	case "text", "mediumtext", "longtext":
		return "nvarchar(MAX)"
	}
	return d.Dialector.DataTypeOf(field)
}

// postgresURL checks a postgres:// or postgresql:// URL and returns it with
// the settings the store relies on: UTC session time zone and a connect
// timeout unless one is given.
func postgresURL(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Hostname() == "" || strings.Trim(u.Path, "/") == "" {
		return "", host.Invalid("db", "postgres URL %s needs a host and a database", redact(dsn))
	}
	q := u.Query()
	q.Set("timezone", "UTC")
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "10")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// sqlserverURL checks a sqlserver:// URL (go-mssqldb's format).
func sqlserverURL(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Hostname() == "" {
		return "", host.Invalid("db", "sqlserver URL %s needs a host", redact(dsn))
	}
	return dsn, nil
}

// pgAdvisoryKey is the pg_advisory_xact_lock key that serializes
// migrations of replicas on one PostgreSQL database ("bootpilot" in ASCII).
const pgAdvisoryKey int64 = 0x626f6f7470696c6f

// lockMigrations takes the database-wide migration lock inside tx on the
// databases whose DDL is transactional (PostgreSQL, SQL Server); it is held
// until tx ends.
func lockMigrations(tx *gorm.DB, driver string) error {
	switch driver {
	case DriverPostgres:
		return tx.Exec("SELECT pg_advisory_xact_lock(?)", pgAdvisoryKey).Error
	case DriverSQLServer:
		return tx.Exec("EXEC sp_getapplock @Resource = 'bootpilot_migrate', @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 30000").Error
	}
	return fmt.Errorf("no transactional migration lock on %s", driver)
}

// migrateTx applies pending migrations in one transaction that holds the
// migration lock (PostgreSQL and SQL Server).
func (db *DB) migrateTx(ctx context.Context) error {
	return db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockMigrations(tx, db.driver); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		return applyMigrations(tx)
	})
}

// isUniqueViolation reports whether err is PostgreSQL's or SQL Server's
// duplicate key error.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var me mssql.Error
	if errors.As(err, &me) {
		return me.Number == 2627 || me.Number == 2601
	}
	return false
}

// retryableServer reports whether err is PostgreSQL's or SQL Server's
// deadlock, serialization failure or lock timeout.
func retryableServer(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03"
	}
	var me mssql.Error
	if errors.As(err, &me) {
		return me.Number == 1205 || me.Number == 1222
	}
	return false
}
