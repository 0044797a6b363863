package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/driver/sqlserver"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// No SQL Server engine runs in these tests. The T-SQL gorm generates for
// SQL Server is checked instead against golden files in testdata/sqlserver:
// the migrations as they run on an empty database, and, with gorm's DryRun
// mode, the statements of every method of DB (TestSQLServerCoversDB makes
// sure a new method gets a case). Regenerate with -update and review the
// diff.

// sqlserverCases calls every method of DB that issues SQL, once, with
// plausible arguments. In DryRun mode reads find zero rows without an
// error, so each method runs its path for an existing row.
var sqlserverCases = map[string]func(ctx context.Context, db *DB) error{
	"CreateAPIToken": func(ctx context.Context, db *DB) error {
		return db.CreateAPIToken(ctx, host.APIToken{Name: "ci", Hash: "h", Role: "admin"})
	},
	"APITokenByHash": func(ctx context.Context, db *DB) error { _, err := db.APITokenByHash(ctx, "h"); return err },
	"CountAPITokens": func(ctx context.Context, db *DB) error { _, err := db.CountAPITokens(ctx); return err },
	"AppendEvents": func(ctx context.Context, db *DB) error {
		return db.AppendEvents(ctx, host.Record{Actor: "local:admin", Event: "login"})
	},
	"ListEvents": func(ctx context.Context, db *DB) error {
		_, err := db.ListEvents(ctx, AuditFilter{Host: "node01", Actor: "local:admin", Limit: 10})
		return err
	},
	"PruneEvents": func(ctx context.Context, db *DB) error { _, err := db.PruneEvents(ctx, sqlTime); return err },
	"SetBMC": func(ctx context.Context, db *DB) error {
		return db.SetBMC(ctx, "node01", BMC{URL: "https://10.0.0.10", Username: "u", SealedPassword: "s"}, host.Record{Actor: "a", Event: "bmc"})
	},
	"GetBMC": func(ctx context.Context, db *DB) error { _, err := db.GetBMC(ctx, "node01"); return err },
	"DeleteBMC": func(ctx context.Context, db *DB) error {
		return db.DeleteBMC(ctx, "node01", host.Record{Actor: "a", Event: "bmc"})
	},
	"SetBMCMedia": func(ctx context.Context, db *DB) error {
		return db.SetBMCMedia(ctx, "node01", true, host.Record{Actor: "a", Event: "media"})
	},
	"RotateBMCPasswords": func(ctx context.Context, db *DB) error {
		_, err := db.RotateBMCPasswords(ctx, func(name, sealed string) (string, error) { return sealed, nil })
		return err
	},
	"CreateHost": func(ctx context.Context, db *DB) error {
		h := host.Host{Name: "node01", MACs: []string{"52:54:00:00:00:01"}, IPv4: "10.0.2.15/24", IPv6: "fd00::15/64",
			Labels: map[string]string{"team": "lab"}, State: host.StateReady}
		_, err := db.CreateHost(ctx, h, host.Record{Actor: "a", Event: "create"})
		return err
	},
	"GetHost": func(ctx context.Context, db *DB) error { _, err := db.GetHost(ctx, "node01"); return err },
	"GetHostByMAC": func(ctx context.Context, db *DB) error {
		_, err := db.GetHostByMAC(ctx, "52:54:00:00:00:01")
		return err
	},
	"ListHosts": func(ctx context.Context, db *DB) error {
		_, err := db.ListHosts(ctx, HostFilter{State: host.StateReady, Profile: "debian", After: "node00", Limit: 50,
			Search: "10.0.2.", Labels: map[string]string{"team": "lab"}, UpdatedAfter: sqlTime})
		return err
	},
	"UpdateHost": func(ctx context.Context, db *DB) error {
		_, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			h.Name = "node01" // DryRun reads fill nothing
			h.MACs = []string{"52:54:00:00:00:02"}
			h.IPv4 = "10.0.2.16/24"
			h.Labels = map[string]string{"team": "ops"}
			return []host.Record{{Actor: "a", Event: "update"}}, nil
		})
		return err
	},
	"DeleteHost": func(ctx context.Context, db *DB) error {
		return db.DeleteHost(ctx, "node01", host.Record{Actor: "a", Event: "delete"})
	},
	"SetInventory": func(ctx context.Context, db *DB) error {
		return db.SetInventory(ctx, "node01", host.Inventory{MAC: "52:54:00:00:00:01", SeenAt: sqlTime})
	},
	"Events":       func(ctx context.Context, db *DB) error { _, err := db.Events(ctx, "node01", 20); return err },
	"ExpiredHosts": func(ctx context.Context, db *DB) error { _, err := db.ExpiredHosts(ctx, sqlTime); return err },
	"CountHosts":   func(ctx context.Context, db *DB) error { _, err := db.CountHosts(ctx); return err },
	"CountHostStates": func(ctx context.Context, db *DB) error {
		_, err := db.CountHostStates(ctx, HostFilter{Search: "node"})
		return err
	},
	"SchemaVersion": func(ctx context.Context, db *DB) error { _, err := db.SchemaVersion(ctx); return err },
	"Migrations":    func(ctx context.Context, db *DB) error { _, err := db.Migrations(ctx); return err },
	"CheckWrite":    func(ctx context.Context, db *DB) error { return db.CheckWrite(ctx) },
	"CreateProfile": func(ctx context.Context, db *DB) error {
		_, err := db.CreateProfile(ctx, host.Profile{Name: "debian"})
		return err
	},
	"GetProfile":    func(ctx context.Context, db *DB) error { _, err := db.GetProfile(ctx, "debian"); return err },
	"ListProfiles":  func(ctx context.Context, db *DB) error { _, err := db.ListProfiles(ctx); return err },
	"DeleteProfile": func(ctx context.Context, db *DB) error { return db.DeleteProfile(ctx, "debian") },
	"TokenByHash":   func(ctx context.Context, db *DB) error { _, err := db.TokenByHash(ctx, "h"); return err },
	"GetToken":      func(ctx context.Context, db *DB) error { _, err := db.GetToken(ctx, 7); return err },
	"TouchToken":    func(ctx context.Context, db *DB) error { return db.TouchToken(ctx, 7, sqlTime) },
	"DeleteExpiredTokens": func(ctx context.Context, db *DB) error {
		_, err := db.DeleteExpiredTokens(ctx, sqlTime)
		return err
	},
	"UpdateProfile": func(ctx context.Context, db *DB) error {
		_, err := db.UpdateProfile(ctx, "debian", func(p *host.Profile) error {
			p.Name, p.Cmdline = "debian", "quiet" // DryRun reads fill nothing
			return nil
		})
		return err
	},
	"CreateToken": func(ctx context.Context, db *DB) error {
		_, err := db.CreateToken(ctx, auth.Token{Name: "ci", Kind: auth.TokenService, Hash: "h"}, host.Record{Actor: "a", Event: "token"})
		return err
	},
	"ListTokens": func(ctx context.Context, db *DB) error {
		_, err := db.ListTokens(ctx, TokenFilter{Owner: "ldap:alice", Kinds: []auth.TokenKind{auth.TokenPersonal}})
		return err
	},
	"RevokeToken": func(ctx context.Context, db *DB) error {
		return db.RevokeToken(ctx, 7, sqlTime, host.Record{Actor: "a", Event: "token"})
	},
	"RevokeOwnerTokens": func(ctx context.Context, db *DB) error {
		_, err := db.RevokeOwnerTokens(ctx, "ldap:alice", []auth.TokenKind{auth.TokenSession}, sqlTime, host.Record{Actor: "a", Event: "token"})
		return err
	},
	"CreateUser": func(ctx context.Context, db *DB) error {
		return db.CreateUser(ctx, auth.User{Name: "alice", Source: auth.SourceLocal}, host.Record{Actor: "a", Event: "user"})
	},
	"GetUser": func(ctx context.Context, db *DB) error {
		_, err := db.GetUser(ctx, auth.SourceLocal, "alice")
		return err
	},
	"ListUsers": func(ctx context.Context, db *DB) error { _, err := db.ListUsers(ctx); return err },
	"UpdateUser": func(ctx context.Context, db *DB) error {
		_, err := db.UpdateUser(ctx, auth.SourceLocal, "alice", func(u *auth.User) error {
			u.Source, u.Name, u.Disabled = auth.SourceLocal, "alice", true // DryRun reads fill nothing
			return nil
		},
			host.Record{Actor: "a", Event: "user"})
		return err
	},
	"DeleteUser": func(ctx context.Context, db *DB) error {
		return db.DeleteUser(ctx, auth.SourceLocal, "alice", host.Record{Actor: "a", Event: "user"})
	},
	"UpsertDirectoryUser": func(ctx context.Context, db *DB) error {
		_, err := db.UpsertDirectoryUser(ctx, auth.User{Name: "alice", Source: auth.SourceLDAP, DN: "CN=Alice"})
		return err
	},
}

var sqlTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestSQLServerCoversDB fails when a method of DB has no SQL Server case.
func TestSQLServerCoversDB(t *testing.T) {
	noSQL := []string{"Close", "Ping", "Driver", "MaxOpenConns"} // database/sql calls, no statements
	typ := reflect.TypeOf(&DB{})
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		if _, ok := sqlserverCases[name]; !ok && !slices.Contains(noSQL, name) {
			t.Errorf("DB.%s has no case in sqlserverCases: its SQL Server statements are not checked", name)
		}
	}
}

// TestSQLServerMigrations runs the migrations on an empty SQL Server
// database as seen through a recording connection and compares the
// statements with testdata/sqlserver/migrate.sql.
func TestSQLServerMigrations(t *testing.T) {
	db, stmts := sqlserverDB(t, false)
	if err := db.migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	checkGolden(t, "migrate", *stmts)
}

// TestSQLServerQueries compares the statements of every method of DB, built
// by gorm's DryRun mode, with testdata/sqlserver/<Method>.sql.
func TestSQLServerQueries(t *testing.T) {
	names := make([]string, 0, len(sqlserverCases))
	for name := range sqlserverCases {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			db, stmts := sqlserverDB(t, true)
			err := sqlserverCases[name](context.Background(), db)
			out := *stmts
			if err != nil {
				out = append(out, "-- error: "+err.Error())
			}
			if len(*stmts) == 0 {
				t.Fatalf("%s issued no statement (err %v)", name, err)
			}
			checkGolden(t, name, out)
		})
	}
	// A golden file of a method that no longer exists is stale.
	files, _ := filepath.Glob(filepath.Join("testdata", "sqlserver", "*.sql"))
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".sql")
		if _, ok := sqlserverCases[base]; !ok && base != "migrate" {
			t.Errorf("%s belongs to no case: delete it", f)
		}
	}
}

// savepointRE matches gorm's savepoint names (made of a pointer).
var savepointRE = regexp.MustCompile(`sp0x[0-9a-f]+`)

func checkGolden(t *testing.T, name string, stmts []string) {
	t.Helper()
	var b strings.Builder
	for _, s := range stmts {
		b.WriteString(strings.TrimSuffix(savepointRE.ReplaceAllString(s, "spN"), ";"))
		b.WriteString(";\n")
	}
	path := filepath.Join("testdata", "sqlserver", name+".sql")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file missing (go test ./internal/store -run SQLServer -update): %v", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("%s is stale (review, then -update):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// sqlserverDB returns a DB with the SQL Server dialect on a connection that
// answers every query with no rows, and the statements it issues.
func sqlserverDB(t *testing.T, dryRun bool) (*DB, *[]string) {
	t.Helper()
	pool := sql.OpenDB(recConnector{})
	t.Cleanup(func() { pool.Close() })
	cfg := gormConfig()
	cfg.DryRun = dryRun
	cfg.DisableAutomaticPing = true
	cfg.Logger = logger.Default.LogMode(logger.Silent)
	dial := msDialector{*sqlserver.New(sqlserver.Config{Conn: pool}).(*sqlserver.Dialector)}
	gdb, err := gorm.Open(dial, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	record := func(tx *gorm.DB) {
		if tx.Statement.SQL.Len() > 0 {
			stmts = append(stmts, tx.Statement.SQL.String())
		}
	}
	cb := gdb.Callback()
	for _, err := range []error{
		cb.Create().Register("bootpilot:record", record),
		cb.Query().Register("bootpilot:record", record),
		cb.Update().Register("bootpilot:record", record),
		cb.Delete().Register("bootpilot:record", record),
		cb.Row().Register("bootpilot:record", record),
		cb.Raw().Register("bootpilot:record", record),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return &DB{gdb: gdb, driver: DriverSQLServer}, &stmts
}

// recConnector is a database/sql connector whose connections run nothing:
// statements succeed, queries return no rows.
type recConnector struct{}

func (recConnector) Connect(context.Context) (driver.Conn, error) { return recConn{}, nil }
func (recConnector) Driver() driver.Driver                        { return recDriver{} }

type recDriver struct{}

func (recDriver) Open(string) (driver.Conn, error) { return recConn{}, nil }

type recConn struct{}

func (recConn) Prepare(string) (driver.Stmt, error)      { return recStmt{}, nil }
func (recConn) Close() error                             { return nil }
func (recConn) Begin() (driver.Tx, error)                { return recTx{}, nil }
func (recConn) CheckNamedValue(*driver.NamedValue) error { return nil }
func (recConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return driver.RowsAffected(1), nil
}
func (recConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	return recRows{}, nil
}

type recStmt struct{}

func (recStmt) Close() error                               { return nil }
func (recStmt) NumInput() int                              { return -1 }
func (recStmt) Exec([]driver.Value) (driver.Result, error) { return driver.RowsAffected(1), nil }
func (recStmt) Query([]driver.Value) (driver.Rows, error)  { return recRows{}, nil }
func (recStmt) CheckNamedValue(*driver.NamedValue) error   { return nil }

type recTx struct{}

func (recTx) Commit() error   { return nil }
func (recTx) Rollback() error { return nil }

type recRows struct{}

func (recRows) Columns() []string         { return nil }
func (recRows) Close() error              { return nil }
func (recRows) Next([]driver.Value) error { return io.EOF }
