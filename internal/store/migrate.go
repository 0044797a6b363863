package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// migration is one schema change. Migrations are applied in order, each
// exactly once, and recorded in schema_migrations. On MySQL, DDL commits
// implicitly, so up must be idempotent (create only what is missing).
type migration struct {
	version int
	name    string
	up      func(tx *gorm.DB) error
}

// migrations is the schema's history. Append only; never edit a released
// migration.
var migrations = []migration{
	{1, "create hosts, host_macs, profiles, events, api_tokens", migrateV1},
	{2, "create bmcs", migrateV2},
	{3, "add bmcs.insecure_plaintext", migrateV3},
	{4, "add hosts.last_error, events.fields; index hosts.ipv4, hosts.ipv6", migrateV4},
	{5, "add hosts.labels, host_labels, users; api_tokens for service, personal and session tokens; events.client_addr, events.subject", migrateV5},
	{6, "index hosts.updated_at (console live updates)", migrateV6},
	{7, "create jobs, job_hosts, media (bulk jobs and published media shared by replicas)", migrateV7},
	{8, "widen jobs.action to 32 (secure-boot-enroll)", migrateV8},
}

// LatestSchema is the schema version this build migrates to.
var LatestSchema = migrations[len(migrations)-1].version

type schemaMigrationRow struct {
	Version   int       `gorm:"primaryKey;autoIncrement:false"`
	AppliedAt time.Time `gorm:"precision:6;not null"`
}

func (schemaMigrationRow) TableName() string { return "schema_migrations" }

// migrate applies pending migrations. Replicas starting together are
// serialized: on SQLite by running everything in one immediate (write-locked)
// transaction, on PostgreSQL and SQL Server (whose DDL is transactional) by
// one transaction holding a transaction-scoped lock (pg_advisory_xact_lock,
// sp_getapplock), on MySQL by the named lock bootpilot_migrate.
func (db *DB) migrate(ctx context.Context) error {
	switch db.driver {
	case DriverSQLite:
		if err := db.write(ctx, func(tx *gorm.DB) error { return applyMigrations(tx) }); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		return nil
	case DriverPostgres, DriverSQLServer:
		if err := db.migrateTx(ctx); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		return nil
	}
	sqlDB, err := db.gdb.DB()
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('bootpilot_migrate', 30)").Scan(&got); err != nil {
		return fmt.Errorf("store: migrate: lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("store: migrate: another replica held the migration lock for 30s")
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('bootpilot_migrate')")
	tx := db.gdb.WithContext(ctx).Set("gorm:table_options", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin").
		Session(&gorm.Session{}) // a reusable session, not one sticky statement
	if err := applyMigrations(tx); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// SchemaVersion returns the newest migration applied to the database.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v *int
	if err := db.read(ctx).Model(&schemaMigrationRow{}).Select("MAX(version)").Scan(&v).Error; err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// Migrations returns the number of migrations recorded in the database
// (each applied exactly once, so this equals SchemaVersion while versions
// are contiguous).
func (db *DB) Migrations(ctx context.Context) (int, error) {
	var n int64
	if err := db.read(ctx).Model(&schemaMigrationRow{}).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("store: count migrations: %w", err)
	}
	return int(n), nil
}

func applyMigrations(tx *gorm.DB) error {
	if err := createMissing(tx, &schemaMigrationRow{}); err != nil {
		return err
	}
	var applied []int
	if err := tx.Model(&schemaMigrationRow{}).Pluck("version", &applied).Error; err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	done := map[int]bool{}
	for _, v := range applied {
		done[v] = true
	}
	for _, m := range migrations {
		if done[m.version] {
			continue
		}
		if err := m.up(tx); err != nil {
			return fmt.Errorf("v%d (%s): %w", m.version, m.name, err)
		}
		if err := tx.Create(&schemaMigrationRow{Version: m.version, AppliedAt: now()}).Error; err != nil {
			return fmt.Errorf("record v%d: %w", m.version, err)
		}
	}
	return nil
}

// createMissing creates the tables of models that do not exist yet.
func createMissing(tx *gorm.DB, models ...any) error {
	for _, m := range models {
		if tx.Migrator().HasTable(m) {
			continue
		}
		if err := tx.Migrator().CreateTable(m); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
	}
	return nil
}

func migrateV1(tx *gorm.DB) error {
	return createMissing(tx, &v1HostRow{}, &v1HostMACRow{}, &v1ProfileRow{}, &v1EventRow{}, &v1APITokenRow{})
}

// The schema as of v1, frozen: later changes go into new migrations.

type v1HostRow struct {
	Name             string `gorm:"primaryKey;size:63"`
	MACs             string `gorm:"column:macs;type:text;not null"`
	IPv4             string `gorm:"column:ipv4;size:64;not null"`
	Gateway          string `gorm:"size:64;not null"`
	DNS              string `gorm:"column:dns;size:1024;not null"`
	IPv6             string `gorm:"column:ipv6;size:64;not null"`
	Gateway6         string `gorm:"column:gateway6;size:64;not null"`
	VLAN             int    `gorm:"column:vlan;not null"`
	Hostname         string `gorm:"size:255;not null"`
	Domain           string `gorm:"size:255;not null"`
	Profile          string `gorm:"size:63;not null;index"`
	CleanThenInstall bool   `gorm:"not null"`

	State    string     `gorm:"size:16;not null;index:idx_hosts_state_deadline,priority:1"`
	Attempt  int        `gorm:"not null"`
	Deadline *time.Time `gorm:"precision:6;index:idx_hosts_state_deadline,priority:2"`
	Version  int64      `gorm:"not null"`

	InvMAC      string     `gorm:"column:inv_mac;size:17;not null"`
	InvUUID     string     `gorm:"column:inv_uuid;size:64;not null"`
	InvSerial   string     `gorm:"column:inv_serial;size:255;not null"`
	InvAsset    string     `gorm:"column:inv_asset;size:255;not null"`
	InvArch     string     `gorm:"column:inv_arch;size:32;not null"`
	InvPlatform string     `gorm:"column:inv_platform;size:32;not null"`
	InvSeenAt   *time.Time `gorm:"column:inv_seen_at;precision:6"`

	TokenHash    string `gorm:"size:64;not null"`
	CallbackHash string `gorm:"size:64;not null"`
	LastCallback string `gorm:"size:16;not null"`

	CreatedAt time.Time `gorm:"precision:6;not null"`
	UpdatedAt time.Time `gorm:"precision:6;not null"`
}

func (v1HostRow) TableName() string { return "hosts" }

type v1HostMACRow struct {
	MAC      string `gorm:"column:mac;primaryKey;size:17"`
	HostName string `gorm:"size:63;not null;index"`
	Position int    `gorm:"not null"`
}

func (v1HostMACRow) TableName() string { return "host_macs" }

type v1ProfileRow struct {
	Name        string    `gorm:"primaryKey;size:63"`
	Kernel      string    `gorm:"size:2048;not null"`
	Initrds     string    `gorm:"type:text;not null"`
	Cmdline     string    `gorm:"type:text;not null"`
	Installer   string    `gorm:"size:32;not null"`
	Config      string    `gorm:"type:mediumtext;not null"`
	FlipOnServe bool      `gorm:"not null"`
	Image       string    `gorm:"size:2048;not null"`
	ImageSHA256 string    `gorm:"column:image_sha256;size:64;not null"`
	TargetDisk  string    `gorm:"size:128;not null"`
	CleanMethod string    `gorm:"size:32;not null"`
	CreatedAt   time.Time `gorm:"precision:6;not null"`
	UpdatedAt   time.Time `gorm:"precision:6;not null"`
}

func (v1ProfileRow) TableName() string { return "profiles" }

type v1EventRow struct {
	ID        int64     `gorm:"primaryKey;autoIncrement"`
	HostName  string    `gorm:"size:63;not null;index:idx_events_host,priority:1"`
	Actor     string    `gorm:"size:64;not null"`
	Event     string    `gorm:"size:16;not null"`
	Action    string    `gorm:"size:32;not null"`
	FromState string    `gorm:"size:16;not null"`
	ToState   string    `gorm:"size:16;not null"`
	Attempt   int       `gorm:"not null"`
	Reason    string    `gorm:"type:text;not null"`
	RequestID string    `gorm:"size:128;not null"`
	Time      time.Time `gorm:"precision:6;not null;index"`
}

func (v1EventRow) TableName() string { return "events" }

type v1APITokenRow struct {
	Name      string    `gorm:"primaryKey;size:63"`
	Hash      string    `gorm:"size:64;not null;uniqueIndex"`
	Role      string    `gorm:"size:32;not null"`
	CreatedAt time.Time `gorm:"precision:6;not null"`
}

func (v1APITokenRow) TableName() string { return "api_tokens" }

// The columns and indexes of v4, frozen.

type v4HostRow struct {
	IPv4      string `gorm:"column:ipv4;size:64;not null;index:idx_hosts_ipv4"`
	IPv6      string `gorm:"column:ipv6;size:64;not null;index:idx_hosts_ipv6"`
	LastError string `gorm:"size:1024;not null;default:''"`
}

func (v4HostRow) TableName() string { return "hosts" }

type v4EventRow struct {
	Fields string `gorm:"size:1024;not null;default:''"`
}

func (v4EventRow) TableName() string { return "events" }

// migrateV4 adds hosts.last_error (why the last boot fell back to the disk)
// and events.fields (the fields an update changed), both empty for existing
// rows, and indexes hosts.ipv4 and hosts.ipv6 for the duplicate-address
// check. Each step is skipped when done (MySQL DDL is not transactional).
func migrateV4(tx *gorm.DB) error {
	m := tx.Migrator()
	if !m.HasColumn(&v4HostRow{}, "LastError") {
		if err := m.AddColumn(&v4HostRow{}, "LastError"); err != nil {
			return fmt.Errorf("add hosts.last_error: %w", err)
		}
	}
	if !m.HasColumn(&v4EventRow{}, "Fields") {
		if err := m.AddColumn(&v4EventRow{}, "Fields"); err != nil {
			return fmt.Errorf("add events.fields: %w", err)
		}
	}
	for _, idx := range []string{"idx_hosts_ipv4", "idx_hosts_ipv6"} {
		if m.HasIndex(&v4HostRow{}, idx) {
			continue
		}
		if err := m.CreateIndex(&v4HostRow{}, idx); err != nil {
			return fmt.Errorf("create index %s: %w", idx, err)
		}
	}
	return nil
}

// The tables, columns and indexes of v5, frozen.

type v5HostRow struct {
	Labels string `gorm:"size:4096;not null;default:''"`
}

func (v5HostRow) TableName() string { return "hosts" }

type v5HostLabelRow struct {
	HostName   string `gorm:"primaryKey;size:63"`
	LabelKey   string `gorm:"primaryKey;size:63;index:idx_host_labels_kv,priority:1"`
	LabelValue string `gorm:"size:63;not null;index:idx_host_labels_kv,priority:2"`
}

func (v5HostLabelRow) TableName() string { return "host_labels" }

type v5UserRow struct {
	ID           int64      `gorm:"primaryKey;autoIncrement"`
	Source       string     `gorm:"size:16;not null;uniqueIndex:idx_users_source_name,priority:1"`
	Name         string     `gorm:"size:255;not null;uniqueIndex:idx_users_source_name,priority:2"`
	Grants       string     `gorm:"type:text;not null"`
	Disabled     bool       `gorm:"not null"`
	DN           string     `gorm:"column:dn;size:1024;not null"`
	PasswordHash string     `gorm:"size:255;not null"`
	CheckedAt    *time.Time `gorm:"precision:6"`
	CreatedAt    time.Time  `gorm:"precision:6;not null"`
	UpdatedAt    time.Time  `gorm:"precision:6;not null"`
}

func (v5UserRow) TableName() string { return "users" }

// v5TokenRow is the new api_tokens, built as api_tokens_v5 and renamed:
// SQLite cannot change a primary key in place.
type v5TokenRow struct {
	ID         int64      `gorm:"primaryKey;autoIncrement"`
	Name       string     `gorm:"size:63;not null;uniqueIndex:idx_tokens_owner_name,priority:2"`
	Kind       string     `gorm:"size:16;not null"`
	Owner      string     `gorm:"size:255;not null;uniqueIndex:idx_tokens_owner_name,priority:1"`
	Grants     string     `gorm:"type:text;not null"`
	ExpiresAt  *time.Time `gorm:"precision:6"`
	LastUsedAt *time.Time `gorm:"precision:6"`
	RevokedAt  *time.Time `gorm:"precision:6"`
	CreatedBy  string     `gorm:"size:255;not null"`
	CreatedAt  time.Time  `gorm:"precision:6;not null"`
	Hash       string     `gorm:"size:64;not null;uniqueIndex:idx_tokens_hash"`
}

func (v5TokenRow) TableName() string { return "api_tokens_v5" }

type v5EventRow struct {
	Actor      string `gorm:"size:255;not null;index:idx_events_actor"`
	ClientAddr string `gorm:"size:64;not null;default:''"`
	Subject    string `gorm:"size:255;not null;default:''"`
}

func (v5EventRow) TableName() string { return "events" }

// migrateV5 adds host labels (hosts.labels and the host_labels table), the
// users table, the client address and subject of events (and an index on
// their actor), and rebuilds api_tokens with an id key, a kind, an owner,
// grants, expiry and revocation: every existing token becomes a service
// token granted its old role on every host. Each step is skipped when done
// (MySQL DDL is not transactional), so a migration interrupted on MySQL
// completes when run again.
func migrateV5(tx *gorm.DB) error {
	m := tx.Migrator()
	if !m.HasColumn(&v5HostRow{}, "Labels") {
		if err := m.AddColumn(&v5HostRow{}, "Labels"); err != nil {
			return fmt.Errorf("add hosts.labels: %w", err)
		}
	}
	if err := createMissing(tx, &v5HostLabelRow{}, &v5UserRow{}); err != nil {
		return err
	}
	for _, col := range []string{"ClientAddr", "Subject"} {
		if !m.HasColumn(&v5EventRow{}, col) {
			if err := m.AddColumn(&v5EventRow{}, col); err != nil {
				return fmt.Errorf("add events.%s: %w", col, err)
			}
		}
	}
	// Actors are "SOURCE:NAME" with names of up to 255 characters
	// (SQLite does not enforce lengths).
	widen := map[string]string{
		"mysql":     "ALTER TABLE events MODIFY actor varchar(255) NOT NULL",
		"postgres":  `ALTER TABLE events ALTER COLUMN actor TYPE varchar(255) COLLATE "C"`,
		"sqlserver": "ALTER TABLE events ALTER COLUMN actor nvarchar(255) NOT NULL",
	}[tx.Dialector.Name()]
	if widen != "" {
		if err := tx.Exec(widen).Error; err != nil {
			return fmt.Errorf("widen events.actor: %w", err)
		}
	}
	if !m.HasIndex(&v5EventRow{}, "idx_events_actor") {
		if err := m.CreateIndex(&v5EventRow{}, "idx_events_actor"); err != nil {
			return fmt.Errorf("create index idx_events_actor: %w", err)
		}
	}
	return migrateV5Tokens(tx)
}

// migrateV5Tokens copies the v1 api_tokens into api_tokens_v5, drops the old
// table and renames the new one. Each step can be repeated.
func migrateV5Tokens(tx *gorm.DB) error {
	m := tx.Migrator()
	if m.HasTable("api_tokens") && m.HasColumn(&v1APITokenRow{}, "kind") {
		return nil // done
	}
	if err := createMissing(tx, &v5TokenRow{}); err != nil {
		return err
	}
	if m.HasTable("api_tokens") {
		var old []v1APITokenRow
		if err := tx.Find(&old).Error; err != nil {
			return fmt.Errorf("read api_tokens: %w", err)
		}
		for _, o := range old {
			var n int64
			if err := tx.Model(&v5TokenRow{}).Where("hash = ?", o.Hash).Count(&n).Error; err != nil {
				return fmt.Errorf("copy token %s: %w", o.Name, err)
			}
			if n > 0 {
				continue
			}
			grants, _ := json.Marshal([]struct {
				Role string `json:"role"`
			}{{o.Role}})
			row := v5TokenRow{Name: o.Name, Kind: "service", Owner: "", Grants: string(grants),
				CreatedBy: "system:migration", CreatedAt: o.CreatedAt, Hash: o.Hash}
			if err := tx.Create(&row).Error; err != nil {
				return fmt.Errorf("copy token %s: %w", o.Name, err)
			}
		}
		if err := m.DropTable("api_tokens"); err != nil {
			return fmt.Errorf("drop old api_tokens: %w", err)
		}
	}
	if err := m.RenameTable("api_tokens_v5", "api_tokens"); err != nil {
		return fmt.Errorf("rename api_tokens_v5: %w", err)
	}
	return nil
}

// The index of v6, frozen.

type v6HostRow struct {
	UpdatedAt time.Time `gorm:"precision:6;not null;index:idx_hosts_updated_at"`
}

func (v6HostRow) TableName() string { return "hosts" }

// migrateV6 indexes hosts.updated_at: the console asks for the hosts
// changed since its last look every few seconds.
func migrateV6(tx *gorm.DB) error {
	m := tx.Migrator()
	if m.HasIndex(&v6HostRow{}, "idx_hosts_updated_at") {
		return nil
	}
	if err := m.CreateIndex(&v6HostRow{}, "idx_hosts_updated_at"); err != nil {
		return fmt.Errorf("create index idx_hosts_updated_at: %w", err)
	}
	return nil
}

// The tables of v7, frozen.

type v7JobRow struct {
	ID          string     `gorm:"primaryKey;size:32"`
	Action      string     `gorm:"size:16;not null"`
	Via         string     `gorm:"size:16;not null"`
	Actor       string     `gorm:"size:255;not null"`
	Replica     string     `gorm:"size:128;not null;index:idx_jobs_replica"`
	CreatedAt   time.Time  `gorm:"precision:6;not null"`
	HeartbeatAt time.Time  `gorm:"precision:6;not null"`
	FinishedAt  *time.Time `gorm:"precision:6;index:idx_jobs_finished_at"`
}

func (v7JobRow) TableName() string { return "jobs" }

type v7JobHostRow struct {
	JobID       string     `gorm:"primaryKey;size:32"`
	Seq         int        `gorm:"primaryKey;autoIncrement:false"`
	HostName    string     `gorm:"size:63;not null"`
	BMC         string     `gorm:"column:bmc;size:2048;not null"`
	Status      string     `gorm:"size:16;not null"`
	Error       string     `gorm:"column:error_text;type:text;not null"`
	UnknownHost bool       `gorm:"not null"`
	StartedAt   *time.Time `gorm:"precision:6"`
	FinishedAt  *time.Time `gorm:"precision:6"`
}

func (v7JobHostRow) TableName() string { return "job_hosts" }

type v7MediaRow struct {
	HostName  string    `gorm:"primaryKey;size:63"`
	PubID     string    `gorm:"size:64;not null"`
	Data      []byte    `gorm:"not null"`
	ETag      string    `gorm:"column:etag;size:128;not null"`
	ModTime   time.Time `gorm:"precision:6;not null"`
	ExpiresAt time.Time `gorm:"precision:6;not null;index:idx_media_expires_at"`
}

func (v7MediaRow) TableName() string { return "media" }

// migrateV7 creates jobs and job_hosts (bulk jobs and their per-host
// progress, with the replica running each job and its heartbeat) and media
// (each host's published ISO), so that any replica lists jobs and serves
// media.
func migrateV7(tx *gorm.DB) error {
	return createMissing(tx, &v7JobRow{}, &v7JobHostRow{}, &v7MediaRow{})
}

// v8JobRow is the part of jobs v8 changes, frozen.
type v8JobRow struct {
	ID     string `gorm:"primaryKey;size:32"`
	Action string `gorm:"size:32;not null"`
}

func (v8JobRow) TableName() string { return "jobs" }

// migrateV8 widens jobs.action from 16 to 32 characters: bulk Secure Boot
// enrolment jobs are "secure-boot-enroll" (18), which MySQL/MariaDB,
// PostgreSQL and SQL Server refused. SQLite does not enforce VARCHAR
// lengths, and altering a column there rebuilds the table: it is left as
// it is. Re-running the ALTER is harmless (MySQL commits DDL implicitly).
func migrateV8(tx *gorm.DB) error {
	if tx.Dialector.Name() == "sqlite" {
		return nil
	}
	return tx.Migrator().AlterColumn(&v8JobRow{}, "Action")
}
