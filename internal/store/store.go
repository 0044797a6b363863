package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/glebarez/sqlite"
	mysqldrv "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlserver"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The drivers Driver reports.
const (
	DriverSQLite    = "sqlite"
	DriverMySQL     = "mysql"
	DriverPostgres  = "postgres"
	DriverSQLServer = "sqlserver"
)

// DB is bootpilot's database. It is safe for concurrent use.
type DB struct {
	gdb    *gorm.DB
	driver string

	// writeMu serializes write transactions inside this process on SQLite,
	// which has a single writer anyway: waiting on a mutex is cheaper and
	// fairer than SQLite's busy-timeout polling. Other processes on the same
	// file are still kept out by SQLite's own lock.
	writeMu sync.Mutex
}

// DefaultMaxConns is how many connections one server keeps to a MySQL,
// PostgreSQL or SQL Server database at most.
const DefaultMaxConns = 32

// Option tunes Open.
type Option func(*options)

type options struct{ maxConns int }

// MaxConns caps the connections to a server database (not SQLite, whose
// pool follows the CPUs); n < 1 keeps DefaultMaxConns. Every replica holds
// up to n, so the database must allow n × replicas plus other clients.
func MaxConns(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.maxConns = n
		}
	}
}

// MaxOpenConns reports the pool's cap (for tests and diagnostics).
func (db *DB) MaxOpenConns() int {
	sqlDB, err := db.gdb.DB()
	if err != nil {
		return 0
	}
	return sqlDB.Stats().MaxOpenConnections
}

// Open opens the database named by dsn and applies pending migrations.
//
// dsn is one of:
//   - "sqlite:/path/to/bootpilot.db", or a plain path ending in ".db" or
//     ".sqlite": SQLite with WAL, a busy timeout and immediate transactions;
//     the database and its -wal and -shm files are made mode 0600;
//   - "mysql://user:pass@host:3306/db?params": MySQL or MariaDB;
//   - a go-sql-driver DSN such as "user:pass@tcp(host:3306)/db?params";
//   - "postgres://user:pass@host:5432/db?sslmode=…" (or postgresql://):
//     PostgreSQL;
//   - "sqlserver://user:pass@host:1433?database=db": SQL Server (wired and
//     SQL-checked, not run against a server).
//
// MySQL connections always use parseTime, UTC and utf8mb4; PostgreSQL
// sessions use the UTC time zone.
func Open(ctx context.Context, dsn string, opts ...Option) (*DB, error) {
	o := options{maxConns: DefaultMaxConns}
	for _, opt := range opts {
		opt(&o)
	}
	driver, conn, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg := gormConfig()
	var dial gorm.Dialector
	switch driver {
	case DriverSQLite:
		if err := createSQLiteFile(sqlitePath(conn)); err != nil {
			return nil, err
		}
		dial = sqlite.Open(conn)
	case DriverPostgres:
		dial = pgDialector{*postgres.New(postgres.Config{DSN: conn}).(*postgres.Dialector)}
	case DriverSQLServer:
		dial = msDialector{*sqlserver.New(sqlserver.Config{DSN: conn}).(*sqlserver.Dialector)}
	default:
		dial = mysql.New(mysql.Config{DSN: conn})
	}
	gdb, err := gorm.Open(dial, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", driver, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", driver, err)
	}
	if driver == DriverSQLite {
		// WAL lets readers run beside the one writer.
		n := max(4, 2*runtime.GOMAXPROCS(0))
		sqlDB.SetMaxOpenConns(n)
		sqlDB.SetMaxIdleConns(n)
	} else {
		sqlDB.SetMaxOpenConns(o.maxConns)
		sqlDB.SetMaxIdleConns(o.maxConns)
		sqlDB.SetConnMaxLifetime(5 * time.Minute)
		sqlDB.SetConnMaxIdleTime(time.Minute)
	}
	db := &DB{gdb: gdb, driver: driver}
	if err := db.Ping(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	if err := db.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	if driver == DriverSQLite {
		if err := restrictSQLiteFiles(sqlitePath(conn)); err != nil {
			sqlDB.Close()
			return nil, err
		}
	}
	return db, nil
}

// gormConfig returns the gorm settings of every driver.
func gormConfig() *gorm.Config {
	return &gorm.Config{
		Logger:                 logger.Default.LogMode(logger.Silent), // never log SQL: rows carry token hashes
		NowFunc:                now,
		TranslateError:         true,
		SkipDefaultTransaction: true, // every multi-statement write has its own explicit transaction
		// Prepared statements skip parsing on every boot's queries; the LRU
		// bounds the cache (IN lists of varying length make new statements).
		PrepareStmt:        true,
		PrepareStmtMaxSize: 256,
		PrepareStmtTTL:     time.Hour,
	}
}

// parseDSN returns the driver and the driver-level connection string for dsn.
func parseDSN(dsn string) (driver, conn string, err error) {
	switch {
	case dsn == "":
		return "", "", host.Invalid("db", "no database given")
	case strings.HasPrefix(dsn, "sqlite:"):
		return sqliteDSN(strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		c, err := postgresURL(dsn)
		if err != nil {
			return "", "", err
		}
		return DriverPostgres, c, nil
	case strings.HasPrefix(dsn, "sqlserver://"):
		c, err := sqlserverURL(dsn)
		if err != nil {
			return "", "", err
		}
		return DriverSQLServer, c, nil
	case strings.HasPrefix(dsn, "mysql://"):
		c, err := mysqlURL(dsn)
		if err != nil {
			return "", "", err
		}
		return DriverMySQL, c, nil
	case strings.HasSuffix(dsn, ".db") || strings.HasSuffix(dsn, ".sqlite") || strings.HasSuffix(dsn, ".sqlite3"):
		return sqliteDSN(dsn)
	}
	cfg, err := mysqldrv.ParseDSN(dsn)
	if err != nil {
		return "", "", host.Invalid("db", "%s is neither sqlite:PATH, a .db file, mysql://…, postgres://…, sqlserver://… nor a MySQL DSN", redact(dsn))
	}
	return DriverMySQL, mysqlConfig(cfg).FormatDSN(), nil
}

func sqliteDSN(path string) (string, string, error) {
	path = strings.TrimPrefix(path, "//") // tolerate sqlite:///abs/path
	if path == "" || strings.ContainsAny(path, "?#") || path == ":memory:" {
		return "", "", host.Invalid("db", "sqlite needs a file path without '?' or '#', got %q", path)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "sqlite")
	return DriverSQLite, path + "?" + q.Encode(), nil
}

func mysqlURL(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", host.Invalid("db", "bad mysql URL %s", redact(dsn))
	}
	cfg := mysqldrv.NewConfig()
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Hostname() + ":3306"
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if cfg.DBName == "" || u.Hostname() == "" {
		return "", host.Invalid("db", "mysql URL %s needs a host and a database", redact(dsn))
	}
	// Let go-sql-driver parse the parameters.
	if u.RawQuery != "" {
		parsed, err := mysqldrv.ParseDSN("/" + cfg.DBName + "?" + u.RawQuery)
		if err != nil {
			return "", host.Invalid("db", "mysql URL %s: %v", redact(dsn), err)
		}
		parsed.User, parsed.Passwd, parsed.Net, parsed.Addr = cfg.User, cfg.Passwd, cfg.Net, cfg.Addr
		cfg = parsed
	}
	return mysqlConfig(cfg).FormatDSN(), nil
}

// mysqlConfig forces the settings the store relies on.
func mysqlConfig(cfg *mysqldrv.Config) *mysqldrv.Config {
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	// Affected rows = matched rows, so an UPDATE that changes nothing is
	// not mistaken for a missing row.
	cfg.ClientFoundRows = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["charset"]; !ok {
		cfg.Params["charset"] = "utf8mb4"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return cfg
}

// redact hides a password in a DSN for error messages.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	if at := strings.LastIndex(dsn, "@"); at >= 0 {
		if colon := strings.Index(dsn[:at], ":"); colon >= 0 {
			return dsn[:colon] + ":xxxxx" + dsn[at:]
		}
	}
	return dsn
}

// Close closes the database.
func (db *DB) Close() error {
	sqlDB, err := db.gdb.DB()
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	if err := sqlDB.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	sqlDB, err := db.gdb.DB()
	if err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping %s: %w", db.driver, err)
	}
	return nil
}

// CheckWrite proves the database accepts writes (not only reads): it
// rewrites the newest schema_migrations row in its own transaction. A
// read-only database, a full disk or a lost write lock make it fail.
func (db *DB) CheckWrite(ctx context.Context) error {
	err := db.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var v int
		if err := tx.Model(&schemaMigrationRow{}).Select("MAX(version)").Scan(&v).Error; err != nil {
			return err
		}
		return tx.Model(&schemaMigrationRow{}).Where("version = ?", v).Update("version", gorm.Expr("version")).Error
	})
	if err != nil {
		return fmt.Errorf("store: write check %s: %w", db.driver, err)
	}
	return nil
}

// Driver returns "sqlite", "mysql", "postgres" or "sqlserver".
func (db *DB) Driver() string { return db.driver }

// now is the store's clock: UTC, truncated to the microseconds both SQLite
// MySQL's datetime(6), PostgreSQL's timestamptz(6) and SQL Server's
// datetimeoffset(6) keep, so a value reads back exactly as written.
func now() time.Time { return utc(time.Now()) }

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// dbErr translates gorm's errors into the domain's sentinels.
func dbErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return host.ErrNotFound
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return host.ErrConflict
	}
	var me *mysqldrv.MySQLError
	if errors.As(err, &me) && me.Number == 1062 {
		return host.ErrConflict
	}
	if isUniqueViolation(err) {
		return host.ErrConflict
	}
	if strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return host.ErrConflict
	}
	return err
}

// retryable reports whether a transaction failed only because of lock
// contention (MySQL or SQL Server deadlock or lock wait timeout, PostgreSQL
// deadlock or serialization failure, SQLite busy) and can be
// run again as a whole.
func retryable(err error) bool {
	var me *mysqldrv.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205
	}
	if retryableServer(err) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "database is locked") || strings.Contains(s, "SQLITE_BUSY")
}

// write runs fn in one write transaction, retrying it a few times when it
// lost a deadlock. fn must therefore be safe to run again.
func (db *DB) write(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if db.driver == DriverSQLite {
		db.writeMu.Lock()
		defer db.writeMu.Unlock()
	}
	var err error
	for try := 0; try < 5; try++ {
		err = db.gdb.WithContext(ctx).Transaction(fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(try+1) * 5 * time.Millisecond)
	}
	return err
}

// read returns a session for reads outside transactions.
func (db *DB) read(ctx context.Context) *gorm.DB { return db.gdb.WithContext(ctx) }
