package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

func toUserRow(u auth.User) userRow {
	return userRow{Source: string(u.Source), Name: u.Name, Grants: encodeGrants(u.Grants), Disabled: u.Disabled,
		DN: u.DN, PasswordHash: u.PasswordHash, CheckedAt: timePtr(u.CheckedAt), CreatedAt: utc(u.CreatedAt), UpdatedAt: utc(u.UpdatedAt)}
}

// columns returns every column of r but the key and the creation time.
func (r userRow) columns() map[string]any {
	return map[string]any{"grants": r.Grants, "disabled": r.Disabled, "dn": r.DN, "password_hash": r.PasswordHash,
		"checked_at": r.CheckedAt, "updated_at": r.UpdatedAt}
}

func (r userRow) toUser() auth.User {
	return auth.User{Name: r.Name, Source: auth.Source(r.Source), Grants: decodeGrants(r.Grants), Disabled: r.Disabled,
		DN: r.DN, CheckedAt: timeVal(r.CheckedAt), PasswordHash: r.PasswordHash, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// CreateUser stores a new user and rec (a zero rec is not stored), in one
// transaction. It returns a *host.ConflictError (an ErrConflict) when a user
// of that source and name exists.
func (db *DB) CreateUser(ctx context.Context, u auth.User, rec host.Record) error {
	t := now()
	u.CreatedAt, u.UpdatedAt = t, t
	row := toUserRow(u)
	err := db.write(ctx, func(tx *gorm.DB) error {
		if err := dbErr(tx.Create(&row).Error); err != nil {
			if errors.Is(err, host.ErrConflict) {
				return host.Conflict("name", "user %s already exists", u.Actor())
			}
			return err
		}
		return insertEvents(tx, t, []host.Record{rec})
	})
	if err != nil {
		return fmt.Errorf("store: create user %s: %w", u.Actor(), err)
	}
	return nil
}

// GetUser returns the user, or host.ErrNotFound.
func (db *DB) GetUser(ctx context.Context, source auth.Source, name string) (auth.User, error) {
	var row userRow
	err := dbErr(db.read(ctx).Where("source = ? AND name = ?", string(source), name).Take(&row).Error)
	if err != nil {
		return auth.User{}, fmt.Errorf("store: get user %s:%s: %w", source, name, err)
	}
	return row.toUser(), nil
}

// ListUsers returns every user, ordered by source and name.
func (db *DB) ListUsers(ctx context.Context) ([]auth.User, error) {
	var rows []userRow
	if err := db.read(ctx).Order("source, name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list users: %w", dbErr(err))
	}
	out := make([]auth.User, len(rows))
	for i, r := range rows {
		out[i] = r.toUser()
	}
	return out, nil
}

// UpdateUser reads the user locked, calls fn with a copy and, when fn
// returns nil, writes it back and stores rec (a zero rec is not stored), in
// one transaction. When rec.Fields is nil it is filled with the names of
// the fields fn changed (grants, disabled, dn, password, checked_at; never
// values), and a rec whose fn changed nothing is then not stored. fn's error is returned unchanged and nothing is written;
// fn may run more than once (see UpdateHost) and cannot change the source or
// the name. It returns host.ErrNotFound for an unknown user.
func (db *DB) UpdateUser(ctx context.Context, source auth.Source, name string, fn func(u *auth.User) error, rec host.Record) (auth.User, error) {
	var out auth.User
	err := db.write(ctx, func(tx *gorm.DB) error {
		var row userRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("source = ? AND name = ?", string(source), name).Take(&row).Error
		if err := dbErr(err); err != nil {
			return fmt.Errorf("store: update user %s:%s: %w", source, name, err)
		}
		u := row.toUser()
		u.Grants = slices.Clone(u.Grants)
		if err := fn(&u); err != nil {
			return err
		}
		if u.Source != source || u.Name != name {
			return host.Invalid("name", "a user cannot be renamed (%s:%s to %s)", source, name, u.Actor())
		}
		u.CreatedAt, u.UpdatedAt = row.CreatedAt, now()
		nrow := toUserRow(u)
		if err := dbErr(tx.Model(&userRow{}).Where("id = ?", row.ID).Updates(nrow.columns()).Error); err != nil {
			return fmt.Errorf("store: update user %s:%s: %w", source, name, err)
		}
		out = nrow.toUser()
		r := rec
		if r.Fields == nil && !r.IsZero() {
			r.Fields = changedUserFields(row, nrow)
			if len(r.Fields) == 0 {
				return nil
			}
		}
		return insertEvents(tx, u.UpdatedAt, []host.Record{r})
	})
	if err != nil {
		return auth.User{}, err
	}
	return out, nil
}

// DeleteUser deletes the user, revokes every token the user owns (sessions
// included) and stores rec, in one transaction. It returns host.ErrNotFound
// for an unknown user.
func (db *DB) DeleteUser(ctx context.Context, source auth.Source, name string, rec host.Record) error {
	err := db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("source = ? AND name = ?", string(source), name).Delete(&userRow{})
		if err := dbErr(res.Error); err != nil {
			return err
		}
		if res.RowsAffected == 0 {
			return host.ErrNotFound
		}
		t := now()
		if _, err := revokeOwner(tx, string(source)+":"+name, nil, t); err != nil {
			return err
		}
		return insertEvents(tx, t, []host.Record{rec})
	})
	if err != nil {
		return fmt.Errorf("store: delete user %s:%s: %w", source, name, err)
	}
	return nil
}

// UpsertDirectoryUser stores what the directory said about u at a login or
// a re-check: a new user is created; a known one gets u's grants, DN and
// CheckedAt, keeping Disabled (an admin's decision) and its password hash.
// It returns the stored user.
func (db *DB) UpsertDirectoryUser(ctx context.Context, u auth.User) (auth.User, error) {
	var out auth.User
	err := db.write(ctx, func(tx *gorm.DB) error {
		t := now()
		var row userRow
		err := dbErr(tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("source = ? AND name = ?", string(u.Source), u.Name).Take(&row).Error)
		if errors.Is(err, host.ErrNotFound) {
			n := u
			n.Disabled, n.PasswordHash = false, ""
			n.CreatedAt, n.UpdatedAt = t, t
			nrow := toUserRow(n)
			// In a savepoint: on PostgreSQL a failed statement aborts
			// the whole transaction, and the row is read again below.
			err = dbErr(tx.Transaction(func(tx *gorm.DB) error { return tx.Create(&nrow).Error }))
			if err == nil {
				out = nrow.toUser()
				return nil
			}
			if !errors.Is(err, host.ErrConflict) {
				return err
			}
			// Another replica created it meanwhile: update that row.
			err = dbErr(tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("source = ? AND name = ?", string(u.Source), u.Name).Take(&row).Error)
		}
		if err != nil {
			return err
		}
		old := row.toUser()
		old.Grants, old.DN, old.CheckedAt, old.UpdatedAt = u.Grants, u.DN, u.CheckedAt, t
		nrow := toUserRow(old)
		if err := dbErr(tx.Model(&userRow{}).Where("id = ?", row.ID).Updates(nrow.columns()).Error); err != nil {
			return err
		}
		out = nrow.toUser()
		return nil
	})
	if err != nil {
		return auth.User{}, fmt.Errorf("store: upsert directory user %s: %w", u.Actor(), err)
	}
	return out, nil
}

// changedUserFields names the columns that differ between a and b.
func changedUserFields(a, b userRow) []string {
	var out []string
	if a.Disabled != b.Disabled {
		out = append(out, "disabled")
	}
	if a.DN != b.DN {
		out = append(out, "dn")
	}
	if a.Grants != b.Grants {
		out = append(out, "grants")
	}
	if a.PasswordHash != b.PasswordHash {
		out = append(out, "password")
	}
	if !timeVal(a.CheckedAt).Equal(timeVal(b.CheckedAt)) {
		out = append(out, "checked_at")
	}
	return out
}
