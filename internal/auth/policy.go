package auth

import (
	"fmt"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Op names one core call ("host.reimage"). The policy table below says, for
// every op, the permission it needs, whether that permission is checked on a
// host (its labels against the grants' selectors) or globally, and the audit
// action a successful call writes ("" for reads). Transports map each of
// their routes to exactly one Op; a test walks the route table.
type Op string

// Scope says how an op's permission is checked.
type Scope int

// The scopes.
const (
	ScopeHost   Scope = iota // on one host: invisible → 404, visible but not allowed → 403
	ScopeGlobal              // on no host: needs an unscoped grant
	ScopeSelf                // any authenticated caller, on their own things (whoami, own tokens)
	ScopePublic              // no authentication (login, the boot API, health)
)

// Rule is one row of the policy table.
type Rule struct {
	Perm  Permission // what the caller needs (unused for ScopeSelf/ScopePublic)
	Scope Scope
	Audit string // the audit action a successful call writes; "" for reads
}

// Mutating reports whether the op changes anything (and so is audited).
func (r Rule) Mutating() bool { return r.Audit != "" }

// The ops. Host lifecycle ops audit under their lifecycle event name.
const (
	OpHostList    Op = "host.list"
	OpHostGet     Op = "host.get"
	OpHostEvents  Op = "host.events"
	OpHostPreview Op = "host.preview"
	OpHostCreate  Op = "host.create"
	OpHostUpdate  Op = "host.update"
	OpHostDelete  Op = "host.delete"
	OpHostImport  Op = "host.import"
	OpImportPlan  Op = "host.import-plan" // a dry run: what an import would do, nothing stored

	OpHostReimage Op = "host.reimage"
	OpHostClean   Op = "host.clean"
	OpHostCancel  Op = "host.cancel"
	OpHostRetry   Op = "host.retry"
	OpHostHold    Op = "host.hold"
	OpHostRelease Op = "host.release"
	OpHostAdopt   Op = "host.adopt"
	OpHostISO     Op = "host.iso"
	OpBootToken   Op = "host.boot-token"

	OpBMCGet    Op = "bmc.get"
	OpBMCSet    Op = "bmc.set"
	OpBMCDelete Op = "bmc.delete"
	OpBMCTest   Op = "bmc.test"
	OpPower     Op = "bmc.power"
	OpMediaIn   Op = "bmc.media-insert"
	OpMediaOut  Op = "bmc.media-eject"

	// Secure Boot through the BMC (secureboot.go in provision): reading it
	// uses the stored BMC credentials, like bmc.test; changing what the
	// firmware trusts is an edit. POST /hosts/{name}/secure-boot runs one
	// of the three changing ops, by its action (the same permission).
	OpSecureBoot        Op = "bmc.secure-boot"
	OpSecureBootEnroll  Op = "bmc.secure-boot-enroll"
	OpSecureBootEnable  Op = "bmc.secure-boot-enable"
	OpSecureBootDisable Op = "bmc.secure-boot-disable"
	OpBulkSecureBoot    Op = "bulk.secure-boot-enroll"

	OpBulk       Op = "bulk.start"
	OpJobList    Op = "job.list"
	OpJobGet     Op = "job.get"
	OpVersion    Op = "version"
	OpProfList   Op = "profile.list"
	OpProfGet    Op = "profile.get"
	OpProfCreate Op = "profile.create"
	OpProfUpdate Op = "profile.update"
	OpProfDelete Op = "profile.delete"
	OpImgUpload  Op = "image.upload"
	OpImgFetch   Op = "image.fetch"

	OpAuditRead Op = "audit.read"

	OpUserList    Op = "user.list"
	OpUserGet     Op = "user.get"
	OpUserCreate  Op = "user.create"
	OpUserUpdate  Op = "user.update"
	OpUserDelete  Op = "user.delete"
	OpTokenAll    Op = "token.list-all"   // every token, any owner
	OpTokenOther  Op = "token.revoke-any" // revoke anyone's token
	OpServiceMake Op = "token.create-service"

	OpWhoami      Op = "session.whoami"
	OpLogout      Op = "session.logout"
	OpTokenCreate Op = "token.create" // a personal token, within the caller's grants
	OpTokenList   Op = "token.list"   // the caller's own tokens
	OpTokenRevoke Op = "token.revoke" // one of the caller's own tokens

	OpLogin  Op = "session.login"
	OpPublic Op = "public" // boot API, health, metrics, media: authenticated otherwise (boot token, signed URL) or not at all
)

// policy is the one policy table.
var policy = map[Op]Rule{
	OpHostList:    {PermRead, ScopeHost, ""},
	OpHostGet:     {PermRead, ScopeHost, ""},
	OpHostEvents:  {PermRead, ScopeHost, ""},
	OpHostPreview: {PermRead, ScopeHost, ""},
	OpHostCreate:  {PermEdit, ScopeHost, "create"},
	OpHostUpdate:  {PermEdit, ScopeHost, "update"},
	OpHostDelete:  {PermEdit, ScopeHost, "delete"},
	OpHostImport:  {PermEdit, ScopeHost, "create"},
	OpImportPlan:  {PermEdit, ScopeHost, ""},

	OpHostReimage: {PermOperate, ScopeHost, string(host.EventReimage)},
	OpHostClean:   {PermOperate, ScopeHost, string(host.EventClean)},
	OpHostCancel:  {PermOperate, ScopeHost, string(host.EventCancel)},
	OpHostRetry:   {PermOperate, ScopeHost, string(host.EventRetry)},
	OpHostHold:    {PermOperate, ScopeHost, string(host.EventHold)},
	OpHostRelease: {PermOperate, ScopeHost, string(host.EventRelease)},
	OpHostAdopt:   {PermOperate, ScopeHost, string(host.EventAdopt)},
	OpHostISO:     {PermOperate, ScopeHost, "token-rotate"},
	OpBootToken:   {PermOperate, ScopeHost, "token-rotate"},

	OpBMCGet:    {PermRead, ScopeHost, ""},
	OpBMCSet:    {PermEdit, ScopeHost, "bmc-set"},
	OpBMCDelete: {PermEdit, ScopeHost, "bmc-delete"},
	OpBMCTest:   {PermOperate, ScopeHost, "bmc-test"},
	OpPower:     {PermOperate, ScopeHost, "redfish-power"},
	OpMediaIn:   {PermOperate, ScopeHost, "redfish-insert"},
	OpMediaOut:  {PermOperate, ScopeHost, "redfish-eject"},

	OpSecureBoot:        {PermOperate, ScopeHost, ""},
	OpSecureBootEnroll:  {PermEdit, ScopeHost, "bmc-secure-boot-enroll"},
	OpSecureBootEnable:  {PermEdit, ScopeHost, "bmc-secure-boot-enable"},
	OpSecureBootDisable: {PermEdit, ScopeHost, "bmc-secure-boot-disable"},
	OpBulkSecureBoot:    {PermEdit, ScopeHost, "bulk"},

	OpBulk:    {PermOperate, ScopeHost, "bulk"},
	OpJobList: {PermRead, ScopeHost, ""},
	OpJobGet:  {PermRead, ScopeHost, ""},

	OpVersion:    {PermRead, ScopeSelf, ""},
	OpProfList:   {PermRead, ScopeSelf, ""},
	OpProfGet:    {PermRead, ScopeSelf, ""},
	OpProfCreate: {PermEdit, ScopeGlobal, "profile-create"},
	OpProfUpdate: {PermEdit, ScopeGlobal, "profile-update"},
	OpProfDelete: {PermEdit, ScopeGlobal, "profile-delete"},
	OpImgUpload:  {PermEdit, ScopeGlobal, "image-upload"},
	OpImgFetch:   {PermEdit, ScopeGlobal, "image-fetch"},

	OpAuditRead: {PermAudit, ScopeGlobal, ""},

	OpUserList:    {PermAdmin, ScopeGlobal, ""},
	OpUserGet:     {PermAdmin, ScopeGlobal, ""},
	OpUserCreate:  {PermAdmin, ScopeGlobal, "user-create"},
	OpUserUpdate:  {PermAdmin, ScopeGlobal, "user-update"},
	OpUserDelete:  {PermAdmin, ScopeGlobal, "user-delete"},
	OpTokenAll:    {PermAdmin, ScopeGlobal, ""},
	OpTokenOther:  {PermAdmin, ScopeGlobal, "token-revoke"},
	OpServiceMake: {PermAdmin, ScopeGlobal, "token-create"},

	OpWhoami:      {"", ScopeSelf, ""},
	OpLogout:      {"", ScopeSelf, "logout"},
	OpTokenCreate: {"", ScopeSelf, "token-create"},
	OpTokenList:   {"", ScopeSelf, ""},
	OpTokenRevoke: {"", ScopeSelf, "token-revoke"},

	OpLogin:  {"", ScopePublic, "login"},
	OpPublic: {"", ScopePublic, ""},
}

// RuleFor returns op's rule; an op without one is a programming error.
func RuleFor(op Op) Rule {
	r, ok := policy[op]
	if !ok {
		panic(fmt.Sprintf("auth: op %q has no policy", op))
	}
	return r
}

// Ops lists every op in the table (for tests that walk it).
func Ops() []Op {
	out := make([]Op, 0, len(policy))
	for op := range policy {
		out = append(out, op)
	}
	return out
}

// Authorize checks that id may run op. For ScopeHost ops, labels are the
// host's labels (nil for a list or a create checks only that some grant
// carries the permission: the list is filtered, the new host checked by
// AuthorizeHost). It returns host.ErrForbidden, or host.ErrNotFound when
// the host is invisible to id, so that a caller cannot probe for hosts
// outside their grants.
func (id Identity) Authorize(op Op, labels map[string]string) error {
	r := RuleFor(op)
	switch r.Scope {
	case ScopePublic, ScopeSelf:
		if r.Scope == ScopeSelf && r.Perm != "" && !id.Can(r.Perm, nil) && !anyGrant(id, r.Perm) {
			return host.ErrForbidden
		}
		return nil
	case ScopeGlobal:
		if !id.CanGlobal(r.Perm) {
			return host.ErrForbidden
		}
		return nil
	}
	if labels == nil {
		if !anyGrant(id, r.Perm) {
			return host.ErrForbidden
		}
		return nil
	}
	if !id.Sees(labels) {
		return host.ErrNotFound
	}
	if !id.Can(r.Perm, labels) {
		return host.ErrForbidden
	}
	return nil
}

// anyGrant reports whether some grant of id carries p, on any hosts.
func anyGrant(id Identity, p Permission) bool {
	for _, g := range id.Grants {
		if g.Role.Has(p) {
			return true
		}
	}
	return false
}
