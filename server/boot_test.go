package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/server"
)

func TestBootChallengeAndAuth(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")

		// No credentials: iPXE needs a Basic challenge before it sends them.
		req := e.url + "/boot/v1/script"
		resp, err := e.client.Get(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="bootpilot"` {
			t.Fatalf("no credentials: %d %q, want 401 with Basic realm", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if code, _ := e.boot("node01", strings.Repeat("0", 32), mac1); code != 401 {
			t.Errorf("wrong token: %d, want 401", code)
		}
		if code, _ := e.boot("nobody", tok, mac1); code != 401 {
			t.Errorf("unknown host: %d, want 401", code)
		}
		if code, body := e.boot("node01", tok, "52:54:00:00:00:99"); code != 403 {
			t.Errorf("foreign MAC: %d %q, want 403", code, body)
		}
		code, body := e.boot("node01", tok, "52-54-00-12-34-56") // iPXE's :hexhyp form
		if code != 200 || body != bootscripts.Localboot {
			t.Fatalf("ready host: %d %q, want the localboot script", code, body)
		}
		inv := e.host("node01").Inventory
		if inv.MAC != mac1 || inv.Serial != "SN-node01" || inv.Arch != "x86_64" || inv.UUID == "" {
			t.Errorf("inventory = %+v, want mac, serial, arch and uuid recorded", inv)
		}
		// A rotated token replaces the old one.
		var nt struct{ Token string }
		e.mustDo(200, "POST", "/api/v1/hosts/node01/boot-token", nil, &nt)
		if code, _ := e.boot("node01", tok, mac1); code != 401 {
			t.Errorf("old token after rotation: %d, want 401", code)
		}
		if code, _ := e.boot("node01", nt.Token, mac1); code != 200 {
			t.Errorf("new token: %d, want 200", code)
		}
	})
}

// TestLifecycle walks register → localboot → reimage → install attempt 1 →
// attempt 2 → callback → localboot, then max attempts → failed → localboot.
func TestLifecycle(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")

		if _, body := e.boot("node01", tok, mac1); body != bootscripts.Localboot {
			t.Fatalf("ready: got %q", body)
		}
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]string{"reason": "test"}, nil)
		_, s1 := e.boot("node01", tok, mac1)
		if !strings.Contains(s1, "kernel --timeout") || !strings.Contains(s1, "ip=10.0.2.15::10.0.2.2:255.255.255.0:node01") {
			t.Fatalf("attempt 1: want an install script with the static IP, got:\n%s", s1)
		}
		if h := e.host("node01"); h.State != host.StateInstalling || h.Attempt != 1 {
			t.Fatalf("after attempt 1: %s/%d, want installing/1", h.State, h.Attempt)
		}
		cb1 := callbackURL(t, s1)
		_, s2 := e.boot("node01", tok, mac1)
		if h := e.host("node01"); h.State != host.StateInstalling || h.Attempt != 2 {
			t.Fatalf("after attempt 2: %s/%d, want installing/2", h.State, h.Attempt)
		}
		cb2 := callbackURL(t, s2)
		if cb1 == cb2 {
			t.Fatal("attempt 2 reused attempt 1's callback token")
		}
		// The installer config for this attempt is served at its URL.
		ks := strings.Replace(cb2, "/callback/", "/config/", 1) + "/ks.cfg"
		if code, body := e.get(ks); code != 200 || !strings.Contains(body, "10.0.2.15") {
			t.Errorf("ks.cfg: %d\n%s", code, body)
		}
		if code, _ := e.callback(cb1, `{"event":"installed"}`); code != 403 {
			t.Errorf("stale callback token: %d, want 403", code)
		}
		if code, body := e.callback(cb2, `{"event":"installed"}`); code != 200 {
			t.Fatalf("callback: %d %s", code, body)
		}
		if code, body := e.callback(cb2, `{"event":"installed"}`); code != 200 || !strings.Contains(body, "already") {
			t.Errorf("repeated callback: %d %s, want a no-op 200", code, body)
		}
		if code, _ := e.callback(cb2, `{"event":"failed"}`); code != 409 {
			t.Errorf("contradicting callback: %d, want 409", code)
		}
		if h := e.host("node01"); h.State != host.StateReady {
			t.Fatalf("after callback: %s, want ready", h.State)
		}
		if _, body := e.boot("node01", tok, mac1); body != bootscripts.Localboot {
			t.Fatalf("after install: got %q, want localboot", body)
		}
		if code, _ := e.get(ks); code != 403 {
			t.Errorf("config after the attempt ended: %d, want 403", code)
		}

		// Max attempts: three installs, then failed, then localboot forever.
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)
		for i := 1; i <= 3; i++ {
			if _, body := e.boot("node01", tok, mac1); !strings.Contains(body, "kernel ") {
				t.Fatalf("attempt %d: want install, got %q", i, body)
			}
		}
		for i := 0; i < 3; i++ {
			if _, body := e.boot("node01", tok, mac1); body != bootscripts.Localboot {
				t.Fatalf("boot after max attempts: got %q, want localboot", body)
			}
		}
		if h := e.host("node01"); h.State != host.StateFailed {
			t.Fatalf("after max attempts: %s, want failed", h.State)
		}
		// Retry brings it back; events record every step.
		e.mustDo(200, "POST", "/api/v1/hosts/node01/retry", nil, nil)
		var evs struct{ Events []host.Record }
		e.mustDo(200, "GET", "/api/v1/hosts/node01/events", nil, &evs)
		var got []string
		for i := len(evs.Events) - 1; i >= 0; i-- {
			r := evs.Events[i]
			if r.Event != "" {
				got = append(got, fmt.Sprintf("%s:%s>%s", r.Event, r.From, r.To))
			}
		}
		want := "reimage:ready>reimage serve:reimage>installing serve:installing>installing installed:installing>ready " +
			"reimage:ready>reimage serve:reimage>installing serve:installing>installing serve:installing>installing " +
			"exhausted:installing>failed retry:failed>reimage"
		if strings.Join(got, " ") != want {
			t.Errorf("events:\n got %s\nwant %s", strings.Join(got, " "), want)
		}
		for _, r := range evs.Events {
			if r.Actor == "" || r.Time.IsZero() {
				t.Errorf("event without actor or time: %+v", r)
			}
		}
		var served []int
		for i := len(evs.Events) - 1; i >= 0; i-- {
			if r := evs.Events[i]; r.Event == host.EventServe {
				served = append(served, r.Attempt)
			}
		}
		if fmt.Sprint(served) != "[1 2 1 2 3]" {
			t.Errorf("serve events name attempts %v, want [1 2 1 2 3]", served)
		}
	})
}

func TestDeadline(t *testing.T) {
	e := newEnv(t, "sqlite")
	tok := e.addHost("node01", mac1, "10.0.2.15/24")
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)
	e.boot("node01", tok, mac1)
	e.clock.Add(2 * time.Hour)
	e.srv.SweepOnce(context.Background())
	if h := e.host("node01"); h.State != host.StateFailed {
		t.Fatalf("after the deadline: %s, want failed", h.State)
	}
	if _, body := e.boot("node01", tok, mac1); body != bootscripts.Localboot {
		t.Fatalf("failed host boots %q, want localboot", body)
	}
}

func TestCleanThenInstall(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver)
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node01/clean", map[string]any{"then_install": true}, nil)
		_, s := e.boot("node01", tok, mac1)
		for _, want := range []string{"bootpilot.task=clean", "bootpilot.clean=zero", "bootpilot.ca=", "agent.cpio.gz"} {
			if !strings.Contains(s, want) {
				t.Errorf("clean script lacks %q:\n%s", want, s)
			}
		}
		if code, _ := e.callback(callbackURL(t, s), `{"event":"progress","detail":"50%"}`); code != 200 {
			t.Errorf("progress: %d", code)
		}
		if code, body := e.callback(callbackURL(t, s), `{"event":"cleaned"}`); code != 200 {
			t.Fatalf("cleaned: %d %s", code, body)
		}
		if h := e.host("node01"); h.State != host.StateReimage {
			t.Fatalf("after clean-then-install: %s, want reimage", h.State)
		}
		if _, s := e.boot("node01", tok, mac1); !strings.Contains(s, "inst.ks=") {
			t.Fatalf("want the install after the clean, got:\n%s", s)
		}
	})
}

func TestHoldAndFlipOnServe(t *testing.T) {
	e := newEnv(t, "sqlite")
	tok := e.addHost("node01", mac1, "10.0.2.15/24")
	e.mustDo(200, "POST", "/api/v1/hosts/node01/hold", nil, nil)
	_, s := e.boot("node01", tok, mac1)
	if !strings.Contains(s, "sleep 60") || !strings.Contains(s, "${bootpilot/url}") {
		t.Errorf("hold script:\n%s", s)
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/release", nil, nil)
	e.mustDo(200, "PATCH", "/api/v1/profiles/rocky9", map[string]any{"flip_on_serve": true}, nil)
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)
	if _, s := e.boot("node01", tok, mac1); !strings.Contains(s, "kernel ") {
		t.Fatalf("flip-on-serve install:\n%s", s)
	}
	if h := e.host("node01"); h.State != host.StateReady {
		t.Fatalf("flip on serve: %s, want ready", h.State)
	}
}

// brokenStore fails every call after the host lookup succeeds, as a database
// that goes away mid-request would.
type brokenStore struct {
	server.Store
	failUpdate, failGet, panics bool
}

func (b brokenStore) GetHost(ctx context.Context, name string) (host.Host, error) {
	if b.failGet {
		return host.Host{}, errors.New("connection refused")
	}
	if b.panics {
		panic("store bug")
	}
	return b.Store.GetHost(ctx, name)
}

func (b brokenStore) UpdateHost(ctx context.Context, name string, fn func(*host.Host) ([]host.Record, error)) (host.Host, error) {
	if b.failUpdate {
		return host.Host{}, errors.New("driver: bad connection")
	}
	return b.Store.UpdateHost(ctx, name, fn)
}

func (b brokenStore) GetProfile(ctx context.Context, name string) (host.Profile, error) {
	if name == "rocky9" && b.failUpdate {
		return host.Profile{}, errors.New("driver: bad connection")
	}
	return b.Store.GetProfile(ctx, name)
}

// TestFailSafe: no server-side failure may yield an install.
func TestFailSafe(t *testing.T) {
	base := newEnv(t, "sqlite")
	tok := base.addHost("node01", mac1, "10.0.2.15/24")
	base.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)

	for _, tc := range []struct {
		name string
		st   brokenStore
		want int
	}{
		{"database down", brokenStore{Store: base.db, failGet: true}, 503},
		{"write fails", brokenStore{Store: base.db, failUpdate: true}, 503},
		{"panic", brokenStore{Store: base.db, panics: true}, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvDB(t, base.db, func(o *server.Options) { o.Store = tc.st })
			code, body := e.boot("node01", tok, mac1)
			if code != tc.want || strings.Contains(body, "kernel") {
				t.Fatalf("got %d %q, want %d and no install", code, body, tc.want)
			}
		})
	}
	t.Run("closed database", func(t *testing.T) {
		e := newEnv(t, "sqlite")
		tok := e.addHost("node02", "52:54:00:00:00:02", "10.0.2.16/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node02/reimage", nil, nil)
		e.db.Close()
		code, body := e.boot("node02", tok, "52:54:00:00:00:02")
		if code < 500 || strings.Contains(body, "kernel") {
			t.Fatalf("closed DB: %d %q, want 5xx and no install", code, body)
		}
		if code, _ := e.get(e.url + "/readyz"); code != 503 {
			t.Errorf("readyz with a closed DB: %d, want 503", code)
		}
	})
	t.Run("profile template broken", func(t *testing.T) {
		e := newEnv(t, "sqlite")
		tok := e.addHost("node03", "52:54:00:00:00:03", "10.0.2.17/24")
		e.mustDo(200, "PATCH", "/api/v1/hosts/node03", map[string]any{"profile": "agent-clean"}, nil)
		// agent-clean has installer none and no initrd problem, so break it in the DB directly.
		_, err := e.db.UpdateProfile(context.Background(), "agent-clean", func(p *host.Profile) error {
			p.Kernel = "https://mirror.example/vmlinuz ${evil}"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		e.mustDo(200, "POST", "/api/v1/hosts/node03/reimage", nil, nil)
		code, body := e.boot("node03", tok, "52:54:00:00:00:03")
		if code != 200 || body != bootscripts.Localboot {
			t.Fatalf("broken profile: %d %q, want localboot", code, body)
		}
		if h := e.host("node03"); h.State != host.StateReimage {
			t.Errorf("broken profile consumed the attempt: state %s", h.State)
		}
	})
}
