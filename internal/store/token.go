package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
)

// TokenFilter selects tokens for ListTokens.
type TokenFilter = auth.TokenFilter

func toTokenRow(t auth.Token) tokenRow {
	return tokenRow{ID: t.ID, Name: t.Name, Kind: string(t.Kind), Owner: t.Owner, Grants: encodeGrants(t.Grants),
		ExpiresAt: timePtr(t.ExpiresAt), LastUsedAt: timePtr(t.LastUsedAt), RevokedAt: timePtr(t.RevokedAt),
		CreatedBy: t.CreatedBy, CreatedAt: utc(t.CreatedAt), Hash: t.Hash}
}

func (r tokenRow) toToken() auth.Token {
	return auth.Token{ID: r.ID, Name: r.Name, Kind: auth.TokenKind(r.Kind), Owner: r.Owner, Grants: decodeGrants(r.Grants),
		ExpiresAt: timeVal(r.ExpiresAt), LastUsedAt: timeVal(r.LastUsedAt), RevokedAt: timeVal(r.RevokedAt),
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(), Hash: r.Hash}
}

func toTokens(rows []tokenRow) []auth.Token {
	out := make([]auth.Token, len(rows))
	for i, r := range rows {
		out[i] = r.toToken()
	}
	return out
}

// insertEvents stores records that belong to no host change (logins,
// tokens, users); zero records are skipped, empty times become at.
func insertEvents(tx *gorm.DB, at time.Time, recs []host.Record) error {
	rows := make([]eventRow, 0, len(recs))
	for _, r := range recs {
		if r.IsZero() {
			continue
		}
		if r.Time.IsZero() {
			r.Time = at
		}
		rows = append(rows, toEventRow(r))
	}
	if len(rows) == 0 {
		return nil
	}
	if err := dbErr(tx.Create(&rows).Error); err != nil {
		return fmt.Errorf("store: add events: %w", err)
	}
	return nil
}

// CreateToken stores t (its hash only) and rec, in one transaction, and
// returns t with its ID and creation time. It returns a *host.ConflictError
// (an ErrConflict) when the owner already has a token of that name, or
// host.ErrConflict when the hash is taken.
func (db *DB) CreateToken(ctx context.Context, t auth.Token, rec host.Record) (auth.Token, error) {
	at := now()
	if t.CreatedAt.IsZero() {
		t.CreatedAt = at
	}
	t.ID = 0
	var out auth.Token
	err := db.write(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&tokenRow{}).Where("owner = ? AND name = ?", t.Owner, t.Name).Count(&n).Error; err != nil {
			return dbErr(err)
		}
		if n > 0 {
			return host.Conflict("name", "a token named %s already exists", t.Name)
		}
		row := toTokenRow(t)
		if err := dbErr(tx.Create(&row).Error); err != nil {
			return err
		}
		out = row.toToken()
		return insertEvents(tx, at, []host.Record{rec})
	})
	if err != nil {
		return auth.Token{}, fmt.Errorf("store: create token %s: %w", t.Name, err)
	}
	return out, nil
}

// TokenByHash returns the token with this hash, whatever its state (the
// caller checks Active), or host.ErrNotFound.
func (db *DB) TokenByHash(ctx context.Context, hash string) (auth.Token, error) {
	var row tokenRow
	if err := dbErr(db.read(ctx).Where("hash = ?", hash).Take(&row).Error); err != nil {
		return auth.Token{}, fmt.Errorf("store: find token: %w", err)
	}
	return row.toToken(), nil
}

// GetToken returns the token with this id, or host.ErrNotFound.
func (db *DB) GetToken(ctx context.Context, id int64) (auth.Token, error) {
	var row tokenRow
	if err := dbErr(db.read(ctx).Where("id = ?", id).Take(&row).Error); err != nil {
		return auth.Token{}, fmt.Errorf("store: get token %d: %w", id, err)
	}
	return row.toToken(), nil
}

// ListTokens returns the tokens f selects, revoked and expired ones
// included, ordered by id.
func (db *DB) ListTokens(ctx context.Context, f TokenFilter) ([]auth.Token, error) {
	q := db.read(ctx).Model(&tokenRow{})
	if !f.All {
		q = q.Where("owner = ?", f.Owner)
	}
	if len(f.Kinds) > 0 {
		kinds := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			kinds[i] = string(k)
		}
		q = q.Where("kind IN ?", kinds)
	}
	var rows []tokenRow
	if err := q.Order("id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", dbErr(err))
	}
	return toTokens(rows), nil
}

// RevokeToken marks the token revoked at at and stores rec, in one
// transaction. Revoking a revoked token changes nothing and stores no
// record. It returns host.ErrNotFound for an unknown id.
func (db *DB) RevokeToken(ctx context.Context, id int64, at time.Time, rec host.Record) error {
	err := db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&tokenRow{}).Where("id = ? AND revoked_at IS NULL", id).Update("revoked_at", utc(at))
		if err := dbErr(res.Error); err != nil {
			return err
		}
		if res.RowsAffected == 0 {
			var n int64
			if err := tx.Model(&tokenRow{}).Where("id = ?", id).Count(&n).Error; err != nil {
				return dbErr(err)
			}
			if n == 0 {
				return host.ErrNotFound
			}
			return nil
		}
		return insertEvents(tx, now(), []host.Record{rec})
	})
	if err != nil {
		return fmt.Errorf("store: revoke token %d: %w", id, err)
	}
	return nil
}

// RevokeOwnerTokens revokes, at at, owner's tokens of these kinds (every
// kind when kinds is empty) that are not revoked yet, and stores rec when it
// revoked any, in one transaction. It returns how many it revoked.
func (db *DB) RevokeOwnerTokens(ctx context.Context, owner string, kinds []auth.TokenKind, at time.Time, rec host.Record) (int, error) {
	var n int
	err := db.write(ctx, func(tx *gorm.DB) error {
		var err error
		n, err = revokeOwner(tx, owner, kinds, at)
		if err != nil || n == 0 {
			return err
		}
		return insertEvents(tx, now(), []host.Record{rec})
	})
	if err != nil {
		return 0, fmt.Errorf("store: revoke tokens of %s: %w", owner, err)
	}
	return n, nil
}

func revokeOwner(tx *gorm.DB, owner string, kinds []auth.TokenKind, at time.Time) (int, error) {
	if owner == "" {
		return 0, errors.New("no owner given") // "" would be every service token
	}
	q := tx.Model(&tokenRow{}).Where("owner = ? AND revoked_at IS NULL", owner)
	if len(kinds) > 0 {
		ks := make([]string, len(kinds))
		for i, k := range kinds {
			ks[i] = string(k)
		}
		q = q.Where("kind IN ?", ks)
	}
	res := q.Update("revoked_at", utc(at))
	if err := dbErr(res.Error); err != nil {
		return 0, err
	}
	return int(res.RowsAffected), nil
}

// TouchToken sets the token's last use to at (no audit record). It returns
// host.ErrNotFound for an unknown id.
func (db *DB) TouchToken(ctx context.Context, id int64, at time.Time) error {
	err := db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&tokenRow{}).Where("id = ?", id).Update("last_used_at", utc(at))
		if err := dbErr(res.Error); err != nil {
			return err
		}
		if res.RowsAffected == 0 {
			return host.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: touch token %d: %w", id, err)
	}
	return nil
}

// DeleteExpiredTokens deletes the session tokens that expired before
// before and returns how many. Service and personal tokens are kept when
// they expire (their rows say who made them and when they were last used).
func (db *DB) DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("kind = ? AND expires_at IS NOT NULL AND expires_at < ?", string(auth.TokenSession), utc(before)).Delete(&tokenRow{})
		n = int(res.RowsAffected)
		return dbErr(res.Error)
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete expired tokens: %w", err)
	}
	return n, nil
}

// DB is the store the auth service keeps its users, tokens and audit
// records in.
var _ auth.Store = (*DB)(nil)
