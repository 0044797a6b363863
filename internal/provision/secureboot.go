package provision

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/redfish"
)

// SecureBootRequest is a Secure Boot change through a host's BMC. It is
// also the wire type of POST /api/v1/hosts/{name}/secure-boot.
type SecureBootRequest struct {
	Action string `json:"action"`           // "enroll", "enable" or "disable"
	Enable bool   `json:"enable,omitempty"` // enroll: then enable Secure Boot
	Reason string `json:"reason,omitempty"` // for the audit trail; required to disable
}

// SecureBootStatus is a host's Secure Boot state as its BMC reports it: the
// answer of GET and POST /api/v1/hosts/{name}/secure-boot.
type SecureBootStatus struct {
	Host        string `json:"host"`
	BMC         string `json:"bmc"`                    // "https://10.0.0.10:443"
	Enabled     bool   `json:"enabled"`                // SecureBootEnable: what the firmware applies from its next boot
	CurrentBoot string `json:"current_boot,omitempty"` // "Enabled", "Disabled" (this boot); "": the BMC does not say
	Mode        string `json:"mode,omitempty"`         // "UserMode", "SetupMode", "AuditMode", "DeployedMode"
	Databases   bool   `json:"databases"`              // the BMC has SecureBootDatabases: db certificates can be enrolled
	// DBCert is the organisation's db certificate (the server's --db-cert,
	// which signs the ISOs) and whether db holds it; null when the server
	// has none.
	DBCert *DBCertStatus    `json:"db_cert"`
	DB     []SecureBootCert `json:"db"` // the certificates in db, as the BMC lists them

	// PendingRestart says the firmware has a change it applies at the next
	// restart: this call changed something, or SecureBootEnable differs
	// from the current boot's state.
	PendingRestart bool     `json:"pending_restart"`
	Changes        []string `json:"changes,omitempty"` // what this call did: "db certificate SHA256:… added"
	Message        string   `json:"message,omitempty"` // "takes effect at the next restart"
}

// DBCertStatus is the organisation's db certificate in a SecureBootStatus.
type DBCertStatus struct {
	Subject string    `json:"subject"`
	SHA256  string    `json:"sha256"` // lower hex of the DER
	Expires time.Time `json:"expires"`
	InDB    bool      `json:"in_db"`
}

// SecureBootCert is one certificate in a Secure Boot database.
type SecureBootCert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer,omitempty"`
	SHA256   string    `json:"sha256"`
	NotAfter time.Time `json:"not_after,omitzero"`
}

// PendingRestartMessage is SecureBootStatus.Message when something waits
// for the next restart.
const PendingRestartMessage = "takes effect at the next restart"

// ErrBMCUnsupported means the host's BMC lacks what an operation needs; its
// message names what is missing and the manual alternative (transports
// answer 409). It wraps the BMC's *redfish.Error, when there is one.
type ErrBMCUnsupported struct {
	Msg string
	Err error
}

func (e ErrBMCUnsupported) Error() string { return e.Msg }
func (e ErrBMCUnsupported) Unwrap() error { return e.Err }

// secureBootOps maps a SecureBootRequest's action to its op.
var secureBootOps = map[string]auth.Op{
	"enroll": auth.OpSecureBootEnroll, "enable": auth.OpSecureBootEnable, "disable": auth.OpSecureBootDisable,
}

// The audit actions of Secure Boot steps: the changing ops' own.
var (
	actionSBEnroll  = auth.RuleFor(auth.OpSecureBootEnroll).Audit  // "bmc-secure-boot-enroll"
	actionSBEnable  = auth.RuleFor(auth.OpSecureBootEnable).Audit  // "bmc-secure-boot-enable"
	actionSBDisable = auth.RuleFor(auth.OpSecureBootDisable).Audit // "bmc-secure-boot-disable"
)

// errNoDBCert: enrolment needs the certificate the ISOs are signed with.
var errNoDBCert = ErrNotConfigured{"enrolling the db certificate needs the one ISOs are signed with: start the server " +
	"with --db-key/--db-cert (or without --iso-unsigned, to use the db key in its data dir)"}

// dbCert returns the organisation's db certificate, or why there is none.
func (c *Core) dbCert() (*x509.Certificate, error) {
	if err := c.bmc.ready(); err != nil {
		return nil, err
	}
	if c.bmc.opt.DBCert == nil {
		return nil, errNoDBCert
	}
	return c.bmc.opt.DBCert, nil
}

// SecureBoot reads host name's Secure Boot state through its BMC, and
// whether db holds the organisation's certificate. It changes nothing.
func (c *Core) SecureBoot(ctx context.Context, cl Caller, name string) (SecureBootStatus, error) {
	if _, err := c.authorizeHost(ctx, cl, auth.OpSecureBoot, name); err != nil {
		return SecureBootStatus{}, err
	}
	var res SecureBootStatus
	err := c.dialDo(ctx, name, nil, func(rc *redfish.Client) error {
		var err error
		res, err = c.secureBootStatus(ctx, rc, name)
		return err
	})
	return res, err
}

// ChangeSecureBoot enrols the organisation's db certificate in host name's
// db through its BMC (when db lacks it; with Enable, then enables Secure
// Boot), or enables or disables Secure Boot (disabling needs a reason).
// Each step is audited (a failed one as redfish-failed); the answer is the
// state after, PendingRestart when something changed: the firmware applies
// it at the next restart.
func (c *Core) ChangeSecureBoot(ctx context.Context, cl Caller, name string, r SecureBootRequest) (_ SecureBootStatus, err error) {
	op, ok := secureBootOps[r.Action]
	if !ok {
		op = auth.OpSecureBootEnroll // invisible hosts stay 404 whatever the body says
	}
	if _, err := c.authorizeHost(ctx, cl, op, name); err != nil {
		return SecureBootStatus{}, err
	}
	if r.Enable && ok && r.Action == "enroll" {
		if _, err := c.authorizeHost(ctx, cl, auth.OpSecureBootEnable, name); err != nil {
			return SecureBootStatus{}, err
		}
	}
	switch {
	case !ok:
		return SecureBootStatus{}, host.Invalid("action", "%q is not enroll, enable or disable", r.Action)
	case r.Enable && r.Action != "enroll":
		return SecureBootStatus{}, host.Invalid("enable", "only enroll takes enable (then enable Secure Boot)")
	case r.Action == "disable" && strings.TrimSpace(r.Reason) == "":
		return SecureBootStatus{}, host.Invalid("reason", "required to disable Secure Boot (a security downgrade, recorded in the audit log)")
	case len(r.Reason) > 1000:
		return SecureBootStatus{}, host.Invalid("reason", "longer than 1000 characters")
	}
	ch := sbChange{reason: r.Reason}
	if r.Action == "enroll" {
		if ch.enroll, err = c.dbCert(); err != nil {
			return SecureBootStatus{}, err
		}
	}
	if r.Action != "enroll" || r.Enable {
		enable := r.Action != "disable"
		ch.set = &enable
	}
	return c.changeSecureBoot(ctx, cl, name, ch, nil)
}

// sbChange is what changeSecureBoot does.
type sbChange struct {
	enroll *x509.Certificate // enrol it in db when missing; nil: no enrolment
	set    *bool             // then enable (true) or disable (false) Secure Boot; nil: leave it
	reason string            // for the audit trail
}

// changeSecureBoot makes ch on host name through its BMC (running, if not
// nil, is called once the BMC is ours) and returns the state after. Each
// step is audited; a failed one as redfish-failed.
func (c *Core) changeSecureBoot(ctx context.Context, cl Caller, name string, ch sbChange, running func()) (_ SecureBootStatus, err error) {
	var res SecureBootStatus
	var changes []string
	step := "connect to the BMC"
	defer func() { c.auditFailure(ctx, cl, name, step, err) }()
	err = c.dialDo(ctx, name, running, func(rc *redfish.Client) error {
		if ch.enroll != nil {
			step = "enroll the db certificate"
			done, err := c.enrollDB(ctx, cl, rc, name, ch.enroll, ch.reason)
			if err != nil {
				return err
			}
			changes = append(changes, done...)
		}
		if ch.set != nil {
			step = map[bool]string{true: "enable Secure Boot", false: "disable Secure Boot"}[*ch.set]
			done, err := c.setSecureBoot(ctx, cl, rc, name, *ch.set, ch.reason)
			if err != nil {
				return err
			}
			changes = append(changes, done...)
		}
		step = "read Secure Boot"
		var err error
		res, err = c.secureBootStatus(ctx, rc, name)
		return err
	})
	if err != nil {
		return SecureBootStatus{}, err
	}
	res.Changes = changes
	if len(changes) > 0 {
		res.PendingRestart, res.Message = true, PendingRestartMessage
	}
	return res, nil
}

// secureBootStatus reads the state through rc.
func (c *Core) secureBootStatus(ctx context.Context, rc *redfish.Client, name string) (SecureBootStatus, error) {
	st, err := rc.SecureBootState(ctx)
	if err != nil {
		return SecureBootStatus{}, unsupported(rc, err)
	}
	res := SecureBootStatus{Host: name, BMC: rc.BMC(), Enabled: st.Enabled, CurrentBoot: st.CurrentBoot, Mode: st.Mode,
		Databases: st.Databases, DB: []SecureBootCert{}}
	for _, x := range st.DB {
		res.DB = append(res.DB, SecureBootCert{Subject: x.Subject, Issuer: x.Issuer, SHA256: x.SHA256, NotAfter: x.NotAfter})
	}
	if c.bmc.opt.DBCert != nil {
		cert := c.bmc.opt.DBCert
		res.DBCert = &DBCertStatus{Subject: cert.Subject.String(), SHA256: pki.Fingerprint(cert), Expires: cert.NotAfter,
			InDB: inDB(st, cert)}
	}
	if st.CurrentBoot != "" && st.Enabled != (st.CurrentBoot == "Enabled") {
		res.PendingRestart, res.Message = true, PendingRestartMessage
	}
	return res, nil
}

// inDB reports whether st's db holds cert (by the SHA-256 of its DER).
func inDB(st redfish.SecureBootState, cert *x509.Certificate) bool {
	fp := pki.Fingerprint(cert)
	return slices.ContainsFunc(st.DB, func(x redfish.Cert) bool { return strings.EqualFold(x.SHA256, fp) })
}

// enrollDB adds cert to host name's db through rc when db lacks it (the
// fingerprints are compared first), and audits what it found or did. It
// returns the change made, if any.
func (c *Core) enrollDB(ctx context.Context, cl Caller, rc *redfish.Client, name string, cert *x509.Certificate, reason string) ([]string, error) {
	st, err := rc.SecureBootState(ctx)
	if err != nil {
		return nil, unsupported(rc, err)
	}
	if !st.Databases {
		return nil, noDatabases(rc.BMC(), nil)
	}
	fp := "SHA256:" + pki.Fingerprint(cert)
	added := false
	if !inDB(st, cert) {
		if added, err = rc.EnrollDB(ctx, cert); err != nil {
			return nil, unsupported(rc, err)
		}
	}
	why := fmt.Sprintf("db certificate %s (%s) already in db of BMC %s", fp, cert.Subject, rc.BMC())
	if added {
		why = fmt.Sprintf("db certificate %s (%s) added through BMC %s; %s", fp, cert.Subject, rc.BMC(), PendingRestartMessage)
	}
	if reason != "" {
		why += ": " + reason
	}
	c.auditHost(ctx, name, cl.record(c.now(), name, actionSBEnroll, why))
	if !added {
		return nil, nil
	}
	return []string{"db certificate " + fp + " added"}, nil
}

// setSecureBoot enables or disables Secure Boot through rc when it is not
// so already (SecureBootEnable), audited. It returns the change made, if
// any.
func (c *Core) setSecureBoot(ctx context.Context, cl Caller, rc *redfish.Client, name string, enable bool, reason string) ([]string, error) {
	st, err := rc.SecureBootState(ctx)
	if err != nil {
		return nil, unsupported(rc, err)
	}
	verb, action := "enabled", actionSBEnable
	if !enable {
		verb, action = "disabled", actionSBDisable
	}
	if st.Enabled == enable {
		return nil, nil
	}
	if err := rc.SetSecureBoot(ctx, enable); err != nil {
		return nil, unsupported(rc, err)
	}
	why := fmt.Sprintf("Secure Boot %s through BMC %s; %s", verb, rc.BMC(), PendingRestartMessage)
	if reason != "" {
		why += ": " + reason
	}
	c.auditHost(ctx, name, cl.record(c.now(), name, action, why))
	return []string{"Secure Boot " + verb}, nil
}

// manualEnrol is the way around a BMC that cannot enrol db certificates.
const manualEnrol = "enrol the certificate by hand in each host's UEFI setup (Secure Boot → db → enrol from file), " +
	"or boot through the Microsoft-signed shim and enrol it as a MOK with mokutil; " +
	"see README: Secure Boot on a factory-keyed fleet"

// unsupported turns a BMC's ErrUnsupported into ErrBMCUnsupported (naming
// what is missing and the manual alternative); other errors pass.
func unsupported(rc *redfish.Client, err error) error {
	if !errors.Is(err, redfish.ErrUnsupported) {
		return err
	}
	if strings.Contains(err.Error(), "SecureBootDatabases") {
		return noDatabases(rc.BMC(), err)
	}
	return ErrBMCUnsupported{Msg: fmt.Sprintf("BMC %s has no Redfish SecureBoot resource, so bootpilot cannot read or "+
		"change Secure Boot through it (%v): %s", rc.BMC(), err, manualEnrol), Err: err}
}

// noDatabases is the error of enrolment through a BMC without
// SecureBootDatabases.
func noDatabases(bmc string, err error) error {
	what := "has no SecureBootDatabases (Redfish SecureBoot v1.1)"
	if err != nil {
		what = "cannot enrol through SecureBootDatabases (" + err.Error() + ")"
	}
	return ErrBMCUnsupported{Msg: fmt.Sprintf("BMC %s %s, so the db certificate cannot be enrolled through it: %s",
		bmc, what, manualEnrol), Err: err}
}

// BulkSecureBootRequest is a bulk enrolment of the db certificate. It is
// also the wire type of POST /api/v1/bulk/secure-boot-enroll.
type BulkSecureBootRequest struct {
	Selector BulkSelector `json:"selector"`
	Enable   bool         `json:"enable,omitempty"` // then enable Secure Boot
	Reason   string       `json:"reason"`           // for the audit trail
}

// JobSecureBootEnroll is the Action of a bulk enrolment job.
const JobSecureBootEnroll = "secure-boot-enroll"

// StartBulkSecureBoot queues a job that enrols the organisation's db
// certificate (then, with Enable, enables Secure Boot) through the BMC of
// each selected host, as ChangeSecureBoot does, one operation per BMC at a
// time and a global limit. Hosts are selected and reported as by StartBulk
// (among those cl may enrol on), and every host is authorized again for
// the enrolment (and enabling) when its turn comes.
func (c *Core) StartBulkSecureBoot(ctx context.Context, cl Caller, r BulkSecureBootRequest) (Job, error) {
	if err := cl.Authorize(auth.OpBulkSecureBoot, nil); err != nil {
		return Job{}, err
	}
	if len(r.Reason) > 1000 {
		return Job{}, host.Invalid("reason", "longer than 1000 characters")
	}
	if c.bmc == nil {
		return Job{}, ErrNotConfigured{"bulk jobs are not enabled on this server"}
	}
	cert, err := c.dbCert()
	if err != nil {
		return Job{}, err
	}
	names, err := c.selectHosts(ctx, cl, auth.OpSecureBootEnroll, r.Selector)
	if err != nil {
		return Job{}, err
	}
	what := "enrol the db certificate SHA256:" + pki.Fingerprint(cert) + " via redfish"
	ops := []auth.Op{auth.OpSecureBootEnroll}
	if r.Enable {
		what += ", then enable Secure Boot"
		ops = append(ops, auth.OpSecureBootEnable)
	}
	return c.startJob(ctx, cl, JobSecureBootEnroll, "redfish", names, what, r.Reason,
		func(ctx context.Context, id string, i int, name string) error {
			if err := c.authorizeJobHost(ctx, cl, name, ops...); err != nil {
				return err
			}
			ch := sbChange{enroll: cert, reason: r.Reason}
			if r.Enable {
				ch.set = &r.Enable
			}
			_, err := c.changeSecureBoot(ctx, cl, name, ch, c.jobBMC(ctx, id, i, name))
			return err
		})
}
