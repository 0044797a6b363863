package store

import (
	"context"
	"fmt"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// BMC is the Redfish endpoint of one host. The store keeps the password only
// as the opaque sealed text the caller gives it (secretbox); it never sees
// the plain password.
type BMC struct {
	Host           string `json:"host"`             // "node01"
	URL            string `json:"url"`              // "https://10.0.0.10"
	Username       string `json:"username"`         // "admin"
	SealedPassword string `json:"-"`                // "sb1.<key id>.<…>"; never rendered
	CAPEM          string `json:"ca_pem,omitempty"` // PEM CA bundle for this BMC
	Insecure       bool   `json:"insecure"`         // skip TLS verification (audited)
	Session        bool   `json:"session"`          // Redfish session instead of basic auth
	// InsecurePlaintext allows an http:// URL (credentials in clear; audited).
	InsecurePlaintext bool      `json:"insecure_plaintext"`
	MediaInserted     bool      `json:"media_inserted"` // bootpilot inserted the host's ISO and has not ejected it
	MediaSince        time.Time `json:"media_since,omitzero"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// bmcRow is one row of bmcs, keyed by host name. There is no foreign key:
// deleting a host leaves its BMC row, which DeleteBMC removes.
type bmcRow struct {
	HostName       string     `gorm:"primaryKey;size:63"`
	URL            string     `gorm:"column:url;size:2048;not null"`
	Username       string     `gorm:"size:255;not null"`
	SealedPassword string     `gorm:"type:text;not null"`
	CAPEM          string     `gorm:"column:ca_pem;type:mediumtext;not null"`
	Insecure       bool       `gorm:"not null"`
	Session        bool       `gorm:"not null"`
	MediaInserted  bool       `gorm:"not null"`
	MediaSince     *time.Time `gorm:"precision:6"`
	UpdatedAt      time.Time  `gorm:"precision:6;not null"`
	// InsecurePlaintext: migration v3.
	InsecurePlaintext bool `gorm:"not null;default:false"`
}

func (bmcRow) TableName() string { return "bmcs" }

// v2BMCRow is the schema of bmcs as of migration v2, frozen.
type v2BMCRow struct {
	HostName       string     `gorm:"primaryKey;size:63"`
	URL            string     `gorm:"column:url;size:2048;not null"`
	Username       string     `gorm:"size:255;not null"`
	SealedPassword string     `gorm:"type:text;not null"`
	CAPEM          string     `gorm:"column:ca_pem;type:mediumtext;not null"`
	Insecure       bool       `gorm:"not null"`
	Session        bool       `gorm:"not null"`
	MediaInserted  bool       `gorm:"not null"`
	MediaSince     *time.Time `gorm:"precision:6"`
	UpdatedAt      time.Time  `gorm:"precision:6;not null"`
}

func (v2BMCRow) TableName() string { return "bmcs" }

func migrateV2(tx *gorm.DB) error { return createMissing(tx, &v2BMCRow{}) }

// v3BMCRow is the schema of bmcs as of migration v3, frozen.
type v3BMCRow struct {
	v2BMCRow
	InsecurePlaintext bool `gorm:"not null;default:false"`
}

func (v3BMCRow) TableName() string { return "bmcs" }

// migrateV3 adds bmcs.insecure_plaintext (false for existing rows: an
// http:// BMC stored before v3 is refused until set again explicitly).
func migrateV3(tx *gorm.DB) error {
	if tx.Migrator().HasColumn(&v3BMCRow{}, "InsecurePlaintext") {
		return nil
	}
	if err := tx.Migrator().AddColumn(&v3BMCRow{}, "InsecurePlaintext"); err != nil {
		return fmt.Errorf("add bmcs.insecure_plaintext: %w", err)
	}
	return nil
}

func (r bmcRow) toBMC() BMC {
	return BMC{Host: r.HostName, URL: r.URL, Username: r.Username, SealedPassword: r.SealedPassword,
		CAPEM: r.CAPEM, Insecure: r.Insecure, InsecurePlaintext: r.InsecurePlaintext, Session: r.Session,
		MediaInserted: r.MediaInserted, MediaSince: timeVal(r.MediaSince), UpdatedAt: r.UpdatedAt.UTC()}
}

// SetBMC stores (creates or replaces) the BMC of host name and rec as the
// host's audit event, in one transaction. The media state is kept. It
// returns host.ErrNotFound when the host does not exist.
func (db *DB) SetBMC(ctx context.Context, name string, b BMC, rec host.Record) error {
	t := now()
	err := db.write(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&hostRow{}).Where("name = ?", name).Count(&n).Error; err != nil {
			return dbErr(err)
		}
		if n == 0 {
			return host.ErrNotFound
		}
		row := bmcRow{HostName: name, URL: b.URL, Username: b.Username, SealedPassword: b.SealedPassword,
			CAPEM: b.CAPEM, Insecure: b.Insecure, InsecurePlaintext: b.InsecurePlaintext, Session: b.Session, UpdatedAt: t}
		err := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "host_name"}},
			DoUpdates: clause.AssignmentColumns([]string{"url", "username", "sealed_password", "ca_pem", "insecure", "insecure_plaintext", "session", "updated_at"}),
		}).Create(&row).Error
		if err := dbErr(err); err != nil {
			return err
		}
		return insertRecords(tx, name, t, []host.Record{rec})
	})
	if err != nil {
		return fmt.Errorf("store: set BMC of %s: %w", name, err)
	}
	return nil
}

// GetBMC returns the BMC of host name, or host.ErrNotFound.
func (db *DB) GetBMC(ctx context.Context, name string) (BMC, error) {
	var row bmcRow
	if err := dbErr(db.read(ctx).Where("host_name = ?", name).Take(&row).Error); err != nil {
		return BMC{}, fmt.Errorf("store: get BMC of %s: %w", name, err)
	}
	return row.toBMC(), nil
}

// DeleteBMC forgets the BMC of host name and stores rec (when the host still
// exists). It returns host.ErrNotFound when there is none.
func (db *DB) DeleteBMC(ctx context.Context, name string, rec host.Record) error {
	err := db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("host_name = ?", name).Delete(&bmcRow{})
		if err := dbErr(res.Error); err != nil {
			return err
		}
		if res.RowsAffected == 0 {
			return host.ErrNotFound
		}
		return insertRecords(tx, name, now(), []host.Record{rec})
	})
	if err != nil {
		return fmt.Errorf("store: delete BMC of %s: %w", name, err)
	}
	return nil
}

// SetBMCMedia records whether bootpilot's media is inserted in host name's
// BMC, with rec as the audit event. It returns host.ErrNotFound when the host
// has no BMC.
func (db *DB) SetBMCMedia(ctx context.Context, name string, inserted bool, rec host.Record) error {
	t := now()
	err := db.write(ctx, func(tx *gorm.DB) error {
		since := timePtr(time.Time{})
		if inserted {
			since = &t
		}
		res := tx.Model(&bmcRow{}).Where("host_name = ?", name).
			Updates(map[string]any{"media_inserted": inserted, "media_since": since, "updated_at": t})
		if err := dbErr(res.Error); err != nil {
			return err
		}
		if res.RowsAffected == 0 {
			return host.ErrNotFound
		}
		return insertRecords(tx, name, t, []host.Record{rec})
	})
	if err != nil {
		return fmt.Errorf("store: set BMC media of %s: %w", name, err)
	}
	return nil
}

// RotateBMCPasswords calls fn with every BMC's host name and sealed password
// and stores what it returns, all in one transaction; fn's error aborts the
// rotation with nothing written. It returns the number of rows changed.
func (db *DB) RotateBMCPasswords(ctx context.Context, fn func(name, sealed string) (string, error)) (int, error) {
	changed := 0
	err := db.write(ctx, func(tx *gorm.DB) error {
		changed = 0
		var rows []bmcRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Order("host_name").Find(&rows).Error; err != nil {
			return dbErr(err)
		}
		for _, r := range rows {
			next, err := fn(r.HostName, r.SealedPassword)
			if err != nil {
				return fmt.Errorf("host %s: %w", r.HostName, err)
			}
			if next == r.SealedPassword {
				continue
			}
			if err := dbErr(tx.Model(&bmcRow{}).Where("host_name = ?", r.HostName).
				Update("sealed_password", next).Error); err != nil {
				return err
			}
			changed++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: rotate BMC passwords: %w", err)
	}
	return changed, nil
}
