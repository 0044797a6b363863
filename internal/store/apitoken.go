package store

import (
	"context"
	"fmt"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
)

// The calls below are the API of the single admin token that predates
// users and grants (cmd/bootpilot serve's bootstrap token, the old server's
// authentication). They work on the tokens table: a host.APIToken is a
// service token whose grants are [{role: Role}] on every host.

// CreateAPIToken stores a service token named t.Name with the grant t.Role
// on every host (its hash only). It returns host.ErrConflict when the name
// or the hash is taken.
func (db *DB) CreateAPIToken(ctx context.Context, t host.APIToken) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	row := tokenRow{Name: t.Name, Kind: string(auth.TokenService), Grants: encodeGrants([]auth.Grant{{Role: auth.Role(t.Role)}}),
		CreatedBy: "system:bootpilot", CreatedAt: utc(t.CreatedAt), Hash: t.Hash}
	err := db.write(ctx, func(tx *gorm.DB) error { return dbErr(tx.Create(&row).Error) })
	if err != nil {
		return fmt.Errorf("store: create API token %s: %w", t.Name, err)
	}
	return nil
}

// APITokenByHash returns the token with this hash as a host.APIToken with
// Role "admin", or host.ErrNotFound. Only active service tokens holding
// admin on every host are returned: callers of this API treat every token
// as an admin, so a personal, session, revoked, expired or lesser token
// must not pass here (use TokenByHash).
func (db *DB) APITokenByHash(ctx context.Context, hash string) (host.APIToken, error) {
	var row tokenRow
	if err := dbErr(db.read(ctx).Where("hash = ?", hash).Take(&row).Error); err != nil {
		return host.APIToken{}, fmt.Errorf("store: find API token: %w", err)
	}
	t := row.toToken()
	if t.Kind != auth.TokenService || !t.Active(now()) || !(auth.Identity{Grants: t.Grants}).CanGlobal(auth.PermAdmin) {
		return host.APIToken{}, fmt.Errorf("store: find API token: %w", host.ErrNotFound)
	}
	return host.APIToken{Name: t.Name, Hash: t.Hash, Role: string(auth.RoleAdmin), CreatedAt: t.CreatedAt}, nil
}

// CountAPITokens returns the number of service tokens, revoked ones
// included (0 means the server still needs its first one; revoking the
// bootstrap token does not bring it back).
func (db *DB) CountAPITokens(ctx context.Context) (int, error) {
	var n int64
	if err := db.read(ctx).Model(&tokenRow{}).Where("kind = ?", string(auth.TokenService)).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("store: count API tokens: %w", dbErr(err))
	}
	return int(n), nil
}
