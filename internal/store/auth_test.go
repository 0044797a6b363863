package store_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/internal/token"
)

func names(hs []host.Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// TestHostLabels: labels round-trip with the host (nil when none), change
// with UpdateHost, are refused when malformed and go with the host.
func TestHostLabels(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		h := testHost("node01", "52:54:00:00:00:01")
		h.Labels = host.Labels{"team": "lab", "site": "dc1"}
		mustCreate(t, db, h)
		if got := mustGet(t, db, "node01").Labels; !mapsEqual(got, h.Labels) {
			t.Errorf("GetHost labels = %v, want %v", got, h.Labels)
		}
		if got, err := db.GetHostByMAC(ctx, "52:54:00:00:00:01"); err != nil || !mapsEqual(got.Labels, h.Labels) {
			t.Errorf("GetHostByMAC labels = %v, %v", got.Labels, err)
		}
		mustCreate(t, db, testHost("node02", "52:54:00:00:00:02"))
		if got := mustGet(t, db, "node02").Labels; got != nil {
			t.Errorf("labels of a host without = %#v, want nil", got)
		}
		bad := testHost("node03", "52:54:00:00:00:03")
		bad.Labels = host.Labels{"team": "a b"}
		var ve *host.ValidationError
		if _, err := db.CreateHost(ctx, bad, host.Record{}); !errors.As(err, &ve) || ve.Field != "labels" {
			t.Errorf("CreateHost(bad label) = %v, want a labels ValidationError", err)
		}
		_, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			delete(h.Labels, "site")
			h.Labels["team"] = "ops"
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		list := func(sc ...map[string]string) []string {
			t.Helper()
			hs, err := db.ListHosts(ctx, store.HostFilter{Scoped: true, Scopes: sc})
			if err != nil {
				t.Fatal(err)
			}
			return names(hs)
		}
		if got := list(map[string]string{"team": "ops"}); !slices.Equal(got, []string{"node01"}) {
			t.Errorf("team=ops after update = %v", got)
		}
		if got := list(map[string]string{"site": "dc1"}); got != nil {
			t.Errorf("site=dc1 after update = %v, want none", got)
		}
		if err := db.DeleteHost(ctx, "node01", host.Record{}); err != nil {
			t.Fatal(err)
		}
		if got := list(map[string]string{"team": "ops"}); got != nil {
			t.Errorf("team=ops after delete = %v, want none", got)
		}
		// The name is free with its labels gone.
		h.Labels = host.Labels{"team": "x"}
		mustCreate(t, db, h)
		if got := list(map[string]string{"team": "x"}); !slices.Equal(got, []string{"node01"}) {
			t.Errorf("team=x after re-create = %v", got)
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestListHostsScoped: a scoped list holds the hosts matching any scope
// (all of its labels), pages stay full and the cursor works.
func TestListHostsScoped(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		for i := range 20 {
			h := testHost(fmt.Sprintf("n%02d", i), fmt.Sprintf("52:54:00:00:01:%02x", i))
			h.Labels = host.Labels{"team": []string{"lab", "ops"}[i%2], "site": []string{"dc1", "dc2", "dc3"}[i%3]}
			if i == 19 {
				h.Labels = nil
			}
			mustCreate(t, db, h)
		}
		lab := map[string]string{"team": "lab"}
		opsDC1 := map[string]string{"team": "ops", "site": "dc1"}
		for _, tc := range []struct {
			f    store.HostFilter
			want []string
		}{
			{store.HostFilter{Scoped: true}, nil},
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{{}}}, nil}, // all: checked below by count
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{lab}}, []string{"n00", "n02", "n04", "n06", "n08", "n10", "n12", "n14", "n16", "n18"}},
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{opsDC1}}, []string{"n03", "n09", "n15"}},
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{lab, opsDC1}, Limit: 4}, []string{"n00", "n02", "n03", "n04"}},
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{lab, opsDC1}, After: "n04", Limit: 4}, []string{"n06", "n08", "n09", "n10"}},
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{lab}, State: host.StateReimage}, nil},
			{store.HostFilter{Scoped: true, Scopes: []map[string]string{{"team": "nope"}}}, nil},
			{store.HostFilter{Scopes: []map[string]string{{"team": "nope"}}, Limit: 2}, []string{"n00", "n01"}}, // unscoped ignores Scopes
		} {
			hs, err := db.ListHosts(ctx, tc.f)
			if err != nil {
				t.Fatalf("ListHosts(%+v): %v", tc.f, err)
			}
			got := names(hs)
			if tc.f.Scoped && len(tc.f.Scopes) == 1 && len(tc.f.Scopes[0]) == 0 {
				if len(got) != 20 {
					t.Errorf("ListHosts(empty scope) = %d hosts, want 20", len(got))
				}
				continue
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ListHosts(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		}
	})
}

func TestUsers(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		u := auth.User{Name: "bob", Source: auth.SourceLocal, Grants: []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}}, PasswordHash: "$argon2id$x"}
		if err := db.CreateUser(ctx, u, host.Record{Actor: "local:root", Action: "user-create", Subject: "local:bob", ClientAddr: "192.0.2.7"}); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateUser(ctx, u, host.Record{}); !errors.Is(err, host.ErrConflict) {
			t.Errorf("CreateUser(twice) = %v, want ErrConflict", err)
		}
		ldapBob := auth.User{Name: "bob", Source: auth.SourceLDAP}
		if err := db.CreateUser(ctx, ldapBob, host.Record{}); err != nil {
			t.Errorf("CreateUser(ldap:bob beside local:bob) = %v", err)
		}
		got, err := db.GetUser(ctx, auth.SourceLocal, "bob")
		if err != nil || !slices.Equal(got.Grants, u.Grants) || got.PasswordHash != u.PasswordHash || got.CreatedAt.IsZero() {
			t.Errorf("GetUser = %+v, %v", got, err)
		}
		if _, err := db.GetUser(ctx, auth.SourceLocal, "nobody"); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetUser(unknown) = %v, want ErrNotFound", err)
		}
		up, err := db.UpdateUser(ctx, auth.SourceLocal, "bob", func(u *auth.User) error {
			u.Disabled = true
			u.Grants = append(u.Grants, auth.Grant{Role: auth.RoleViewer})
			return nil
		}, host.Record{Actor: "local:root", Action: "user-update", Subject: "local:bob"})
		if err != nil || !up.Disabled || len(up.Grants) != 2 {
			t.Fatalf("UpdateUser = %+v, %v", up, err)
		}
		boom := errors.New("boom")
		if _, err := db.UpdateUser(ctx, auth.SourceLocal, "bob", func(u *auth.User) error { u.Disabled = false; return boom }, host.Record{Actor: "x", Action: "user-update"}); err != boom {
			t.Errorf("UpdateUser(fn error) = %v, want it unchanged", err)
		}
		if _, err := db.UpdateUser(ctx, auth.SourceLocal, "bob", func(u *auth.User) error { u.Name = "eve"; return nil }, host.Record{}); err == nil {
			t.Error("UpdateUser(rename) succeeded")
		}
		if _, err := db.UpdateUser(ctx, auth.SourceLocal, "nobody", func(*auth.User) error { return nil }, host.Record{}); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("UpdateUser(unknown) = %v, want ErrNotFound", err)
		}
		// A no-op update with a nil-Fields record writes no record.
		if _, err := db.UpdateUser(ctx, auth.SourceLocal, "bob", func(*auth.User) error { return nil }, host.Record{Actor: "local:root", Action: "user-update", Subject: "local:bob"}); err != nil {
			t.Fatal(err)
		}
		evs, err := db.ListEvents(ctx, store.AuditFilter{Action: "user-update"})
		if err != nil || len(evs) != 1 || !slices.Equal(evs[0].Fields, []string{"disabled", "grants"}) || evs[0].Subject != "local:bob" {
			t.Errorf("user-update events = %+v, %v; want one naming disabled, grants", evs, err)
		}
		if got := mustUser(t, db, auth.SourceLocal, "bob"); !got.Disabled {
			t.Error("failed update was written")
		}

		// Directory users: created, then grants refreshed and Disabled kept.
		at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		d1, err := db.UpsertDirectoryUser(ctx, auth.User{Name: "alice", Source: auth.SourceLDAP, DN: "CN=alice", Grants: []auth.Grant{{Role: auth.RoleAdmin}}, CheckedAt: at})
		if err != nil || d1.DN != "CN=alice" || !d1.CheckedAt.Equal(at) {
			t.Fatalf("UpsertDirectoryUser(new) = %+v, %v", d1, err)
		}
		if _, err := db.UpdateUser(ctx, auth.SourceLDAP, "alice", func(u *auth.User) error { u.Disabled = true; return nil }, host.Record{}); err != nil {
			t.Fatal(err)
		}
		d2, err := db.UpsertDirectoryUser(ctx, auth.User{Name: "alice", Source: auth.SourceLDAP, DN: "CN=alice2", CheckedAt: at.Add(time.Hour)})
		if err != nil || !d2.Disabled || d2.Grants != nil || d2.DN != "CN=alice2" || !d2.CheckedAt.Equal(at.Add(time.Hour)) {
			t.Errorf("UpsertDirectoryUser(known) = %+v, %v; want disabled kept, grants none", d2, err)
		}
		us, err := db.ListUsers(ctx)
		if err != nil || len(us) != 3 || us[0].Actor() != "ldap:alice" || us[1].Actor() != "ldap:bob" || us[2].Actor() != "local:bob" {
			t.Errorf("ListUsers = %+v, %v", us, err)
		}

		// Deleting a user revokes their tokens in the same transaction.
		tok, err := db.CreateToken(ctx, auth.Token{Name: "laptop", Kind: auth.TokenPersonal, Owner: "local:bob", Hash: token.Hash("p1")}, host.Record{})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteUser(ctx, auth.SourceLocal, "bob", host.Record{Actor: "local:root", Action: "user-delete", Subject: "local:bob"}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteUser(ctx, auth.SourceLocal, "bob", host.Record{}); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("DeleteUser(twice) = %v, want ErrNotFound", err)
		}
		if got, err := db.GetToken(ctx, tok.ID); err != nil || got.RevokedAt.IsZero() {
			t.Errorf("token of the deleted user = %+v, %v; want revoked", got, err)
		}
		if _, err := db.GetUser(ctx, auth.SourceLDAP, "bob"); err != nil {
			t.Errorf("ldap:bob after deleting local:bob: %v", err)
		}
	})
}

func mustUser(t *testing.T, db *store.DB, src auth.Source, name string) auth.User {
	t.Helper()
	u, err := db.GetUser(ctx, src, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestTokens(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		svc := auth.Token{Name: "ci", Kind: auth.TokenService, Grants: []auth.Grant{{Role: auth.RoleOperator, Hosts: "team=lab"}}, CreatedBy: "local:root", Hash: token.Hash("s1")}
		got, err := db.CreateToken(ctx, svc, host.Record{Actor: "local:root", Action: "token-create", Subject: "token:ci"})
		if err != nil || got.ID == 0 || got.CreatedAt.IsZero() || !slices.Equal(got.Grants, svc.Grants) {
			t.Fatalf("CreateToken = %+v, %v", got, err)
		}
		for _, tc := range []auth.Token{
			{Name: "ci", Kind: auth.TokenService, Hash: token.Hash("s2")},                   // same name, same (no) owner
			{Name: "other", Kind: auth.TokenService, Hash: svc.Hash},                        // same hash
			{Name: "laptop", Kind: auth.TokenPersonal, Owner: "ldap:alice", Hash: svc.Hash}, // same hash, other owner
		} {
			if _, err := db.CreateToken(ctx, tc, host.Record{}); !errors.Is(err, host.ErrConflict) {
				t.Errorf("CreateToken(%s/%s) = %v, want ErrConflict", tc.Owner, tc.Name, err)
			}
		}
		p1, err := db.CreateToken(ctx, auth.Token{Name: "ci", Kind: auth.TokenPersonal, Owner: "ldap:alice", ExpiresAt: at.Add(time.Hour), Hash: token.Hash("p1")}, host.Record{})
		if err != nil {
			t.Errorf("CreateToken(alice's ci beside the service ci) = %v", err)
		}
		s1, err := db.CreateToken(ctx, auth.Token{Name: "session-1", Kind: auth.TokenSession, Owner: "ldap:alice", ExpiresAt: at, Hash: token.Hash("x1")}, host.Record{})
		if err != nil {
			t.Fatal(err)
		}
		s2, err := db.CreateToken(ctx, auth.Token{Name: "session-2", Kind: auth.TokenSession, Owner: "ldap:alice", ExpiresAt: at.Add(48 * time.Hour), Hash: token.Hash("x2")}, host.Record{})
		if err != nil {
			t.Fatal(err)
		}
		if byHash, err := db.TokenByHash(ctx, token.Hash("p1")); err != nil || byHash.ID != p1.ID || !byHash.ExpiresAt.Equal(at.Add(time.Hour)) {
			t.Errorf("TokenByHash = %+v, %v", byHash, err)
		}
		if _, err := db.TokenByHash(ctx, token.Hash("nope")); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("TokenByHash(unknown) = %v", err)
		}
		ids := func(f store.TokenFilter) []int64 {
			t.Helper()
			ts, err := db.ListTokens(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, t := range ts {
				out = append(out, t.ID)
			}
			return out
		}
		for _, tc := range []struct {
			f    store.TokenFilter
			want []int64
		}{
			{store.TokenFilter{Owner: "ldap:alice"}, []int64{p1.ID, s1.ID, s2.ID}},
			{store.TokenFilter{Owner: "ldap:alice", Kinds: []auth.TokenKind{auth.TokenPersonal}}, []int64{p1.ID}},
			{store.TokenFilter{}, []int64{got.ID}},
			{store.TokenFilter{All: true, Kinds: []auth.TokenKind{auth.TokenService, auth.TokenPersonal}}, []int64{got.ID, p1.ID}},
			{store.TokenFilter{Owner: "ldap:bob"}, nil},
		} {
			if g := ids(tc.f); !slices.Equal(g, tc.want) {
				t.Errorf("ListTokens(%+v) = %v, want %v", tc.f, g, tc.want)
			}
		}
		// Revoke is idempotent and audited once.
		rec := host.Record{Actor: "local:root", Action: "token-revoke", Subject: "token:ci"}
		for range 2 {
			if err := db.RevokeToken(ctx, got.ID, at, rec); err != nil {
				t.Fatal(err)
			}
		}
		if r, _ := db.GetToken(ctx, got.ID); !r.RevokedAt.Equal(at) || r.Active(at.Add(-time.Hour)) {
			t.Errorf("revoked token = %+v", r)
		}
		if evs, _ := db.ListEvents(ctx, store.AuditFilter{Action: "token-revoke"}); len(evs) != 1 {
			t.Errorf("token-revoke events = %d, want 1", len(evs))
		}
		if err := db.RevokeToken(ctx, 99999, at, rec); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("RevokeToken(unknown) = %v", err)
		}
		if _, err := db.GetToken(ctx, 99999); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("GetToken(unknown) = %v", err)
		}
		if err := db.TouchToken(ctx, p1.ID, at); err != nil {
			t.Fatal(err)
		}
		if r, _ := db.GetToken(ctx, p1.ID); !r.LastUsedAt.Equal(at) {
			t.Errorf("LastUsedAt = %v, want %v", r.LastUsedAt, at)
		}
		n, err := db.RevokeOwnerTokens(ctx, "ldap:alice", []auth.TokenKind{auth.TokenSession}, at, host.Record{Actor: "x", Action: "logout-all"})
		if err != nil || n != 2 {
			t.Errorf("RevokeOwnerTokens(sessions) = %d, %v; want 2", n, err)
		}
		if r, _ := db.GetToken(ctx, p1.ID); !r.RevokedAt.IsZero() {
			t.Error("RevokeOwnerTokens(sessions) revoked a personal token")
		}
		// Only sessions expired before the cut are deleted.
		n, err = db.DeleteExpiredTokens(ctx, at.Add(time.Hour))
		if err != nil || n != 1 {
			t.Errorf("DeleteExpiredTokens = %d, %v; want 1", n, err)
		}
		if _, err := db.GetToken(ctx, s1.ID); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("expired session after delete: %v", err)
		}
		for _, id := range []int64{s2.ID, p1.ID} {
			if _, err := db.GetToken(ctx, id); err != nil {
				t.Errorf("token %d after DeleteExpiredTokens: %v", id, err)
			}
		}
	})
}

// TestAPITokensLegacy: the single-admin API only ever sees active service
// tokens holding admin everywhere.
func TestAPITokensLegacy(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		if err := db.CreateAPIToken(ctx, host.APIToken{Name: "admin", Hash: token.Hash("a"), Role: "admin"}); err != nil {
			t.Fatal(err)
		}
		got, err := db.TokenByHash(ctx, token.Hash("a"))
		if err != nil || got.Kind != auth.TokenService || got.Owner != "" || !slices.Equal(got.Grants, []auth.Grant{{Role: auth.RoleAdmin}}) {
			t.Errorf("bootstrap token as a Token = %+v, %v", got, err)
		}
		for _, tk := range []auth.Token{
			{Name: "viewer", Kind: auth.TokenService, Grants: []auth.Grant{{Role: auth.RoleViewer}}, Hash: token.Hash("v")},
			{Name: "scoped", Kind: auth.TokenService, Grants: []auth.Grant{{Role: auth.RoleAdmin, Hosts: "team=lab"}}, Hash: token.Hash("s")},
			{Name: "mine", Kind: auth.TokenPersonal, Owner: "local:root", Grants: []auth.Grant{{Role: auth.RoleAdmin}}, Hash: token.Hash("p")},
			{Name: "old", Kind: auth.TokenService, Grants: []auth.Grant{{Role: auth.RoleAdmin}}, ExpiresAt: time.Now().Add(-time.Minute), Hash: token.Hash("e")},
		} {
			if _, err := db.CreateToken(ctx, tk, host.Record{}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.APITokenByHash(ctx, tk.Hash); !errors.Is(err, host.ErrNotFound) {
				t.Errorf("APITokenByHash(%s) = %v, want ErrNotFound", tk.Name, err)
			}
		}
		if n, err := db.CountAPITokens(ctx); err != nil || n != 4 {
			t.Errorf("CountAPITokens = %d, %v; want 4 service tokens", n, err)
		}
		if err := db.RevokeToken(ctx, got.ID, time.Now(), host.Record{}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.APITokenByHash(ctx, token.Hash("a")); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("APITokenByHash(revoked) = %v, want ErrNotFound", err)
		}
	})
}

// TestAudit: every writer stores the client address and subject; the
// filters, the id cursor and pruning work, and events of deleted hosts stay.
func TestAudit(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		if _, err := db.CreateHost(ctx, testHost("node01", "52:54:00:00:00:01"), host.Record{Actor: "ldap:alice", Action: "create", ClientAddr: "192.0.2.7", RequestID: "r1", Time: t0}); err != nil {
			t.Fatal(err)
		}
		_, err := db.UpdateHost(ctx, "node01", func(h *host.Host) ([]host.Record, error) {
			h.State = host.StateReimage
			return []host.Record{{Actor: "ldap:bob", Event: host.EventReimage, From: host.StateReady, To: host.StateReimage, ClientAddr: "192.0.2.8", Time: t0.Add(time.Minute)}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.AppendEvents(ctx,
			host.Record{Actor: "ldap:alice", Action: "login", Subject: "ldap:alice", ClientAddr: "192.0.2.7", Time: t0.Add(2 * time.Minute)},
			host.Record{},
			host.Record{Actor: "unknown:mallory", Action: "login-failed", Subject: "unknown:mallory", Reason: "unknown user", Time: t0.Add(3 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteHost(ctx, "node01", host.Record{Actor: "ldap:alice", Action: "delete", Time: t0.Add(4 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		kinds := func(f store.AuditFilter) []string {
			t.Helper()
			evs, err := db.ListEvents(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range evs {
				out = append(out, e.Kind())
			}
			return out
		}
		for _, tc := range []struct {
			f    store.AuditFilter
			want []string
		}{
			{store.AuditFilter{}, []string{"delete", "login-failed", "login", "reimage", "create"}},
			{store.AuditFilter{Actor: "ldap:alice"}, []string{"delete", "login", "create"}},
			{store.AuditFilter{Host: "node01"}, []string{"delete", "reimage", "create"}},
			{store.AuditFilter{Action: "reimage"}, []string{"reimage"}},
			{store.AuditFilter{Action: "login"}, []string{"login"}},
			{store.AuditFilter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)}, []string{"login", "reimage"}},
			{store.AuditFilter{Limit: 2}, []string{"delete", "login-failed"}},
		} {
			if got := kinds(tc.f); !slices.Equal(got, tc.want) {
				t.Errorf("ListEvents(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		}
		// Cursor paging walks everything once.
		var all []string
		f := store.AuditFilter{Limit: 2}
		for {
			evs, err := db.ListEvents(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			for _, e := range evs {
				all = append(all, e.Kind())
			}
			f.Before = evs[len(evs)-1].ID
		}
		if want := []string{"delete", "login-failed", "login", "reimage", "create"}; !slices.Equal(all, want) {
			t.Errorf("paged = %v, want %v", all, want)
		}
		evs, _ := db.ListEvents(ctx, store.AuditFilter{Actor: "ldap:alice", Action: "create"})
		if len(evs) != 1 || evs[0].ClientAddr != "192.0.2.7" || evs[0].RequestID != "r1" || evs[0].Host != "node01" {
			t.Errorf("create event = %+v", evs)
		}
		evs, _ = db.ListEvents(ctx, store.AuditFilter{Action: "login"})
		if len(evs) != 1 || evs[0].Subject != "ldap:alice" || evs[0].Host != "" {
			t.Errorf("login event = %+v", evs)
		}
		// Long actors fit (MySQL column widened in v5).
		long := "ldap:" + strings.Repeat("a", 200)
		if err := db.AppendEvents(ctx, host.Record{Actor: long, Action: "login"}); err != nil {
			t.Errorf("AppendEvents(200-character actor): %v", err)
		}
		n, err := db.PruneEvents(ctx, t0.Add(2*time.Minute))
		if err != nil || n != 2 {
			t.Errorf("PruneEvents = %d, %v; want 2", n, err)
		}
		if got := kinds(store.AuditFilter{Host: "node01"}); !slices.Equal(got, []string{"delete"}) {
			t.Errorf("node01 after prune = %v", got)
		}
	})
}

// TestMigrateV5 upgrades a v4 database holding the bootstrap admin token:
// the token becomes a service token with admin everywhere and still
// authenticates, and old events read back without address or subject.
func TestMigrateV5(t *testing.T) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			dsn := storetest.DSN(t, d)
			db := storetest.OpenDSN(t, dsn)
			mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
			db.Close()
			raw := rawOpen(t, d, dsn)
			// Rewind to v4: the v4 api_tokens, no v5 tables or columns.
			dropIdx, dt := "DROP INDEX idx_events_actor", "datetime" // as gorm makes them
			switch d {
			case store.DriverMySQL:
				dropIdx, dt = dropIdx+" ON events", "datetime(6)"
			case store.DriverPostgres:
				dt = "timestamptz(6)"
			}
			for _, q := range []string{
				"DROP TABLE api_tokens", "DROP TABLE users", "DROP TABLE host_labels", dropIdx,
				"ALTER TABLE hosts DROP COLUMN labels", "ALTER TABLE events DROP COLUMN client_addr", "ALTER TABLE events DROP COLUMN subject",
				"CREATE TABLE api_tokens (name varchar(63) NOT NULL PRIMARY KEY, hash varchar(64) NOT NULL UNIQUE, role varchar(32) NOT NULL, created_at " + dt + " NOT NULL)",
				"DELETE FROM schema_migrations WHERE version = 5",
			} {
				if _, err := raw.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if _, err := raw.ExecContext(ctx, bindVars(d, "INSERT INTO api_tokens (name, hash, role, created_at) VALUES (?, ?, ?, ?)"),
				"admin", token.Hash("bootstrap"), "admin", "2026-01-01 00:00:00"); err != nil {
				t.Fatal(err)
			}
			db = storetest.OpenDSN(t, dsn)
			if v, err := db.SchemaVersion(ctx); err != nil || v != store.LatestSchema {
				t.Errorf("SchemaVersion = %d, %v; want %d", v, err, store.LatestSchema)
			}
			if a, err := db.APITokenByHash(ctx, token.Hash("bootstrap")); err != nil || a.Name != "admin" || a.Role != "admin" {
				t.Errorf("APITokenByHash(bootstrap) after upgrade = %+v, %v", a, err)
			}
			tk, err := db.TokenByHash(ctx, token.Hash("bootstrap"))
			if err != nil || tk.ID == 0 || tk.Kind != auth.TokenService || !slices.Equal(tk.Grants, []auth.Grant{{Role: auth.RoleAdmin}}) ||
				!tk.CreatedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !tk.Active(time.Now()) {
				t.Errorf("bootstrap token after upgrade = %+v, %v", tk, err)
			}
			id, err := auth.NewService(db, nil, auth.ServiceOptions{}).Authenticate(ctx, "bootstrap")
			if err != nil || id.Actor() != "token:admin" || !id.CanGlobal(auth.PermAdmin) {
				t.Errorf("Authenticate(bootstrap) after upgrade = %+v, %v", id, err)
			}
			if n, err := db.CountAPITokens(ctx); err != nil || n != 1 {
				t.Errorf("CountAPITokens = %d, %v", n, err)
			}
			if got := mustGet(t, db, "node01"); got.Labels != nil {
				t.Errorf("labels after upgrade = %v", got.Labels)
			}
			if evs, err := db.Events(ctx, "node01", 0); err != nil || len(evs) != 1 || evs[0].ClientAddr != "" || evs[0].Subject != "" {
				t.Errorf("events after upgrade = %+v, %v", evs, err)
			}
			db.Close()
			// Reopening changes nothing (each migration runs once).
			db = storetest.OpenDSN(t, dsn)
			if n, err := db.Migrations(ctx); err != nil || n != store.LatestSchema {
				t.Errorf("Migrations = %d, %v", n, err)
			}
		})
	}
}
