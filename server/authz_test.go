package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/token"
	"github.com/bootpilot/bootpilot/server"
)

// caller is a test identity: a service token with these grants.
type caller struct {
	name   string
	grants []auth.Grant
	token  string
}

// matrixCallers are every role unscoped, two scoped grants and a union.
var matrixCallers = []caller{
	{name: "viewer", grants: []auth.Grant{{Role: auth.RoleViewer}}},
	{name: "operator", grants: []auth.Grant{{Role: auth.RoleOperator}}},
	{name: "editor", grants: []auth.Grant{{Role: auth.RoleEditor}}},
	{name: "auditor", grants: []auth.Grant{{Role: auth.RoleAuditor}}},
	{name: "admin", grants: []auth.Grant{{Role: auth.RoleAdmin}}},
	{name: "lab-operator", grants: []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}}},
	{name: "lab-editor", grants: []auth.Grant{{Role: auth.RoleEditor, Hosts: "team=lab"}}},
	{name: "lab-op-infra-view", grants: []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}, {Role: auth.RoleViewer, Hosts: "team=infra"}}},
}

// matrix fixtures: a lab host and an infrastructure host.
var (
	labHost   = "lab01"
	infraHost = "infra01"
	hostLabel = map[string]host.Labels{labHost: {"team": "lab"}, infraHost: {"team": "infra"}}
)

// newServiceToken stores a service token with grants and returns its secret.
func newServiceToken(tb testing.TB, db *store.DB, name string, grants []auth.Grant) string {
	tb.Helper()
	plain, hash := token.New()
	_, err := db.CreateToken(context.Background(), auth.Token{Name: name, Kind: auth.TokenService, Grants: grants,
		Hash: hash, CreatedAt: time.Now().UTC()}, host.Record{Actor: "system:test", Action: "token-create", Subject: "token:" + name, Time: time.Now().UTC()})
	if err != nil {
		tb.Fatal(err)
	}
	return plain
}

// startState is the state a lifecycle route needs to succeed.
var startState = map[string]host.State{
	"cancel": host.StateReimage, "retry": host.StateFailed, "release": host.StateHold, "adopt": host.StateDiscovered,
}

// stateFor returns the state route r's target host starts in.
func stateFor(r server.Route) host.State {
	i := strings.LastIndex(r.Path, "/")
	if st, ok := startState[r.Path[i+1:]]; ok && (strings.HasPrefix(r.Path, "/api/v1/hosts/:name/") || strings.HasPrefix(r.Path, "/hosts/:name/")) {
		return st
	}
	return host.StateReady
}

// matrixISO stands in for the ISO builder (imagebuilder has its own tests):
// the matrix needs ISO downloads to succeed, not real ISOs.
func matrixISO(w io.Writer, h host.Host, tok string) error {
	_, err := io.WriteString(w, "ISO for "+h.Name)
	return err
}

// ensureMatrixHosts (re)creates both fixture hosts in state st.
func (e *env) ensureMatrixHosts(st host.State) {
	e.t.Helper()
	ctx := context.Background()
	for i, name := range []string{labHost, infraHost} {
		if _, err := e.db.GetHost(ctx, name); err == nil {
			e.db.DeleteHost(ctx, name, host.Record{Host: name, Actor: "system:test", Action: "delete", Time: time.Now()})
		}
		_, hash := token.New()
		h := host.Host{Name: name, MACs: []string{fmt.Sprintf("52:54:00:00:00:%02x", i+1)}, IPv4: fmt.Sprintf("10.0.2.%d/24", 10+i),
			Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}, Profile: "rocky9", Labels: hostLabel[name], State: st, TokenHash: hash}
		if err := h.Normalize(); err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.db.CreateHost(ctx, h, host.Record{Host: name, Actor: "system:test", Action: "create", Time: time.Now()}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// doAs sends a request with bearer tok and a request id; it returns the
// status and body.
func (e *env) doAs(tok, method, path, body, rid string) (int, string) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.url+path, r)
	if strings.HasPrefix(path, "/api/") {
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
	} else { // the console: the session cookie, a same-origin browser request
		req.AddCookie(&http.Cookie{Name: "bootpilot_session", Value: tok})
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	if rid != "" {
		req.Header.Set("X-Request-ID", rid)
	}
	noFollow := *e.client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fill makes a concrete request for route r on target host name: its path
// and a plausible body (valid where cheap, so allowed calls get past
// validation and write their audit events).
func fill(r server.Route, name string) (path, body string) {
	path = strings.NewReplacer(":name", name, ":id", "999999", ":source", "local", ":action", "reimage").Replace(r.Path)
	if strings.HasPrefix(r.Path, "/api/v1/users/") {
		path = strings.Replace(r.Path, ":source/:name", "local/bob", 1)
	}
	switch {
	case r.Path == "/api/v1/hosts" && r.Method == "POST":
		body = `{"name":"new-` + name + `","macs":["52:54:00:aa:00:01"],"ipv4":"10.0.2.99/24","gateway":"10.0.2.2","dns":["10.0.2.3"],"labels":{"team":"lab"}}`
	case r.Path == "/api/v1/hosts/:name" && r.Method == "PATCH":
		body = `{"domain":"example.org"}`
	case r.Path == "/api/v1/profiles" && r.Method == "POST":
		body = `{"name":"p-new","kernel":"https://mirror.example/k","initrds":["https://mirror.example/i"],"installer":"kickstart"}`
	case r.Path == "/api/v1/profiles/:name":
		path = "/api/v1/profiles/p-matrix"
		if r.Method == "PATCH" {
			body = `{"cmdline":"console=ttyS0"}`
		}
	case r.Path == "/api/v1/users" && r.Method == "POST":
		body = `{"name":"carol","password":"correct horse battery staple","grants":[{"role":"viewer"}]}`
	case r.Path == "/api/v1/users/:source/:name" && r.Method == "PATCH":
		body = `{"disabled":true}`
	case r.Path == "/api/v1/tokens" && r.Method == "POST":
		body = `{"name":"t-` + fmt.Sprint(time.Now().UnixNano()) + `"}`
	case r.Path == "/api/v1/hosts/:name/power":
		body = `{"action":"status"}`
	case r.Path == "/api/v1/hosts/:name/secure-boot" && r.Method == "POST":
		body = `{"action":"enroll"}`
	case r.Path == "/api/v1/bulk/secure-boot-enroll":
		body = `{"selector":{"names":["` + name + `"]}}`
	case r.Path == "/api/v1/bulk/:action":
		body = `{"selector":{"names":["` + name + `"]},"via":"redfish"}`
	case r.Path == "/api/v1/images/fetch":
		body = `{"ref":"https://mirror.example/x","sha256":"` + strings.Repeat("0", 64) + `"}`
	}
	return path, body
}

// want is what the policy table says caller cl gets for route r on target
// host labels: "ok" (allowed: anything but 401/403), "403" or "404".
func want(cl caller, r server.Route, target host.Labels) string {
	rule := auth.RuleFor(r.Op)
	id := auth.Identity{Grants: cl.grants}
	anywhere := slices.ContainsFunc(cl.grants, func(g auth.Grant) bool { return g.Role.Has(rule.Perm) })
	switch rule.Scope {
	case auth.ScopeSelf:
		if rule.Perm == "" || anywhere {
			return "ok"
		}
		return "403"
	case auth.ScopeGlobal:
		if id.CanGlobal(rule.Perm) {
			return "ok"
		}
		return "403"
	}
	if !anywhere {
		return "403"
	}
	if !strings.Contains(r.Path, "/hosts/:name") {
		return "ok"
	}
	if !id.Sees(target) {
		return "404"
	}
	if id.Can(rule.Perm, target) {
		return "ok"
	}
	return "403"
}

// TestRoleMatrix walks the route table: every API route × every caller ×
// both fixture hosts gets the status the policy table says, on every
// database. A route without a policy panics at registration.
func TestRoleMatrix(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, func(o *server.Options) { o.ISO = matrixISO })
		e.addProfiles()
		e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "p-matrix", "kernel": "https://mirror.example/k",
			"initrds": []string{"https://mirror.example/i"}, "installer": "kickstart"}, nil)
		for i := range matrixCallers {
			matrixCallers[i].token = newServiceToken(t, e.db, "matrix-"+matrixCallers[i].name, matrixCallers[i].grants)
		}
		routes := e.srv.Routes()
		n := 0
		for _, r := range routes {
			if auth.RuleFor(r.Op).Scope == auth.ScopePublic {
				continue
			}
			for _, target := range []string{labHost, infraHost} {
				for _, cl := range matrixCallers {
					e.ensureMatrixHosts(stateFor(r))
					path, body := fill(r, target)
					got, b := e.doAs(cl.token, r.Method, path, body, "")
					w := want(cl, r, hostLabel[target])
					n++
					switch {
					case w == "ok" && (got == 401 || got == 403):
						t.Errorf("%s %s as %s on %s = %d %s, want allowed", r.Method, path, cl.name, target, got, b)
					case w == "403" && got != 403:
						t.Errorf("%s %s as %s on %s = %d %s, want 403", r.Method, path, cl.name, target, got, b)
					case w == "404" && got != 404:
						t.Errorf("%s %s as %s on %s = %d %s, want 404 (invisible host)", r.Method, path, cl.name, target, got, b)
					}
				}
			}
		}
		if n < 300 {
			t.Fatalf("only %d route×caller×host cases ran; the route table lost routes", n)
		}
	})
}

// dryRuns are POST routes that only compute (an uploaded CSV's dry run).
var dryRuns = map[auth.Op]bool{auth.OpImportPlan: true}

// TestEveryMutationIsAudited: every route that changes something has an
// audit action in the policy table, and when an admin's call succeeds, an
// event with that action and the call's request id is stored.
func TestEveryMutationIsAudited(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, func(o *server.Options) { o.ISO = matrixISO })
		e.addProfiles()
		e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "p-matrix", "kernel": "https://mirror.example/k",
			"initrds": []string{"https://mirror.example/i"}, "installer": "kickstart"}, nil)
		admin := newServiceToken(t, e.db, "audit-admin", []auth.Grant{{Role: auth.RoleAdmin}})
		ctx := context.Background()
		// bob exists for the user routes.
		e.doAs(admin, "POST", "/api/v1/users", `{"name":"bob","password":"correct horse battery staple","grants":[{"role":"viewer"}]}`, "")
		checked := 0
		for i, r := range e.srv.Routes() {
			rule := auth.RuleFor(r.Op)
			if (r.Method == "GET" || r.Method == "HEAD") && r.Op != auth.OpHostISO { // an ISO download rotates the boot token
				if rule.Mutating() {
					t.Errorf("%s %s reads but its op %s is audited as %q", r.Method, r.Path, r.Op, rule.Audit)
				}
				continue
			}
			if rule.Scope == auth.ScopePublic && r.Op != auth.OpLogin {
				continue // the boot API: its events are host:NAME transitions, tested in boot_test.go
			}
			if !rule.Mutating() && !dryRuns[r.Op] {
				t.Errorf("%s %s changes something but its op %s has no audit action", r.Method, r.Path, r.Op)
				continue
			}
			if r.Op == auth.OpLogin || dryRuns[r.Op] {
				continue // TestLoginFailuresLookAlike and TestIdentityAudit check login events; dry runs write none
			}
			e.ensureMatrixHosts(stateFor(r))
			before, _ := e.db.GetHost(ctx, labHost)
			rid := fmt.Sprintf("audit-%d", i)
			path, body := fill(r, labHost)
			got, b := e.doAs(admin, r.Method, path, body, rid)
			if got/100 != 2 {
				t.Logf("%s %s = %d %s: not checked (the call did not succeed here)", r.Method, path, got, b)
				continue
			}
			after, _ := e.db.GetHost(ctx, labHost)
			if strings.Contains(r.Path, "/hosts/:name/") && r.Method == "POST" && before.Version == after.Version &&
				!strings.Contains(r.Path, "boot-token") {
				continue // a repeated action is a no-op without an event
			}
			evs, err := e.db.ListEvents(ctx, store.AuditFilter{Limit: 50})
			if err != nil {
				t.Fatal(err)
			}
			found := slices.ContainsFunc(evs, func(ev host.Record) bool { return ev.RequestID == rid && ev.Kind() == rule.Audit })
			if !found {
				j, _ := json.Marshal(evs[:min(5, len(evs))])
				t.Errorf("%s %s = %d but no %q event with request id %s; newest: %s", r.Method, path, got, rule.Audit, rid, j)
			}
			checked++
		}
		if checked < 15 {
			t.Errorf("only %d mutating routes were checked", checked)
		}
	})
}
