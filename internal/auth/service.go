package auth

import (
	"time"
)

// AuditFilter selects audit records for Service.Audit and the store's
// ListEvents. Zero fields match everything.
type AuditFilter struct {
	Actor  string    // only records by this actor: "ldap:alice"
	Host   string    // only records about this host: "node01"
	Action string    // only records of this kind (Record.Kind): "reimage", "login-failed"
	Since  time.Time // only records at or after Since
	Until  time.Time // only records before Until
	Before int64     // a page cursor: only records with ids below Before; 0: the newest
	Limit  int       // at most this many; 0: no limit
}

// TokenFilter selects tokens for ListTokens.
type TokenFilter struct {
	Owner string      // with All false: only this owner's tokens ("" is the service tokens)
	All   bool        // every owner's tokens
	Kinds []TokenKind // only these kinds; empty: every kind
}
