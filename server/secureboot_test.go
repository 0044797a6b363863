package server_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/pki"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/server"
)

// testDBCert makes a Secure Boot db certificate as serve does (the db key
// in a data dir).
func testDBCert(t *testing.T) *x509.Certificate {
	t.Helper()
	db, _, err := pki.EnsureDB(pki.DBFilesIn(t.TempDir()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return db.Cert
}

// withDBCert configures the server's db certificate.
func withDBCert(cert *x509.Certificate) func(*server.Options) {
	return func(o *server.Options) { o.DBCert = cert }
}

// startSim serves a simulated BMC configured by cfg over TLS.
func startSim(t *testing.T, cfg bmcsim.Config) *simBMC {
	t.Helper()
	s := &simBMC{BMC: bmcsim.New(cfg)}
	s.srv = httptest.NewTLSServer(s.BMC)
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(s.srv.Close)
	return s
}

// setSimBMC points host name's BMC at sim (its CA pinned).
func (e *rfEnv) setSimBMC(name string, sim *simBMC) {
	e.t.Helper()
	e.mustDo(200, "PUT", "/api/v1/hosts/"+name+"/bmc", map[string]any{"url": sim.srv.URL, "username": bmcUser,
		"password": bmcPass, "ca_pem": sim.caPEM()}, nil)
}

// hostEvents returns host name's audit events, oldest first.
func (e *rfEnv) hostEvents(name string) []host.Record {
	e.t.Helper()
	evs, err := e.db.ListEvents(context.Background(), store.AuditFilter{Host: name, Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(evs, func(a, b host.Record) int { return int(a.ID - b.ID) })
	return evs
}

// eventsOf returns the reasons of events with action.
func eventsOf(evs []host.Record, action string) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind() == action {
			out = append(out, ev.Reason)
		}
	}
	return out
}

// dbHolds counts cert in the BMC's db (pending changes included).
func dbHolds(sim *bmcsim.BMC, cert *x509.Certificate) int {
	n := 0
	for _, der := range sim.State().SecureBootDB {
		if bytes.Equal(der, cert.Raw) {
			n++
		}
	}
	return n
}

// TestSecureBootThroughBMC: status, enrolment of the org's db certificate
// (idempotent), enable, disable (needs a reason), each step audited, on
// every database.
func TestSecureBootThroughBMC(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		cert := testDBCert(t)
		fp := pki.Fingerprint(cert)
		e := newRFEnv(t, driver, 4096, withDBCert(cert))
		sim := newSimBMC(t, bmcsim.Quirks{}, nil)
		e.addHost("node01", mac1, "10.0.2.15/24")

		if code, body := e.raw("GET", "/api/v1/hosts/node01/secure-boot", nil); code != 404 || !strings.Contains(body, "no BMC") {
			t.Errorf("status without a BMC = %d %s, want 404 saying so", code, body)
		}
		e.setSimBMC("node01", sim)

		var st provision.SecureBootStatus
		e.mustDo(200, "GET", "/api/v1/hosts/node01/secure-boot", nil, &st)
		if !st.Enabled || st.CurrentBoot != "Enabled" || !st.Databases || st.DBCert == nil || st.DBCert.InDB ||
			st.DBCert.SHA256 != fp || st.PendingRestart || st.BMC == "" {
			t.Errorf("status = %+v, want enabled, databases, org cert %s not in db, nothing pending", st, fp)
		}

		st = provision.SecureBootStatus{}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "enroll", "reason": "fleet key"}, &st)
		if !st.DBCert.InDB || !st.PendingRestart || st.Message != provision.PendingRestartMessage || len(st.Changes) != 1 {
			t.Errorf("enroll = %+v, want the cert in db, pending restart", st)
		}
		if n := dbHolds(sim.BMC, cert); n != 1 {
			t.Errorf("after enroll the BMC's db holds the cert %d times, want 1", n)
		}
		st = provision.SecureBootStatus{}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "enroll"}, &st)
		if !st.DBCert.InDB || st.PendingRestart || len(st.Changes) != 0 {
			t.Errorf("second enroll = %+v, want no change", st)
		}
		if n := dbHolds(sim.BMC, cert); n != 1 {
			t.Errorf("after a second enroll the BMC's db holds the cert %d times, want 1", n)
		}

		if code, body := e.raw("POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "disable"}); code != 400 ||
			!strings.Contains(body, `"field":"reason"`) {
			t.Errorf("disable without a reason = %d %s, want 400 on reason", code, body)
		}
		if code, _ := e.raw("POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "reboot"}); code != 400 {
			t.Errorf("action reboot = %d, want 400", code)
		}
		if code, _ := e.raw("POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "disable", "enable": true, "reason": "x"}); code != 400 {
			t.Errorf("disable with enable = %d, want 400", code)
		}
		st = provision.SecureBootStatus{}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "disable", "reason": "vendor driver test"}, &st)
		if st.Enabled || st.CurrentBoot != "Enabled" || !st.PendingRestart || sim.State().SecureBootEnable {
			t.Errorf("disable = %+v, BMC %+v, want disabled from the next boot", st, sim.State())
		}
		st = provision.SecureBootStatus{}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "enable"}, &st)
		if !st.Enabled || !sim.State().SecureBootEnable {
			t.Errorf("enable = %+v", st)
		}

		evs := e.hostEvents("node01")
		enrol := eventsOf(evs, "bmc-secure-boot-enroll")
		if len(enrol) != 2 || !strings.Contains(enrol[0], "SHA256:"+fp+" ") || !strings.Contains(enrol[0], "added through BMC") ||
			!strings.Contains(enrol[0], "takes effect at the next restart: fleet key") || !strings.Contains(enrol[1], "already in db") {
			t.Errorf("enroll events = %q", enrol)
		}
		if d := eventsOf(evs, "bmc-secure-boot-disable"); len(d) != 1 || !strings.Contains(d[0], "vendor driver test") {
			t.Errorf("disable events = %q", d)
		}
		if en := eventsOf(evs, "bmc-secure-boot-enable"); len(en) != 1 {
			t.Errorf("enable events = %q", en)
		}
	})
}

// TestSecureBootUnsupported: a BMC without SecureBootDatabases answers 409
// naming it and the manual alternative (audited as redfish-failed); the
// status still works. A server without a db certificate answers 501 on
// enrolment.
func TestSecureBootUnsupported(t *testing.T) {
	cert := testDBCert(t)
	e := newRFEnv(t, "sqlite", 4096, withDBCert(cert))
	sim := newSimBMC(t, bmcsim.Quirks{NoSecureBootDatabases: true}, nil)
	e.addHost("node01", mac1, "10.0.2.15/24")
	e.setSimBMC("node01", sim)

	var st provision.SecureBootStatus
	e.mustDo(200, "GET", "/api/v1/hosts/node01/secure-boot", nil, &st)
	if st.Databases || st.DBCert == nil || st.DBCert.InDB {
		t.Errorf("status = %+v, want no databases", st)
	}
	code, body := e.raw("POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "enroll", "enable": true})
	if code != 409 || !strings.Contains(body, "SecureBootDatabases") || !strings.Contains(body, "mokutil") ||
		!strings.Contains(body, "see README: Secure Boot on a factory-keyed fleet") {
		t.Errorf("enroll through a BMC without SecureBootDatabases = %d %s, want 409 naming it and the manual way", code, body)
	}
	if f := eventsOf(e.hostEvents("node01"), "redfish-failed"); len(f) != 1 || !strings.Contains(f[0], "enroll the db certificate failed") {
		t.Errorf("redfish-failed events = %q", f)
	}
	if len(sim.State().SecureBootDB) != 0 {
		t.Error("the BMC's db changed")
	}

	bare := newRFEnv(t, "sqlite", 4096)
	bare.addHost("node01", mac1, "10.0.2.15/24")
	bare.setSimBMC("node01", newSimBMC(t, bmcsim.Quirks{}, nil))
	if code, body := bare.raw("POST", "/api/v1/hosts/node01/secure-boot", map[string]any{"action": "enroll"}); code != 501 || !strings.Contains(body, "--db-cert") {
		t.Errorf("enroll without a db certificate = %d %s, want 501 naming --db-cert", code, body)
	}
	st = provision.SecureBootStatus{}
	bare.mustDo(200, "GET", "/api/v1/hosts/node01/secure-boot", nil, &st)
	if st.DBCert != nil || !st.Databases {
		t.Errorf("status on a server without a db certificate = %+v", st)
	}
}

// TestSecureBootRoles: reading needs operate, changing needs edit;
// label-scoped editors change their own hosts and do not see others.
func TestSecureBootRoles(t *testing.T) {
	e := newRFEnv(t, "sqlite", 4096, withDBCert(testDBCert(t)))
	e.addHost("lab01", mac1, "10.0.2.15/24")
	e.addHost("infra01", "52:54:00:12:34:57", "10.0.2.16/24")
	e.mustDo(200, "PATCH", "/api/v1/hosts/lab01", map[string]any{"labels": map[string]string{"team": "lab"}}, nil)
	e.mustDo(200, "PATCH", "/api/v1/hosts/infra01", map[string]any{"labels": map[string]string{"team": "infra"}}, nil)
	e.setSimBMC("lab01", newSimBMC(t, bmcsim.Quirks{}, nil))
	e.setSimBMC("infra01", newSimBMC(t, bmcsim.Quirks{}, nil))
	tok := func(name string, g ...auth.Grant) string { return newServiceToken(t, e.db, "sb-"+name, g) }
	viewer, operator := tok("viewer", auth.Grant{Role: auth.RoleViewer}), tok("operator", auth.Grant{Role: auth.RoleOperator})
	labEditor := tok("lab-editor", auth.Grant{Role: auth.RoleEditor, Hosts: "team=lab"})
	enroll := `{"action":"enroll"}`
	cases := []struct {
		who, tok, method, host, body string
		want                         int
	}{
		{"viewer", viewer, "GET", "lab01", "", 403},
		{"viewer", viewer, "POST", "lab01", enroll, 403},
		{"operator", operator, "GET", "lab01", "", 200},
		{"operator", operator, "POST", "lab01", enroll, 403},
		{"operator", operator, "POST", "lab01", `{"action":"disable","reason":"x"}`, 403},
		{"lab-editor", labEditor, "POST", "lab01", enroll, 200},
		{"lab-editor", labEditor, "POST", "infra01", enroll, 404},
		{"lab-editor", labEditor, "POST", "infra01", `{"action":"nonsense"}`, 404}, // invisible whatever the body
	}
	for _, c := range cases {
		if got, body := e.doAs(c.tok, c.method, "/api/v1/hosts/"+c.host+"/secure-boot", c.body, ""); got != c.want {
			t.Errorf("%s %s secure-boot of %s %s = %d %s, want %d", c.who, c.method, c.host, c.body, got, body, c.want)
		}
	}
	// Reimage with enrolment needs both permissions: an operator gets 403
	// and nothing is flagged.
	if got, body := e.doAs(operator, "POST", "/api/v1/hosts/lab01/reimage", `{"via":"redfish","enroll_db":true}`, ""); got != 403 {
		t.Errorf("operator reimage --enroll-db = %d %s, want 403", got, body)
	}
	if st := e.host("lab01").State; st != host.StateReady {
		t.Errorf("after a refused reimage --enroll-db the host is %s, want ready", st)
	}
	// A bulk enrolment: the operator may not start one; the lab editor's
	// infra host is reported as unknown.
	if got, _ := e.doAs(operator, "POST", "/api/v1/bulk/secure-boot-enroll", `{"selector":{"names":["lab01"]}}`, ""); got != 403 {
		t.Errorf("operator bulk enroll = %d, want 403", got)
	}
	got, body := e.doAs(labEditor, "POST", "/api/v1/bulk/secure-boot-enroll", `{"selector":{"names":["lab01","infra01"]}}`, "")
	if got != 202 {
		t.Fatalf("lab editor bulk enroll = %d %s, want 202", got, body)
	}
	var job server.Job
	json.Unmarshal([]byte(body), &job)
	id := job.ID
	waitFor(t, "bulk enrolment", func() bool {
		job = server.Job{}
		e.mustDo(200, "GET", "/api/v1/jobs/"+id, nil, &job)
		return !job.Finished.IsZero()
	})
	for _, h := range job.Hosts {
		switch {
		case h.Host == "lab01" && h.Status != server.JobDone:
			t.Errorf("lab01 in the lab editor's job = %+v, want done", h)
		case h.Host == "infra01" && (h.Status != server.JobFailed || !strings.Contains(h.Error, "not found")):
			t.Errorf("infra01 in the lab editor's job = %+v, want failed: not found", h)
		}
	}
}

// TestReimageEnrollDB: reimage via redfish with enroll_db enrols the db
// certificate before the restart, so the power cycle applies it.
func TestReimageEnrollDB(t *testing.T) {
	cert := testDBCert(t)
	e := newRFEnv(t, "sqlite", 4096, withDBCert(cert))
	var mu sync.Mutex
	var applied []bmcsim.SecureBootChange
	sim := startSim(t, bmcsim.Config{Username: bmcUser, Password: bmcPass, PoweredOn: true, SecureBoot: true,
		OnSecureBoot: func(c bmcsim.SecureBootChange) error {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, c)
			return nil
		}})
	e.addHost("node01", mac1, "10.0.2.15/24")
	e.setSimBMC("node01", sim)

	if code, _ := e.raw("POST", "/api/v1/hosts/node01/clean", map[string]any{"via": "redfish", "enroll_db": true}); code != 400 {
		t.Errorf("clean with enroll_db = %d, want 400", code)
	}
	if code, _ := e.raw("POST", "/api/v1/hosts/node01/reimage", map[string]any{"enroll_db": true}); code != 400 {
		t.Errorf("reimage enroll_db without via = %d, want 400", code)
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "redfish", "enroll_db": true}, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 1 || !applied[0].Restart || len(applied[0].Added) != 1 || !bytes.Equal(applied[0].Added[0], cert.Raw) {
		t.Fatalf("Secure Boot changes applied at power cycles = %+v, want the db certificate added at the restart", applied)
	}
	if st := sim.State(); !slices.ContainsFunc(st.SecureBootApplied, func(d []byte) bool { return bytes.Equal(d, cert.Raw) }) {
		t.Error("the firmware's db lacks the certificate after the restart")
	}
	var order []string
	for _, ev := range e.hostEvents("node01") {
		if k := ev.Kind(); k == "bmc-secure-boot-enroll" || k == "redfish-insert" || k == "redfish-boot" {
			order = append(order, k)
		}
	}
	if want := []string{"bmc-secure-boot-enroll", "redfish-insert", "redfish-boot"}; !slices.Equal(order, want) {
		t.Errorf("events = %v, want %v", order, want)
	}
}

// TestBulkSecureBootEnroll: a bulk job enrols the db certificate through
// every selected host's BMC (a host without a BMC fails alone), and a bulk
// reimage with enroll_db enrols before each restart.
func TestBulkSecureBootEnroll(t *testing.T) {
	forEachDriver(t, testBulkSecureBootEnroll)
}

func testBulkSecureBootEnroll(t *testing.T, driver string) {
	cert := testDBCert(t)
	e := newRFEnv(t, driver, 2048, withDBCert(cert))
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.log.String())
		}
	})
	const n = 4
	var sims []*simBMC
	var names []string
	for i := range n {
		name := fmt.Sprintf("n%02d", i)
		e.addHost(name, fmt.Sprintf("52:54:00:00:01:%02x", i), fmt.Sprintf("10.0.2.%d/24", 30+i))
		sim := newSimBMC(t, bmcsim.Quirks{}, nil)
		e.setSimBMC(name, sim)
		sims, names = append(sims, sim), append(names, name)
	}
	e.addHost("nobmc", "52:54:00:00:01:ff", "10.0.2.99/24")

	var job server.Job
	e.mustDo(202, "POST", "/api/v1/bulk/secure-boot-enroll", map[string]any{"selector": map[string]any{"names": append(names, "nobmc")},
		"enable": true, "reason": "fleet key"}, &job)
	if job.Action != provision.JobSecureBootEnroll || len(job.Hosts) != n+1 {
		t.Fatalf("job = %+v", job)
	}
	id := job.ID
	waitFor(t, "bulk enrolment", func() bool {
		job = server.Job{}
		e.mustDo(200, "GET", "/api/v1/jobs/"+id, nil, &job)
		return !job.Finished.IsZero()
	})
	if job.Counts["done"] != n || job.Counts["failed"] != 1 {
		t.Errorf("counts = %v, want %d done, 1 failed", job.Counts, n)
	}
	for i, sim := range sims {
		if c := dbHolds(sim.BMC, cert); c != 1 {
			t.Errorf("BMC of %s holds the cert %d times, want 1", names[i], c)
		}
		if enrol := eventsOf(e.hostEvents(names[i]), "bmc-secure-boot-enroll"); len(enrol) != 1 || !strings.Contains(enrol[0], "fleet key") {
			t.Errorf("%s enroll events = %q", names[i], enrol)
		}
	}
	// A bulk reimage with enroll_db: the certificate is already there (no
	// second copy), the hosts are restarted.
	e.mustDo(202, "POST", "/api/v1/bulk/reimage", map[string]any{"selector": map[string]any{"names": names}, "via": "redfish",
		"enroll_db": true}, &job)
	id = job.ID
	waitFor(t, "bulk reimage", func() bool {
		job = server.Job{}
		e.mustDo(200, "GET", "/api/v1/jobs/"+id, nil, &job)
		return !job.Finished.IsZero()
	})
	if job.Counts["done"] != n {
		t.Errorf("bulk reimage --enroll-db counts = %v", job.Counts)
	}
	for i, sim := range sims {
		if c := dbHolds(sim.BMC, cert); c != 1 || len(sim.State().Resets) == 0 {
			t.Errorf("BMC of %s: cert %d times, resets %v", names[i], c, sim.State().Resets)
		}
		if enrol := eventsOf(e.hostEvents(names[i]), "bmc-secure-boot-enroll"); len(enrol) != 2 || !strings.Contains(enrol[1], "already in db") {
			t.Errorf("%s enroll events = %q", names[i], enrol)
		}
	}
}

// TestSecureBootConsole: the host page offers the enrolment to editors
// (not operators) and the reimage dialog the enrolment before the restart;
// the button enrols; a BMC without SecureBootDatabases shows why.
func TestSecureBootConsole(t *testing.T) {
	cert := testDBCert(t)
	e := newRFEnv(t, "sqlite", 4096, withDBCert(cert))
	sim := newSimBMC(t, bmcsim.Quirks{}, nil)
	e.addHost("node01", mac1, "10.0.2.15/24")
	e.setSimBMC("node01", sim)
	admin := newServiceToken(t, e.db, "console-admin", []auth.Grant{{Role: auth.RoleAdmin}})
	operator := newServiceToken(t, e.db, "console-operator", []auth.Grant{{Role: auth.RoleOperator}})

	_, page := e.doAs(admin, "GET", "/hosts/node01", "", "")
	if !strings.Contains(page, "Enrol db certificate") || !strings.Contains(page, `name="enroll_db"`) {
		t.Errorf("the admin's host page lacks the enrolment")
	}
	if _, page := e.doAs(operator, "GET", "/hosts/node01", "", ""); strings.Contains(page, "Enrol db certificate") || strings.Contains(page, `name="enroll_db"`) {
		t.Errorf("the operator's host page offers the enrolment")
	}
	if code, _ := e.doAs(operator, "POST", "/hosts/node01/secure-boot", "action=enroll", ""); code != 403 {
		t.Errorf("operator console enroll = %d, want 403", code)
	}
	code, _ := e.doAs(admin, "POST", "/hosts/node01/secure-boot", "action=enroll&reason=console", "")
	if code != 303 || dbHolds(sim.BMC, cert) != 1 {
		t.Errorf("console enroll = %d, BMC holds the cert %d times", code, dbHolds(sim.BMC, cert))
	}

	quirk := newSimBMC(t, bmcsim.Quirks{NoSecureBootDatabases: true}, nil)
	e.setSimBMC("node01", quirk)
	code, page = e.doAs(admin, "POST", "/hosts/node01/secure-boot", "action=enroll", "")
	if code != 409 || !strings.Contains(page, "SecureBootDatabases") || !strings.Contains(page, "mokutil") {
		t.Errorf("console enroll through a BMC without SecureBootDatabases = %d, want 409 saying why", code)
	}
}
