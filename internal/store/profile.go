package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// CreateProfile stores a new profile. It returns host.ErrConflict when the
// name is taken.
func (db *DB) CreateProfile(ctx context.Context, p host.Profile) (host.Profile, error) {
	t := now()
	p.CreatedAt, p.UpdatedAt = t, t
	row := toProfileRow(p)
	err := db.write(ctx, func(tx *gorm.DB) error {
		return dbErr(tx.Create(&row).Error)
	})
	if err != nil {
		return host.Profile{}, fmt.Errorf("store: create profile %s: %w", p.Name, err)
	}
	return row.toProfile(), nil
}

// GetProfile returns the named profile, or host.ErrNotFound.
func (db *DB) GetProfile(ctx context.Context, name string) (host.Profile, error) {
	var row profileRow
	if err := dbErr(db.read(ctx).Where("name = ?", name).Take(&row).Error); err != nil {
		return host.Profile{}, fmt.Errorf("store: get profile %s: %w", name, err)
	}
	return row.toProfile(), nil
}

// ListProfiles returns every profile, ordered by name.
func (db *DB) ListProfiles(ctx context.Context) ([]host.Profile, error) {
	var rows []profileRow
	if err := db.read(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list profiles: %w", dbErr(err))
	}
	out := make([]host.Profile, len(rows))
	for i, r := range rows {
		out[i] = r.toProfile()
	}
	return out, nil
}

// UpdateProfile reads the profile locked, calls fn with a copy and, when fn
// returns nil, writes it back, in one transaction. fn's error is returned
// unchanged and nothing is written; fn may run more than once (see
// UpdateHost) and cannot rename the profile. It returns host.ErrNotFound for
// an unknown profile.
func (db *DB) UpdateProfile(ctx context.Context, name string, fn func(p *host.Profile) error) (host.Profile, error) {
	var out host.Profile
	err := db.write(ctx, func(tx *gorm.DB) error {
		var row profileRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", name).Take(&row).Error
		if err := dbErr(err); err != nil {
			return fmt.Errorf("store: update profile %s: %w", name, err)
		}
		p := row.toProfile()
		p.Initrds = slices.Clone(p.Initrds)
		if err := fn(&p); err != nil {
			return err
		}
		if p.Name != name {
			return host.Invalid("name", "a profile cannot be renamed (%q to %q)", name, p.Name)
		}
		p.CreatedAt, p.UpdatedAt = row.CreatedAt, now()
		nrow := toProfileRow(p)
		err = tx.Model(&profileRow{}).Where("name = ?", name).Updates(nrow.columns()).Error
		if err := dbErr(err); err != nil {
			return fmt.Errorf("store: update profile %s: %w", name, err)
		}
		out = nrow.toProfile()
		return nil
	})
	if err != nil {
		return host.Profile{}, err
	}
	return out, nil
}

// DeleteProfile deletes the named profile. It returns host.ErrNotFound for an
// unknown profile and host.ErrConflict while a host uses it.
func (db *DB) DeleteProfile(ctx context.Context, name string) error {
	return db.write(ctx, func(tx *gorm.DB) error {
		var row profileRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", name).Take(&row).Error
		if err := dbErr(err); err != nil {
			return fmt.Errorf("store: delete profile %s: %w", name, err)
		}
		// A locking read on the profile index also keeps other transactions
		// from adding a host with this profile until we commit (MySQL).
		var users []string
		err = tx.Model(&hostRow{}).Clauses(clause.Locking{Strength: "UPDATE"}).
			Where("profile = ?", name).Limit(1).Pluck("name", &users).Error
		if err != nil {
			return fmt.Errorf("store: delete profile %s: %w", name, dbErr(err))
		}
		if len(users) > 0 {
			return fmt.Errorf("store: delete profile %s: used by host %s: %w", name, users[0], host.ErrConflict)
		}
		if err := tx.Where("name = ?", name).Delete(&profileRow{}).Error; err != nil {
			return fmt.Errorf("store: delete profile %s: %w", name, dbErr(err))
		}
		return nil
	})
}
