package store

import (
	"context"
	"fmt"

	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
)

// CreateAPIToken stores an admin API token (its hash only). It returns
// host.ErrConflict when the name or the hash is taken.
func (db *DB) CreateAPIToken(ctx context.Context, t host.APIToken) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	row := apiTokenRow{Name: t.Name, Hash: t.Hash, Role: t.Role, CreatedAt: utc(t.CreatedAt)}
	err := db.write(ctx, func(tx *gorm.DB) error { return dbErr(tx.Create(&row).Error) })
	if err != nil {
		return fmt.Errorf("store: create API token %s: %w", t.Name, err)
	}
	return nil
}

// APITokenByHash returns the token with this hash, or host.ErrNotFound.
func (db *DB) APITokenByHash(ctx context.Context, hash string) (host.APIToken, error) {
	var row apiTokenRow
	if err := dbErr(db.read(ctx).Where("hash = ?", hash).Take(&row).Error); err != nil {
		return host.APIToken{}, fmt.Errorf("store: find API token: %w", err)
	}
	return host.APIToken{Name: row.Name, Hash: row.Hash, Role: row.Role, CreatedAt: row.CreatedAt.UTC()}, nil
}

// CountAPITokens returns the number of API tokens (0 means the server still
// needs its first one).
func (db *DB) CountAPITokens(ctx context.Context) (int, error) {
	var n int64
	if err := db.read(ctx).Model(&apiTokenRow{}).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("store: count API tokens: %w", dbErr(err))
	}
	return int(n), nil
}
