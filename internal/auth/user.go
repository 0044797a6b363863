package auth

import (
	"time"
)

// User is a person who logs in: a local user (password hash stored here) or
// a directory user (a row kept so tokens have an owner and grants can be
// re-checked; the password is never stored). Users are unique by (Source, Name).
type User struct {
	Name         string    `json:"name"`                // "alice"
	Source       Source    `json:"source"`              // "local" or "ldap"
	Grants       []Grant   `json:"grants"`              // local: set by an admin; ldap: computed from groups at login / re-check
	Disabled     bool      `json:"disabled"`            // a disabled user cannot log in; their tokens stop working
	DN           string    `json:"dn,omitempty"`        // ldap: "CN=Alice Smith,CN=Users,DC=example,DC=test"
	CheckedAt    time.Time `json:"checked_at,omitzero"` // ldap: last time groups were read from the directory
	PasswordHash string    `json:"-"`                   // local: argon2id PHC string; never rendered
	CreatedAt    time.Time `json:"created_at,omitzero"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
}

// Identity returns u as a caller with u's grants.
func (u User) Identity() Identity { return Identity{Name: u.Name, Source: u.Source, Grants: u.Grants} }

// Actor is "local:alice" / "ldap:alice".
func (u User) Actor() string { return string(u.Source) + ":" + u.Name }

// TokenKind says what a Token is for.
type TokenKind string

// The token kinds.
const (
	TokenService  TokenKind = "service"  // a service account (CI); no owner; made by an admin
	TokenPersonal TokenKind = "personal" // a user's own API token; at most the owner's grants
	TokenSession  TokenKind = "session"  // made by login; the owner's grants; expires after session_ttl
)

// Token is an API credential. Only the SHA-256 of its secret is stored; the
// secret is shown once, when made.
type Token struct {
	ID         int64     `json:"id"`                    // 7
	Name       string    `json:"name"`                  // "ci-builder"; unique per owner ("" owner: service tokens)
	Kind       TokenKind `json:"kind"`                  // "service"
	Owner      string    `json:"owner,omitempty"`       // personal, session: the owner's actor "ldap:alice"
	Grants     []Grant   `json:"grants"`                // what the token may do (personal: further cut to the owner's current grants)
	ExpiresAt  time.Time `json:"expires_at,omitzero"`   // zero: never
	LastUsedAt time.Time `json:"last_used_at,omitzero"` // updated at most once a minute
	RevokedAt  time.Time `json:"revoked_at,omitzero"`   // zero: valid
	CreatedBy  string    `json:"created_by,omitempty"`  // actor that made it
	CreatedAt  time.Time `json:"created_at,omitzero"`   //
	Hash       string    `json:"-"`                     // SHA-256 hex of the secret
}

// Active reports whether t can be used at now (not revoked, not expired).
func (t Token) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}
