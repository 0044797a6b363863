// Package auth is who may do what: identities (local users, directory
// users, service and personal tokens, sessions), roles and the permissions
// they carry, grants scoped by host label selectors, password hashing, login
// throttling and the LDAP / Active Directory client. No HTTP and no database:
// the core (internal/provision) asks it questions, the store keeps its rows.
package auth

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Role is a named set of permissions. The matrix (README "Roles") is the
// contract: rolePermissions below is its only copy.
type Role string

// The roles.
const (
	RoleViewer   Role = "viewer"   // reads hosts, profiles, images, BMC settings, jobs, host events
	RoleOperator Role = "operator" // viewer + lifecycle actions, power, media, ISO, boot tokens, bulk
	RoleEditor   Role = "editor"   // viewer + create/edit/delete hosts, profiles, images, BMC; import
	RoleAuditor  Role = "auditor"  // viewer + the global audit log
	RoleAdmin    Role = "admin"    // everything, incl. users, grants and other people's tokens
)

// Roles lists every role, least to most privileged.
var Roles = []Role{RoleViewer, RoleOperator, RoleEditor, RoleAuditor, RoleAdmin}

// Permission is what one call needs.
type Permission string

// The permissions.
const (
	PermRead    Permission = "read"    // see hosts, profiles, images, BMC settings (never secrets), jobs, host events
	PermOperate Permission = "operate" // reimage, clean, cancel, retry, hold, release, adopt, power, media, ISO, boot token, bulk
	PermEdit    Permission = "edit"    // create / edit / delete hosts, profiles, images, BMC settings; import
	PermAudit   Permission = "audit"   // read and export the global audit log
	PermAdmin   Permission = "admin"   // users, grants, other people's tokens
)

// rolePermissions is the role matrix.
var rolePermissions = map[Role][]Permission{
	RoleViewer:   {PermRead},
	RoleOperator: {PermRead, PermOperate},
	RoleEditor:   {PermRead, PermEdit},
	RoleAuditor:  {PermRead, PermAudit},
	RoleAdmin:    {PermRead, PermOperate, PermEdit, PermAudit, PermAdmin},
}

// Within reports whether every permission of r is also one of o's: a
// viewer is within an operator, an operator within an admin.
func (r Role) Within(o Role) bool {
	for _, p := range rolePermissions[r] {
		if !o.Has(p) {
			return false
		}
	}
	_, known := rolePermissions[r]
	return known
}

// Has reports whether role r carries permission p.
func (r Role) Has(p Permission) bool { return slices.Contains(rolePermissions[r], p) }

// ParseRole returns the role named s, or a *host.ValidationError for "role".
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if _, ok := rolePermissions[r]; !ok {
		return "", host.Invalid("role", "unknown role %q (one of viewer, operator, editor, auditor, admin)", s)
	}
	return r, nil
}

// Grant gives a role on the hosts a selector matches (every host when Hosts
// is empty). On the wire: {"role":"operator","hosts":"team=lab"}.
type Grant struct {
	Role  Role   `json:"role"`            // "operator"
	Hosts string `json:"hosts,omitempty"` // "team=lab,site=dc1"; "": all hosts and global resources
}

// Check validates g: a known role and a well-formed selector.
func (g Grant) Check() error {
	if _, err := ParseRole(string(g.Role)); err != nil {
		return err
	}
	if _, err := ParseSelector(g.Hosts); err != nil {
		return err
	}
	return nil
}

// String renders g as "operator" or "operator@team=lab".
func (g Grant) String() string {
	if g.Hosts == "" {
		return string(g.Role)
	}
	return string(g.Role) + "@" + g.Hosts
}

// ParseGrant reads "ROLE" or "ROLE@SELECTOR" (the CLI's form).
func ParseGrant(s string) (Grant, error) {
	role, hosts, _ := strings.Cut(s, "@")
	g := Grant{Role: Role(role), Hosts: hosts}
	if err := g.Check(); err != nil {
		return Grant{}, err
	}
	sel, _ := ParseSelector(hosts)
	g.Hosts = sel.String()
	return g, nil
}

// Source says where an identity comes from.
type Source string

// The sources; an actor string is "SOURCE:NAME" ("ldap:alice").
const (
	SourceLDAP   Source = "ldap"   // a directory user, logged in by bind
	SourceLocal  Source = "local"  // a local user (break-glass, small sites)
	SourceToken  Source = "token"  // a service account's API token
	SourceHost   Source = "host"   // a booting host: boot-side events
	SourceSystem Source = "system" // the server itself: sweeps, migrations
	SourceOS     Source = "os"     // a person using the CLI with direct database access on the server's machine ("os:root")
)

// OSUser is the CLI's identity on paths that open the database directly
// (bootpilot iso build --from-db): whoever can read the database and the
// keys is an admin already; the audit trail names their login.
func OSUser(name string) Identity {
	if name == "" {
		name = "unknown"
	}
	return Identity{Name: name, Source: SourceOS, Grants: []Grant{{Role: RoleAdmin}}}
}

// Identity is the caller of a core call, as authenticated by the transport.
type Identity struct {
	Name   string  // "alice", "ci-builder", "node01"
	Source Source  // "ldap"
	Grants []Grant // effective grants; their union is what the caller may do
	Token  string  // the API token's name when the caller used a personal or service token; "" for a session
	// Expires is when the credential used stops working (zero: never).
	Expires time.Time
}

// Actor renders id for audit events: "ldap:alice", "token:ci-builder".
func (id Identity) Actor() string { return string(id.Source) + ":" + id.Name }

// System is the server acting on its own (sweeps, startup).
var System = Identity{Name: "bootpilot", Source: SourceSystem, Grants: []Grant{{Role: RoleAdmin}}}

// HostIdentity is a booting host or its installer calling the boot API.
func HostIdentity(name string) Identity { return Identity{Name: name, Source: SourceHost} }

// Can reports whether id may do p on a host with these labels: some grant
// carries p and its selector matches.
func (id Identity) Can(p Permission, labels map[string]string) bool {
	for _, g := range id.Grants {
		if g.Role.Has(p) && selectorMatches(g.Hosts, labels) {
			return true
		}
	}
	return false
}

// Sees reports whether a host with these labels is visible to id at all
// (every role reads): a host outside every grant is invisible (404).
func (id Identity) Sees(labels map[string]string) bool { return id.Can(PermRead, labels) }

// CanGlobal reports whether id may do p on resources that belong to no host
// (profiles, images, the audit log, users): only an unscoped grant counts.
func (id Identity) CanGlobal(p Permission) bool {
	for _, g := range id.Grants {
		if g.Role.Has(p) && g.Hosts == "" {
			return true
		}
	}
	return false
}

// Scopes returns the selectors under which id has p, for filtering lists in
// the store: nil means none, a slice holding an empty Selector means all.
func (id Identity) Scopes(p Permission) []Selector {
	var out []Selector
	for _, g := range id.Grants {
		if !g.Role.Has(p) {
			continue
		}
		sel, err := ParseSelector(g.Hosts)
		if err != nil {
			continue // never stored: grants are checked when made
		}
		if len(sel) == 0 {
			return []Selector{{}}
		}
		out = append(out, sel)
	}
	return out
}

// Covers reports whether every grant in want is within what id holds: a
// role whose permissions are all in a held role's, on a selector at least
// as wide (an operator may give a token viewer on its hosts). It is the "no
// escalation" rule for personal tokens.
func (id Identity) Covers(want []Grant) bool {
	for _, w := range want {
		ok := false
		for _, g := range id.Grants {
			if w.Role.Within(g.Role) && selectorWithin(w.Hosts, g.Hosts) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Intersect returns the grants of want that have still cover in held: a
// personal token's effective grants are its own grants as far as its owner
// still holds them.
func Intersect(want, held []Grant) []Grant {
	owner := Identity{Grants: held}
	var out []Grant
	for _, w := range want {
		if owner.Covers([]Grant{w}) {
			out = append(out, w)
		}
	}
	return out
}

// ErrThrottled is returned by Throttle.Check while a key must wait.
var ErrThrottled = errors.New("too many failed logins; wait and try again")
