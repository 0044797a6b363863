package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/server"
)

const (
	bmcUser = "admin"
	bmcPass = "Sup3r-S3cret-BMC-pw-never-shown"
)

// sizedISO is a deterministic stand-in for a host's ISO: a header naming
// the host and its boot token, then size bytes of pseudo-random data
// derived from both, so ranged reads that go wrong show up.
func sizedISO(w io.Writer, h host.Host, tok string, size int) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "BOOTPILOT-TEST-ISO host=%s token=%s\n", h.Name, tok)
	seed := sha256.Sum256([]byte(h.Name + tok))
	r := rand.New(rand.NewChaCha8(seed))
	pad := make([]byte, size)
	for i := range pad {
		pad[i] = byte(r.Uint32())
	}
	buf.Write(pad)
	_, err := w.Write(buf.Bytes())
	return err
}

var isoHeaderRE = regexp.MustCompile(`^BOOTPILOT-TEST-ISO host=(\S+) token=(\S+)\n`)

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// rfEnv is a server with Redfish configured, its log captured.
type rfEnv struct {
	*env
	log *lockedBuffer
}

func newRFEnv(t *testing.T, driver string, isoSize int, mutate ...func(*server.Options)) *rfEnv {
	t.Helper()
	key, err := secretbox.NewKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	lb := &lockedBuffer{}
	e := newEnv(t, driver, append([]func(*server.Options){func(o *server.Options) {
		o.Secrets = secretbox.NewKeyring(key)
		o.MediaKey = bytes.Repeat([]byte("k"), 32)
		o.ISO = func(w io.Writer, h host.Host, tok string) error { return sizedISO(w, h, tok, isoSize) }
		o.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.RedfishEndpoint = func(ep *redfish.Endpoint) {
			ep.RetryBackoff, ep.MaxBackoff, ep.TaskPoll = time.Millisecond, 5*time.Millisecond, time.Millisecond
		}
	}}, mutate...)...)
	return &rfEnv{env: e, log: lb}
}

// simBMC is a simulated BMC behind TLS whose inserts fetch the media URL
// in 16 KiB ranges, as a BMC does.
type simBMC struct {
	*bmcsim.BMC
	srv      *httptest.Server
	mu       sync.Mutex
	fetched  [][]byte // images read on insert
	fetchErr []error
}

func newSimBMC(t *testing.T, q bmcsim.Quirks, media *http.Client) *simBMC {
	t.Helper()
	s := &simBMC{}
	dir := t.TempDir()
	cfg := bmcsim.Config{Username: bmcUser, Password: bmcPass, Quirks: q, PoweredOn: true, SecureBoot: true}
	if media != nil {
		cfg.OnInsert = func(u string) error {
			s.mu.Lock()
			dst := filepath.Join(dir, fmt.Sprintf("fetch-%d.iso", len(s.fetched)+len(s.fetchErr)))
			s.mu.Unlock()
			_, err := bmcsim.FetchISO(context.Background(), media, u, dst, 16<<10)
			b, _ := os.ReadFile(dst)
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				s.fetchErr = append(s.fetchErr, err)
				return err
			}
			s.fetched = append(s.fetched, b)
			return nil
		}
	}
	s.BMC = bmcsim.New(cfg)
	s.srv = httptest.NewTLSServer(s.BMC)
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *simBMC) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw}))
}

func (s *simBMC) lastFetch(t *testing.T) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fetchErr) > 0 {
		t.Fatalf("BMC fetch failed: %v", s.fetchErr)
	}
	if len(s.fetched) == 0 {
		t.Fatal("the BMC fetched no image")
	}
	return s.fetched[len(s.fetched)-1]
}

// raw sends an admin request and returns the status and raw body.
func (e *env) raw(method, path string, body any) (int, string) {
	e.t.Helper()
	var m json.RawMessage
	code := e.do(method, path, body, &m)
	return code, string(m)
}

// waitFor polls cond until it holds or a generous limit passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

var quirkProfiles = []struct {
	name   string
	quirks bmcsim.Quirks
}{
	{"standard", bmcsim.Quirks{}},
	{"MediaUnderSystems", bmcsim.Quirks{MediaUnderSystems: true}},
	{"MediaInBoth", bmcsim.Quirks{MediaInBoth: true}},
	{"NoInsertAction", bmcsim.Quirks{NoInsertAction: true}},
	{"RequireTransferProtocol", bmcsim.Quirks{RequireTransferProtocol: true}},
	{"AsyncTasks", bmcsim.Quirks{AsyncTasks: true, TaskPolls: 2}},
	{"Flaky5xx", bmcsim.Quirks{Flaky5xx: 3}},
	{"Flaky429", bmcsim.Quirks{Flaky5xx: 2, FlakyStatus: 429}},
	{"NoSessions", bmcsim.Quirks{NoSessions: true}},
	{"RejectWriteProtected", bmcsim.Quirks{RejectWriteProtected: true}},
	{"FixedBootMode", bmcsim.Quirks{FixedBootMode: true}},
	{"everything", bmcsim.Quirks{MediaUnderSystems: true, NoInsertAction: true, RequireTransferProtocol: true,
		AsyncTasks: true, TaskPolls: 3, Flaky5xx: 2, RejectWriteProtected: true, FixedBootMode: true, NoSessions: true}},
}

// TestReimageViaRedfish runs the whole sequence through the real HTTPS
// stack for every quirk profile: set the BMC, test it, reimage via redfish
// (the fake BMC fetches the media URL in ranges; it must be the host's
// ISO with its current boot token), boot, callback, and then the media is
// ejected and the override cleared — with the password never shown.
func TestReimageViaRedfish(t *testing.T) {
	for _, p := range quirkProfiles {
		t.Run(p.name, func(t *testing.T) { testReimageViaRedfish(t, "sqlite", p.quirks, false) })
	}
	t.Run("mysql", func(t *testing.T) { testReimageViaRedfish(t, "mysql", bmcsim.Quirks{AsyncTasks: true}, false) })
	t.Run("plain-http-media", func(t *testing.T) { testReimageViaRedfish(t, "sqlite", bmcsim.Quirks{}, true) })
}

func testReimageViaRedfish(t *testing.T, driver string, q bmcsim.Quirks, plainMedia bool) {
	var plain *httptest.Server
	var mediaHTTP *http.Client
	mutate := func(o *server.Options) {}
	mediaDir := ""
	if plainMedia {
		// Plain HTTP, and the ISOs kept as files.
		plain = httptest.NewUnstartedServer(nil)
		mediaDir = t.TempDir()
		mutate = func(o *server.Options) { o.MediaURL, o.MediaDir = "http://"+plain.Listener.Addr().String(), mediaDir }
		mediaHTTP = &http.Client{Timeout: 30 * time.Second}
	}
	e := newRFEnv(t, driver, 300<<10+17, mutate)
	if plainMedia {
		plain.Config.Handler = e.srv.MediaHandler()
		plain.Start()
		t.Cleanup(plain.Close)
	} else {
		mediaHTTP = e.client // trusts the server's CA, as a BMC given it would
	}
	bmc := newSimBMC(t, q, mediaHTTP)
	e.addHost("node01", mac1, "10.0.2.15/24")

	var view map[string]any
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": bmcPass, "ca_pem": bmc.caPEM(), "session": true}, &view)
	if view["has_password"] != true || view["username"] != bmcUser || view["insecure"] != false {
		t.Errorf("PUT bmc answer = %v", view)
	}
	var test map[string]any
	e.mustDo(200, "POST", "/api/v1/hosts/node01/bmc/test", nil, &test)
	if test["power_state"] != "On" || test["secure_boot"] != true {
		t.Errorf("bmc test = %v, want power On, secure boot true", test)
	}

	var res struct {
		Host    host.Host
		Redfish map[string]any
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "redfish", "reason": "ticket-42"}, &res)
	if res.Host.State != host.StateReimage {
		t.Errorf("state after reimage via redfish = %q, want reimage", res.Host.State)
	}
	st := bmc.State()
	cd := bmc.CD()
	if !cd.Inserted || !strings.Contains(cd.Image, "/media/v1/node01.iso?exp=") {
		t.Fatalf("CD after reimage = %+v", cd)
	}
	if plainMedia != strings.HasPrefix(cd.Image, "http://") {
		t.Errorf("media URL %q: plain-HTTP listener %v", cd.Image, plainMedia)
	}
	if warned := strings.Contains(e.log.String(), "level=WARN msg=\""+server.PlainMediaWarning); warned != plainMedia {
		t.Errorf("plain-HTTP media warning logged: %v, want %v", warned, plainMedia)
	}
	if n := len(st.BootedFrom); n == 0 || st.BootedFrom[n-1] != "Cd" {
		t.Errorf("booted from %v, want the CD last (override Cd once)", st.BootedFrom)
	}
	if len(st.Resets) != 1 || st.Resets[0] != "ForceRestart" {
		t.Errorf("resets = %v, want [ForceRestart]", st.Resets)
	}

	mediaURL := cd.Image
	// The BMC read the host's ISO, built with the token now stored.
	iso := bmc.lastFetch(t)
	// The ISO is published in the database (any replica serves it), never
	// as a file in MediaDir.
	if u, err := url.Parse(cd.Image); err != nil {
		t.Error(err)
	} else if m, err := e.db.GetMedia(context.Background(), "node01", u.Query().Get("id")); err != nil || !bytes.Equal(m.Data, iso) {
		t.Errorf("published media row: %v, same bytes %v", err, bytes.Equal(m.Data, iso))
	}
	if mediaDir != "" {
		if files, _ := filepath.Glob(filepath.Join(mediaDir, "*")); len(files) != 0 {
			t.Errorf("media files written: %v", files)
		}
	}
	m := isoHeaderRE.FindSubmatch(iso)
	if m == nil || string(m[1]) != "node01" {
		t.Fatalf("fetched image is not node01's ISO: %.80q", iso)
	}
	var want bytes.Buffer
	sizedISO(&want, host.Host{Name: "node01"}, string(m[2]), 300<<10+17)
	if !bytes.Equal(iso, want.Bytes()) {
		t.Fatalf("fetched image (%d bytes) differs from the built one (%d bytes)", len(iso), want.Len())
	}
	code, script := e.boot("node01", string(m[2]), mac1)
	if code != 200 || !strings.Contains(script, "bootpilot.callback=") {
		t.Fatalf("boot with the ISO's token = %d %q", code, script)
	}
	// Tampering with the media URL is refused.
	bad := strings.Replace(cd.Image, "sig=", "sig=00", 1)
	if code, _ := get(t, mediaHTTP, bad); code != 403 {
		t.Errorf("tampered media URL = %d, want 403", code)
	}
	other := strings.Replace(cd.Image, "node01.iso", "node02.iso", 1)
	if code, _ := get(t, mediaHTTP, other); code != 403 {
		t.Errorf("media URL for another host = %d, want 403", code)
	}

	// A BMC that keeps the override (or an admin who set it): the eject
	// after the install must clear it.
	ep := redfish.Endpoint{URL: bmc.srv.URL, Username: bmcUser, Password: bmcPass, CAPEM: []byte(bmc.caPEM()), Logger: slog.New(slog.DiscardHandler), RetryBackoff: time.Millisecond}
	rc, err := redfish.Dial(context.Background(), ep)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.SetBootOverride(context.Background(), "Cd", "Continuous"); err != nil {
		t.Fatal(err)
	}
	rc.Close()

	if code, body := e.callback(callbackURL(t, script), `{"event":"installed"}`); code != 200 {
		t.Fatalf("callback = %d %s", code, body)
	}
	waitFor(t, "media ejected and override cleared", func() bool {
		b, err := e.db.GetBMC(context.Background(), "node01")
		return err == nil && !b.MediaInserted
	})
	st, cd = bmc.State(), bmc.CD()
	if cd.Inserted || cd.Image != "" {
		t.Errorf("CD after install = %+v, want empty", cd)
	}
	if st.BootEnabled != "Disabled" {
		t.Errorf("boot override after install = %s/%s, want Disabled", st.BootTarget, st.BootEnabled)
	}
	if h := e.host("node01"); h.State != host.StateReady {
		t.Errorf("state = %s, want ready", h.State)
	}
	if mediaDir != "" {
		if files, _ := filepath.Glob(filepath.Join(mediaDir, "*")); len(files) != 0 {
			t.Errorf("media files left after eject: %v", files)
		}
	}
	if code, _ := get(t, mediaHTTP, mediaURL); code != 404 {
		t.Error("media still served after eject")
	}
	if u, err := url.Parse(mediaURL); err == nil {
		if _, err := e.db.GetMedia(context.Background(), "node01", u.Query().Get("id")); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("media row after eject: %v, want ErrNotFound", err)
		}
	}

	// Audit trail: every step, with actor and request id, no secrets.
	_, evs := e.raw("GET", "/api/v1/hosts/node01/events", nil)
	for _, want := range []string{`"event":"bmc-set"`, `"event":"redfish-insert"`, `"event":"redfish-boot"`,
		`"event":"redfish-eject"`, `"reason":"ticket-42"`} {
		if !strings.Contains(evs, want) {
			t.Errorf("events lack %s:\n%s", want, evs)
		}
	}
	_, shown := e.raw("GET", "/api/v1/hosts/node01/bmc", nil)
	for where, text := range map[string]string{"log": e.log.String(), "events": evs, "GET bmc": shown,
		"bmc test": fmt.Sprint(test), "reimage answer": fmt.Sprint(res)} {
		if strings.Contains(text, bmcPass) {
			t.Errorf("the BMC password appears in the %s", where)
		}
		if where != "log" && strings.Contains(text, "sb1.") {
			t.Errorf("the sealed password appears in the %s", where)
		}
	}
	if e.log.String() == "" {
		t.Error("no log captured: the secret check proves nothing")
	}
}

func get(t *testing.T, c *http.Client, u string) (int, []byte) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET media: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestBMCOperations covers the single operations and their errors.
func TestBMCOperations(t *testing.T) {
	e := newRFEnv(t, "sqlite", 4096)
	bmc := newSimBMC(t, bmcsim.Quirks{}, nil)
	e.addHost("node01", mac1, "10.0.2.15/24")

	if code, body := e.raw("POST", "/api/v1/hosts/node01/power", map[string]any{"action": "status"}); code != 404 ||
		!strings.Contains(body, "no BMC") {
		t.Errorf("power without BMC = %d %s, want 404 saying so", code, body)
	}
	if code, _ := e.raw("PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser}); code != 400 {
		t.Errorf("PUT bmc without password = %d, want 400", code)
	}
	if code, _ := e.raw("PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": "ftp://x", "username": bmcUser, "password": "p"}); code != 400 {
		t.Errorf("PUT bmc with ftp URL = %d, want 400", code)
	}
	if code, _ := e.raw("PUT", "/api/v1/hosts/nobody/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser, "password": "p"}); code != 404 {
		t.Errorf("PUT bmc of unknown host = %d, want 404", code)
	}
	// Insecure: allowed, audited.
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": bmcPass, "insecure": true}, nil)
	if _, evs := e.raw("GET", "/api/v1/hosts/node01/events", nil); !strings.Contains(evs, "TLS verification DISABLED") {
		t.Errorf("insecure BMC not audited:\n%s", evs)
	}
	// Wrong password: 502 naming the BMC.
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": "wrong", "ca_pem": bmc.caPEM()}, nil)
	if code, body := e.raw("POST", "/api/v1/hosts/node01/bmc/test", nil); code != 502 || !strings.Contains(body, bmc.srv.URL) {
		t.Errorf("test with a wrong password = %d %s, want 502 naming the BMC", code, body)
	}
	// An update without a password keeps the stored one.
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": bmcPass, "ca_pem": bmc.caPEM()}, nil)
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"ca_pem": bmc.caPEM(), "session": true}, nil)

	var p map[string]any
	e.mustDo(200, "POST", "/api/v1/hosts/node01/power", map[string]any{"action": "off"}, &p)
	if p["power_state"] != "Off" || bmc.State().PowerOn {
		t.Errorf("power off = %v", p)
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/power", map[string]any{"action": "on"}, &p)
	if p["power_state"] != "On" {
		t.Errorf("power on = %v", p)
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/power", map[string]any{"action": "restart"}, &p)
	if code, _ := e.raw("POST", "/api/v1/hosts/node01/power", map[string]any{"action": "explode"}); code != 400 {
		t.Errorf("power explode = %d, want 400", code)
	}

	tokenBefore := e.host("node01").TokenHash
	var ins map[string]any
	e.mustDo(200, "POST", "/api/v1/hosts/node01/media/insert", nil, &ins)
	if !bmc.CD().Inserted || e.host("node01").TokenHash == tokenBefore {
		t.Errorf("insert: CD %+v, token rotated %v", bmc.CD(), e.host("node01").TokenHash != tokenBefore)
	}
	if img, _ := ins["media"].(map[string]any)["image"].(string); strings.Contains(img, "sig=") {
		t.Errorf("API answer shows the media URL's signature: %s", img)
	}
	if st := bmc.State(); st.BootEnabled != "Disabled" {
		t.Errorf("a plain insert changed the boot override: %+v", st)
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/media/eject", nil, nil)
	if bmc.CD().Inserted {
		t.Error("eject left the CD inserted")
	}
	// reimage via something else, or clean via redfish on a host in the wrong state.
	if code, _ := e.raw("POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "pigeon"}); code != 400 {
		t.Errorf("via pigeon = %d, want 400", code)
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/clean", map[string]any{"via": "redfish"}, nil)
	if h, st := e.host("node01"), bmc.State(); h.State != host.StateClean || !bmc.CD().Inserted || st.BootedFrom[len(st.BootedFrom)-1] != "Cd" {
		t.Errorf("clean via redfish: state %s, CD %+v, booted from %v", h.State, bmc.CD(), st.BootedFrom)
	}
	if code, _ := e.raw("POST", "/api/v1/hosts/node01/clean", map[string]any{"via": "redfish"}); code != 409 {
		t.Errorf("clean via redfish while clean = %d, want 409", code)
	}
	if code, _ := e.raw("POST", "/api/v1/hosts/node01/cancel", map[string]any{"via": "redfish"}); code != 400 {
		t.Errorf("cancel via redfish = %d, want 400", code)
	}

	e.mustDo(204, "DELETE", "/api/v1/hosts/node01/bmc", nil, nil)
	if code, _ := e.raw("GET", "/api/v1/hosts/node01/bmc", nil); code != 404 {
		t.Errorf("GET deleted bmc = %d, want 404", code)
	}
}

// TestBMCPlaintext: an http:// BMC URL is refused (400 naming url and the
// way out) unless insecure_plaintext is set; then it is stored, shown,
// audited, logged as a warning, and the BMC is reached. A row stored before
// the rule (http://, no flag) is refused before any request reaches the BMC.
func TestBMCPlaintext(t *testing.T) {
	e := newRFEnv(t, "sqlite", 4096)
	e.addHost("node01", mac1, "10.0.2.15/24")
	sim := bmcsim.New(bmcsim.Config{Username: bmcUser, Password: bmcPass, PoweredOn: true})
	var requests atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(plain.Close)
	set := map[string]any{"url": plain.URL, "username": bmcUser, "password": bmcPass}

	var refused struct{ Error, Field string }
	if code := e.do("PUT", "/api/v1/hosts/node01/bmc", set, &refused); code != 400 || refused.Field != "url" ||
		!strings.Contains(refused.Error, "in clear") || !strings.Contains(refused.Error, "insecure_plaintext") {
		t.Errorf("PUT bmc http:// = %d %+v, want 400 on url explaining insecure_plaintext", code, refused)
	}
	if _, err := e.db.GetBMC(context.Background(), "node01"); err == nil {
		t.Error("a refused http:// BMC was stored")
	}
	for field, body := range map[string]map[string]any{
		"insecure_plaintext": {"url": "https://10.0.0.10", "username": bmcUser, "password": bmcPass, "insecure_plaintext": true},
		"insecure":           {"url": plain.URL, "username": bmcUser, "password": bmcPass, "insecure_plaintext": true, "insecure": true},
	} {
		if code := e.do("PUT", "/api/v1/hosts/node01/bmc", body, &refused); code != 400 || refused.Field != field {
			t.Errorf("PUT bmc %v = %d %+v, want 400 on %s", body, code, refused, field)
		}
	}

	set["insecure_plaintext"] = true
	var view host.BMCInfo
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", set, &view)
	if !view.InsecurePlaintext || view.URL != plain.URL {
		t.Errorf("PUT bmc http:// with insecure_plaintext = %+v", view)
	}
	_, evs := e.raw("GET", "/api/v1/hosts/node01/events", nil)
	if !strings.Contains(evs, "BMC settings set with insecure plaintext (credentials travel in clear)") {
		t.Errorf("insecure plaintext not audited:\n%s", evs)
	}
	if !strings.Contains(e.log.String(), "level=WARN") || !strings.Contains(e.log.String(), "insecure plaintext") {
		t.Errorf("insecure plaintext not logged as a warning:\n%s", e.log.String())
	}
	var test map[string]any
	e.mustDo(200, "POST", "/api/v1/hosts/node01/bmc/test", nil, &test)
	if test["power_state"] != "On" || requests.Load() == 0 {
		t.Errorf("bmc test over plaintext = %v (%d requests)", test, requests.Load())
	}

	// A row stored before the rule: refused, nothing sent.
	b, _ := e.db.GetBMC(context.Background(), "node01")
	b.InsecurePlaintext = false
	if err := e.db.SetBMC(context.Background(), "node01", b, host.Record{Action: "bmc-set"}); err != nil {
		t.Fatal(err)
	}
	before := requests.Load()
	if code := e.do("POST", "/api/v1/hosts/node01/power", map[string]any{"action": "status"}, &refused); code != 400 ||
		refused.Field != "url" || !strings.Contains(refused.Error, "insecure_plaintext") {
		t.Errorf("power with a stored http:// BMC without the flag = %d %+v, want 400 on url", code, refused)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("the plaintext BMC got %d requests, want 0", n)
	}
	if strings.Contains(e.log.String(), bmcPass) || strings.Contains(evs, bmcPass) {
		t.Error("the BMC password appears in the log or events")
	}
}

// TestMediaURLBoundToPublication: a media URL fetches only the ISO it was
// signed for. After an eject and a new insert (a new ISO with a new boot
// token), the old URL is refused although it has not expired; the new one
// serves the new ISO until it is ejected — also when the BMC cannot be
// reached to eject it.
func TestMediaURLBoundToPublication(t *testing.T) {
	e := newRFEnv(t, "sqlite", 64<<10)
	bmc := newSimBMC(t, bmcsim.Quirks{}, e.client)
	e.addHost("node01", mac1, "10.0.2.15/24")
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": bmcPass, "ca_pem": bmc.caPEM()}, nil)
	insert := func() (string, []byte) {
		t.Helper()
		e.mustDo(200, "POST", "/api/v1/hosts/node01/media/insert", nil, nil)
		return bmc.CD().Image, bmc.lastFetch(t)
	}
	mustServe := func(what, u string, want []byte) {
		t.Helper()
		if code, got := get(t, e.client, u); code != 200 || !bytes.Equal(got, want) {
			t.Errorf("GET %s = %d (%d bytes, the published ISO: %v), want 200 and the ISO", what, code, len(got), bytes.Equal(got, want))
		}
	}
	mustRefuse := func(what, u string) {
		t.Helper()
		if code, got := get(t, e.client, u); code != 404 && code != 403 {
			t.Errorf("GET %s = %d (%d bytes), want 404 or 403", what, code, len(got))
		}
	}

	url1, iso1 := insert()
	mustServe("URL1 while inserted", url1, iso1)
	e.mustDo(200, "POST", "/api/v1/hosts/node01/media/eject", nil, nil)
	mustRefuse("URL1 after eject", url1)

	url2, iso2 := insert()
	if bytes.Equal(iso1, iso2) {
		t.Fatal("the second insert published the same ISO")
	}
	if url2 == url1 {
		t.Error("the second insert published the same URL as the first")
	}
	mustRefuse("URL1 after a new ISO was published", url1)
	mustServe("URL2", url2, iso2)
	m := isoHeaderRE.FindSubmatch(iso2)
	if m == nil {
		t.Fatalf("ISO2 is not a test ISO: %.60q", iso2)
	}
	if code, _ := e.boot("node01", string(m[2]), mac1); code != 200 {
		t.Errorf("boot with ISO2's token = %d, want 200", code)
	}

	url3, iso3 := insert() // insert over insert, no eject in between
	mustRefuse("URL2 after an insert over it", url2)
	mustServe("URL3", url3, iso3)
	e.mustDo(200, "POST", "/api/v1/hosts/node01/media/eject", nil, nil)
	mustRefuse("URL3 after eject", url3)

	// The BMC is gone: the eject fails, the media is unpublished anyway.
	url4, iso4 := insert()
	mustServe("URL4", url4, iso4)
	bmc.srv.Close()
	if code, _ := e.raw("POST", "/api/v1/hosts/node01/media/eject", nil); code != 502 {
		t.Errorf("eject with the BMC gone = %d, want 502", code)
	}
	mustRefuse("URL4 after a failed eject", url4)
}

// TestBMCNotConfigured: without a secret key the BMC API says how to make one.
func TestBMCNotConfigured(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.addHost("node01", mac1, "10.0.2.15/24")
	for _, r := range []struct {
		method, path string
		body         map[string]any
	}{
		{"PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": "https://10.0.0.1", "username": "u", "password": "p"}},
		{"POST", "/api/v1/hosts/node01/media/insert", nil},
		{"POST", "/api/v1/hosts/node01/power", map[string]any{"action": "status"}},
		{"POST", "/api/v1/bulk/reimage", map[string]any{"via": "redfish", "selector": map[string]any{"names": []string{"node01"}}}},
	} {
		code, body := e.raw(r.method, r.path, r.body)
		if code != 501 || !strings.Contains(body, "secret-key") {
			t.Errorf("%s %s = %d %s, want 501 explaining --secret-key-file", r.method, r.path, code, body)
		}
	}
	if code, body := e.raw("POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "redfish"}); code != 501 {
		t.Errorf("reimage via redfish = %d %s, want 501", code, body)
	}
	if h := e.host("node01"); h.State != host.StateReady {
		t.Errorf("a refused reimage via redfish flagged the host: %s", h.State)
	}
}

// countingBMC wraps a simulated BMC and records the most requests it saw
// at once, and the most across all BMCs.
type counter struct {
	now, max atomic.Int32
}

func (c *counter) enter() {
	n := c.now.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *counter) leave() { c.now.Add(-1) }

// TestBulkReimage: 120 hosts on 3 BMCs; every host is done, no BMC ever
// saw two requests at once (per-BMC lock), and with a global limit of 2 no
// more than 2 BMCs were busy at once.
func TestBulkReimage(t *testing.T) {
	for _, limit := range []int{50, 2} {
		t.Run(fmt.Sprintf("concurrency=%d", limit), func(t *testing.T) { testBulk(t, limit) })
	}
}

func testBulk(t *testing.T, limit int) {
	const hosts, nbmc = 120, 3
	e := newRFEnv(t, "sqlite", 2048, func(o *server.Options) { o.RedfishConcurrency = limit })
	var global counter
	per := make([]*counter, nbmc)
	urls := make([]string, nbmc)
	sims := make([]*bmcsim.BMC, nbmc)
	for i := range nbmc {
		per[i] = &counter{}
		sims[i] = bmcsim.New(bmcsim.Config{Username: bmcUser, Password: bmcPass, PoweredOn: true,
			Quirks: bmcsim.Quirks{AsyncTasks: i == 1, NoInsertAction: i == 2}})
		c, sim := per[i], sims[i]
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.enter()
			global.enter()
			defer c.leave()
			defer global.leave()
			sim.ServeHTTP(w, r)
		}))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	e.addProfiles()
	for i := range hosts {
		name := fmt.Sprintf("n%03d", i)
		e.mustDo(201, "POST", "/api/v1/hosts", map[string]any{"name": name, "macs": []string{fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256)},
			"ipv4": fmt.Sprintf("10.0.%d.%d/16", 100+i/250, 1+i%250), "gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}, "profile": "rocky9"}, nil)
		e.mustDo(200, "PUT", "/api/v1/hosts/"+name+"/bmc", map[string]any{"url": urls[i%nbmc], "username": bmcUser,
			"password": bmcPass, "insecure": true}, nil)
	}
	// One host without a BMC, to see a failure reported per host.
	e.mustDo(201, "POST", "/api/v1/hosts", map[string]any{"name": "nobmc", "macs": []string{"52:54:00:ff:ff:ff"},
		"ipv4": "10.0.2.16/24", "gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}, "profile": "rocky9"}, nil)

	e.mustDo(201, "POST", "/api/v1/hosts", map[string]any{"name": "extra", "macs": []string{"52:54:00:ff:ff:fe"},
		"ipv4": "10.0.2.17/24", "gateway": "10.0.2.2", "dns": []string{"10.0.2.3"}}, nil)
	e.mustDo(200, "PUT", "/api/v1/hosts/extra/bmc", map[string]any{"url": urls[0], "username": bmcUser, "password": bmcPass, "insecure": true}, nil)

	var job server.Job
	e.mustDo(202, "POST", "/api/v1/bulk/reimage", map[string]any{"selector": map[string]any{"profile": "rocky9", "state": "ready"},
		"via": "redfish", "reason": "fleet refresh"}, &job)
	if len(job.Hosts) != hosts+1 || job.ID == "" {
		t.Fatalf("job = %d hosts, id %q", len(job.Hosts), job.ID)
	}
	// A second job while the first runs is queued too, never refused.
	var job2 server.Job
	e.mustDo(202, "POST", "/api/v1/bulk/clean", map[string]any{"selector": map[string]any{"names": []string{"extra"}}, "via": "redfish"}, &job2)

	var got server.Job
	waitFor(t, "bulk job to finish", func() bool {
		e.mustDo(200, "GET", "/api/v1/jobs/"+job.ID, nil, &got)
		return !got.Finished.IsZero()
	})
	if got.Counts["done"] != hosts || got.Counts["failed"] != 1 {
		t.Errorf("counts = %v, want %d done, 1 failed", got.Counts, hosts)
	}
	for _, h := range got.Hosts {
		switch {
		case h.Host == "nobmc" && (h.Status != server.JobFailed || !strings.Contains(h.Error, "no BMC")):
			t.Errorf("nobmc = %+v, want failed: no BMC", h)
		case h.Host != "nobmc" && (h.Status != server.JobDone || h.BMC == "" || h.Started.IsZero()):
			t.Errorf("%s = %+v, want done", h.Host, h)
		}
	}
	for i, c := range per {
		if m := c.max.Load(); m != 1 {
			t.Errorf("BMC %d saw up to %d requests at once, want 1 (per-BMC lock)", i, m)
		}
		if st := sims[i].State(); len(st.Resets) < hosts/nbmc {
			t.Errorf("BMC %d: %d resets, want ≥ %d", i, len(st.Resets), hosts/nbmc)
		}
	}
	if m := global.max.Load(); m > int32(limit) {
		t.Errorf("up to %d BMC requests at once, over the limit %d", m, limit)
	}
	hs, _ := e.db.ListHosts(context.Background(), store.HostFilter{State: host.StateReimage})
	if len(hs) != hosts {
		t.Errorf("%d hosts flagged reimage, want %d", len(hs), hosts)
	}
	waitFor(t, "second job", func() bool {
		got = server.Job{} // decoding into the first job's struct would keep its finished time
		e.mustDo(200, "GET", "/api/v1/jobs/"+job2.ID, nil, &got)
		return !got.Finished.IsZero()
	})
	if got.Counts["done"] != 1 || e.host("extra").State != host.StateClean {
		t.Errorf("clean job = %+v, extra is %s", got, e.host("extra").State)
	}
	t.Logf("bulk: %d hosts, %d BMCs, limit %d: max %d BMC requests at once", hosts, nbmc, limit, global.max.Load())
}

// TestFlipOnServeEjects: with a profile that flips on serve (an installer
// that cannot call back), serving the install script makes the host ready,
// and that too ejects the media.
func TestFlipOnServeEjects(t *testing.T) {
	e := newRFEnv(t, "sqlite", 4096)
	bmc := newSimBMC(t, bmcsim.Quirks{}, e.client)
	e.addHost("node01", mac1, "10.0.2.15/24")
	e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "rescue", "kernel": "https://mirror.example/rescue/vmlinuz",
		"installer": "none", "flip_on_serve": true}, nil)
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": bmcPass, "ca_pem": bmc.caPEM()}, nil)
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "redfish", "profile": "rescue"}, nil)
	m := isoHeaderRE.FindSubmatch(bmc.lastFetch(t))
	if m == nil || !bmc.CD().Inserted {
		t.Fatalf("media not inserted: %+v", bmc.CD())
	}
	if code, script := e.boot("node01", string(m[2]), mac1); code != 200 || !strings.Contains(script, "rescue/vmlinuz") {
		t.Fatalf("boot = %d %s", code, script)
	}
	if h := e.host("node01"); h.State != host.StateReady {
		t.Fatalf("state after a flip-on-serve boot = %s, want ready", h.State)
	}
	waitFor(t, "media ejected after flip on serve", func() bool { return !bmc.CD().Inserted })
	if b, _ := e.db.GetBMC(context.Background(), "node01"); b.MediaInserted {
		t.Error("BMC record still says media inserted")
	}
}

// TestCancelAndFailureEject: media we inserted comes out when an admin
// cancels the reimage, and when the host fails (attempts exhausted).
func TestCancelAndFailureEject(t *testing.T) {
	e := newRFEnv(t, "sqlite", 4096, func(o *server.Options) { o.Policy.MaxAttempts = 1 })
	bmc := newSimBMC(t, bmcsim.Quirks{}, e.client)
	e.addHost("node01", mac1, "10.0.2.15/24")
	e.mustDo(200, "PUT", "/api/v1/hosts/node01/bmc", map[string]any{"url": bmc.srv.URL, "username": bmcUser,
		"password": bmcPass, "ca_pem": bmc.caPEM()}, nil)

	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "redfish"}, nil)
	if !bmc.CD().Inserted {
		t.Fatal("media not inserted")
	}
	e.mustDo(200, "POST", "/api/v1/hosts/node01/cancel", nil, nil)
	waitFor(t, "media ejected after cancel", func() bool { return !bmc.CD().Inserted })

	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"via": "redfish"}, nil)
	m := isoHeaderRE.FindSubmatch(bmc.lastFetch(t))
	if m == nil || !bmc.CD().Inserted {
		t.Fatalf("media not inserted again: %+v", bmc.CD())
	}
	tok := string(m[2])
	e.boot("node01", tok, mac1) // attempt 1 of 1
	if _, s := e.boot("node01", tok, mac1); strings.Contains(s, "kernel") {
		t.Fatalf("boot after the last attempt served an install:\n%s", s)
	}
	if h := e.host("node01"); h.State != host.StateFailed {
		t.Fatalf("state = %s, want failed", h.State)
	}
	waitFor(t, "media ejected after failure", func() bool { return !bmc.CD().Inserted })
}
