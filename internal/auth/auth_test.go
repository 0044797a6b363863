package auth_test

import (
	"testing"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// TestRoleMatrix is the matrix, written out independently of the
// table in auth.go: rows are permissions, columns the roles.
func TestRoleMatrix(t *testing.T) {
	want := map[auth.Permission][]auth.Role{
		auth.PermRead:    {auth.RoleViewer, auth.RoleOperator, auth.RoleEditor, auth.RoleAuditor, auth.RoleAdmin},
		auth.PermOperate: {auth.RoleOperator, auth.RoleAdmin},
		auth.PermEdit:    {auth.RoleEditor, auth.RoleAdmin},
		auth.PermAudit:   {auth.RoleAuditor, auth.RoleAdmin},
		auth.PermAdmin:   {auth.RoleAdmin},
	}
	for p, roles := range want {
		for _, r := range auth.Roles {
			has := false
			for _, w := range roles {
				has = has || w == r
			}
			if got := r.Has(p); got != has {
				t.Errorf("%s.Has(%s) = %v, want %v", r, p, got, has)
			}
		}
	}
}

func TestScopedGrants(t *testing.T) {
	lab := map[string]string{"team": "lab", "site": "dc1"}
	infra := map[string]string{"team": "infra"}
	id := auth.Identity{Grants: []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}, {Role: auth.RoleViewer, Hosts: "team=infra"}}}
	cases := []struct {
		op     auth.Op
		labels map[string]string
		want   string
	}{
		{auth.OpHostReimage, lab, ""},
		{auth.OpHostReimage, infra, "forbidden"},
		{auth.OpHostGet, infra, ""},
		{auth.OpHostUpdate, lab, "forbidden"}, // an operator does not edit
		{auth.OpHostGet, map[string]string{"team": "sec"}, "not found"},
		{auth.OpProfCreate, nil, "forbidden"}, // global: needs an unscoped grant
		{auth.OpAuditRead, nil, "forbidden"},
		{auth.OpProfList, nil, ""},
		{auth.OpSecureBoot, lab, ""},                  // reading uses the BMC credentials: operate
		{auth.OpSecureBootEnroll, lab, "forbidden"},   // what the firmware trusts: edit
		{auth.OpSecureBootEnable, lab, "forbidden"},   //
		{auth.OpSecureBootDisable, lab, "forbidden"},  //
		{auth.OpBulkSecureBoot, nil, "forbidden"},     // no grant edits anywhere
		{auth.OpSecureBootEnroll, infra, "forbidden"}, // visible, not editable
		{auth.OpSecureBoot, map[string]string{"team": "sec"}, "not found"},
	}
	for _, c := range cases {
		err := id.Authorize(c.op, c.labels)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("Authorize(%s, %v) = %q, want %q", c.op, c.labels, got, c.want)
		}
	}
}

func TestCoversNoEscalation(t *testing.T) {
	op := auth.Identity{Grants: []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}}}
	cases := []struct {
		want []auth.Grant
		ok   bool
	}{
		{[]auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}}, true},
		{[]auth.Grant{{Role: auth.RoleViewer, Hosts: "team=lab"}}, true},            // a lower role on the same hosts
		{[]auth.Grant{{Role: auth.RoleOperator, Hosts: "site=dc1,team=lab"}}, true}, // narrower
		{[]auth.Grant{{Role: auth.RoleOperator}}, false},                            // wider
		{[]auth.Grant{{Role: auth.RoleOperator, Hosts: "team=infra"}}, false},       // elsewhere
		{[]auth.Grant{{Role: auth.RoleEditor, Hosts: "team=lab"}}, false},           // another duty
		{[]auth.Grant{{Role: auth.RoleAdmin, Hosts: "team=lab"}}, false},            // higher
		{[]auth.Grant{{Role: auth.RoleAuditor, Hosts: "team=lab"}}, false},          // audit is not operate
	}
	for _, c := range cases {
		if got := op.Covers(c.want); got != c.ok {
			t.Errorf("operator@team=lab Covers(%v) = %v, want %v", c.want, got, c.ok)
		}
	}
}

func TestSelectors(t *testing.T) {
	for _, bad := range []string{"team", "team=", "=lab", "team=lab,team=infra", "Team=lab", "team=la b", "team=lab;x=y", "team=${x}"} {
		if _, err := auth.ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) accepted", bad)
		}
	}
	s, err := auth.ParseSelector(" team=lab , site=dc1 ")
	if err != nil || s.String() != "site=dc1,team=lab" {
		t.Errorf("ParseSelector = %v, %v", s, err)
	}
	if g, err := auth.ParseGrant("operator@team=lab"); err != nil || g.String() != "operator@team=lab" {
		t.Errorf("ParseGrant = %v, %v", g, err)
	}
}

// TestSecureBootOps: enrolling a db certificate or switching Secure Boot
// changes what a host's firmware trusts, so it is an edit (label-scoped
// grants work); reading the state dials the BMC with its stored
// credentials, so it is an operation.
func TestSecureBootOps(t *testing.T) {
	lab := map[string]string{"team": "lab"}
	infra := map[string]string{"team": "infra"}
	editor := auth.Identity{Grants: []auth.Grant{{Role: auth.RoleEditor, Hosts: "team=lab"}}}
	cases := []struct {
		op     auth.Op
		labels map[string]string
		want   string
	}{
		{auth.OpSecureBootEnroll, lab, ""},
		{auth.OpSecureBootEnable, lab, ""},
		{auth.OpSecureBootDisable, lab, ""},
		{auth.OpBulkSecureBoot, nil, ""},
		{auth.OpSecureBootEnroll, infra, "not found"},
		{auth.OpSecureBoot, lab, "forbidden"}, // an editor does not operate
	}
	for _, c := range cases {
		err := editor.Authorize(c.op, c.labels)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("editor@team=lab Authorize(%s, %v) = %q, want %q", c.op, c.labels, got, c.want)
		}
	}
}
