package redfish_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
)

var quiet = slog.New(slog.DiscardHandler)

const (
	user = "admin"
	pass = "pa55-w0rd-never-logged"
)

// hooks records what the simulated BMC was asked to do to the machine.
type hooks struct {
	mu      sync.Mutex
	inserts []string
	ejects  int
	resets  []string
	power   []bool
	fail    error // returned by OnInsert
}

func (h *hooks) attach(cfg *bmcsim.Config) {
	cfg.OnInsert = func(u string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.inserts = append(h.inserts, u)
		return h.fail
	}
	cfg.OnEject = func() { h.mu.Lock(); h.ejects++; h.mu.Unlock() }
	cfg.OnReset = func(k string) { h.mu.Lock(); h.resets = append(h.resets, k); h.mu.Unlock() }
	cfg.OnPower = func(on bool) { h.mu.Lock(); h.power = append(h.power, on); h.mu.Unlock() }
}

func (h *hooks) snapshot() hooks {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hooks{inserts: slices.Clone(h.inserts), ejects: h.ejects, resets: slices.Clone(h.resets), power: slices.Clone(h.power)}
}

// otherCA returns a fresh self-signed CA certificate (PEM) for 127.0.0.1
// that did not sign the test server's certificate. (All httptest servers
// share one certificate, so a second server would not do.)
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// caPEM returns the PEM of an httptest TLS server's self-signed certificate.
func caPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// newBMC starts a simulated BMC behind TLS and returns an endpoint pinned
// to its CA, with fast back-off so retries do not slow the tests.
func newBMC(t *testing.T, cfg bmcsim.Config) (*bmcsim.BMC, *hooks, redfish.Endpoint, *httptest.Server) {
	t.Helper()
	cfg.Username, cfg.Password = user, pass
	h := &hooks{}
	h.attach(&cfg)
	bmc := bmcsim.New(cfg)
	srv := httptest.NewTLSServer(bmc)
	t.Cleanup(srv.Close)
	ep := redfish.Endpoint{
		URL: srv.URL, Username: user, Password: pass, CAPEM: caPEM(srv),
		RetryBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, TaskPoll: time.Millisecond,
		Logger: quiet,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	return bmc, h, ep, srv
}

func mustDial(t *testing.T, ep redfish.Endpoint) *redfish.Client {
	t.Helper()
	c, err := redfish.Dial(context.Background(), ep)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c
}

var profiles = []struct {
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
	{"NoSessions", bmcsim.Quirks{NoSessions: true}},
	{"RejectWriteProtected", bmcsim.Quirks{RejectWriteProtected: true}},
	{"FixedBootMode", bmcsim.Quirks{FixedBootMode: true}},
	{"PATCH+RejectWriteProtected+async", bmcsim.Quirks{NoInsertAction: true, RejectWriteProtected: true, AsyncTasks: true}},
	{"Flaky 429 on Systems", bmcsim.Quirks{Flaky5xx: 2, FlakyStatus: 429, FlakyPath: "/Systems/1"}},
	{"Flaky 504 on PATCH targets", bmcsim.Quirks{Flaky5xx: 3, FlakyStatus: 504, FlakyPath: "/1"}},
	{"Flaky5xx on InsertMedia", bmcsim.Quirks{Flaky5xx: 2, FlakyPath: "InsertMedia"}},
	{"Flaky5xx on task monitors", bmcsim.Quirks{Flaky5xx: 2, FlakyPath: "TaskMonitors", AsyncTasks: true}},
	{"everything", bmcsim.Quirks{MediaUnderSystems: true, NoInsertAction: true, RequireTransferProtocol: true,
		AsyncTasks: true, TaskPolls: 3, Flaky5xx: 2}},
	{"action+async+transfer", bmcsim.Quirks{AsyncTasks: true, RequireTransferProtocol: true, MediaInBoth: true}},
}

// TestProfiles runs the whole reimage sequence against every quirk profile,
// with basic auth and with sessions.
func TestProfiles(t *testing.T) {
	for _, p := range profiles {
		for _, session := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/session=%v", p.name, session), func(t *testing.T) {
				testSequence(t, p.quirks, session)
			})
		}
	}
}

func testSequence(t *testing.T, q bmcsim.Quirks, session bool) {
	ctx := context.Background()
	bmc, h, ep, _ := newBMC(t, bmcsim.Config{Quirks: q, SecureBoot: true})
	ep.Session = session
	c := mustDial(t, ep)

	if on, err := c.SecureBoot(ctx); err != nil || !on {
		t.Errorf("SecureBoot = %v, %v, want true", on, err)
	}
	if ps, err := c.PowerState(ctx); err != nil || ps != "Off" {
		t.Errorf("PowerState = %q, %v, want Off", ps, err)
	}
	if err := c.Reset(ctx, "On"); err != nil {
		t.Fatalf("Reset(On): %v", err)
	}
	if ps, err := c.PowerState(ctx); err != nil || ps != "On" {
		t.Errorf("PowerState after On = %q, %v, want On", ps, err)
	}
	if err := c.Reset(ctx, "On"); err != nil { // already on: no-op
		t.Errorf("Reset(On) when on: %v", err)
	}

	u1 := "http://127.0.0.1:8081/media/v1/node01.iso?exp=1800000000&sig=aaaa"
	u2 := "https://127.0.0.1:8443/media/v1/node01.iso?exp=1800000001&sig=bbbb"
	if err := c.InsertMedia(ctx, u1); err != nil {
		t.Fatalf("InsertMedia(u1): %v", err)
	}
	cd := bmc.CD()
	if cd.Image != u1 || !cd.Inserted {
		t.Errorf("CD after insert = %+v, want image %s inserted", cd, u1)
	}
	if q.RequireTransferProtocol && cd.TransferProtocol != "HTTP" {
		t.Errorf("CD TransferProtocol = %q, want HTTP", cd.TransferProtocol)
	}
	st, err := c.MediaStatus(ctx)
	if err != nil || st.Image != u1 || !st.Inserted || !slices.Contains(st.MediaTypes, "CD") {
		t.Errorf("MediaStatus = %+v, %v, want CD slot with %s", st, err, u1)
	}
	if st.InsertAction == q.NoInsertAction {
		t.Errorf("MediaStatus.InsertAction = %v with NoInsertAction %v", st.InsertAction, q.NoInsertAction)
	}
	wantPrefix := "/redfish/v1/Managers/1/"
	if q.MediaUnderSystems || q.MediaInBoth {
		wantPrefix = "/redfish/v1/Systems/1/"
	}
	if !strings.HasPrefix(st.Slot, wantPrefix) {
		t.Errorf("MediaStatus.Slot = %q, want under %s", st.Slot, wantPrefix)
	}
	if err := c.InsertMedia(ctx, u1); err != nil { // same image: no-op
		t.Fatalf("InsertMedia(u1) again: %v", err)
	}
	if err := c.InsertMedia(ctx, u2); err != nil { // other image: eject first
		t.Fatalf("InsertMedia(u2): %v", err)
	}
	if cd := bmc.CD(); cd.Image != u2 || !cd.Inserted {
		t.Errorf("CD after second insert = %+v, want %s", cd, u2)
	}
	if got := h.snapshot(); !slices.Equal(got.inserts, []string{u1, u2}) || got.ejects != 1 {
		t.Errorf("OnInsert calls = %v, ejects = %d; want [u1 u2] and 1 eject", got.inserts, got.ejects)
	}
	for _, m := range bmc.State().Media {
		if m.ID != "CD1" && m.Image != "" {
			t.Errorf("slot %s got image %q; only the CD slot should", m.ID, m.Image)
		}
	}

	if err := c.SetBootOverride(ctx, "Cd", "Once"); err != nil {
		t.Fatalf("SetBootOverride(Cd, Once): %v", err)
	}
	if s := bmc.State(); s.BootTarget != "Cd" || s.BootEnabled != "Once" || s.BootMode != "UEFI" {
		t.Errorf("boot = %s/%s/%s, want Cd/Once/UEFI", s.BootTarget, s.BootEnabled, s.BootMode)
	}
	if err := c.Reset(ctx, "ForceRestart"); err != nil {
		t.Fatalf("Reset(ForceRestart): %v", err)
	}
	s := bmc.State()
	if last := s.BootedFrom[len(s.BootedFrom)-1]; last != "Cd" {
		t.Errorf("booted from %q after restart, want Cd (BootedFrom %v)", last, s.BootedFrom)
	}
	if b, err := c.Boot(ctx); err != nil || b.Enabled != "Disabled" {
		t.Errorf("Boot after a Once boot = %+v, %v, want Disabled", b, err)
	}
	if err := c.SetBootOverride(ctx, "Cd", "Continuous"); err != nil {
		t.Fatalf("SetBootOverride(Cd, Continuous): %v", err)
	}
	if err := c.SetBootOverride(ctx, "None", "Disabled"); err != nil {
		t.Fatalf("SetBootOverride(None, Disabled): %v", err)
	}
	if s := bmc.State(); s.BootEnabled != "Disabled" || s.BootTarget != "None" {
		t.Errorf("boot = %s/%s, want None/Disabled", s.BootTarget, s.BootEnabled)
	}

	if err := c.EjectMedia(ctx); err != nil {
		t.Fatalf("EjectMedia: %v", err)
	}
	if cd := bmc.CD(); cd.Image != "" || cd.Inserted {
		t.Errorf("CD after eject = %+v, want empty", cd)
	}
	if err := c.EjectMedia(ctx); err != nil {
		t.Fatalf("EjectMedia on an empty slot: %v", err)
	}
	if err := c.Reset(ctx, "ForceOff"); err != nil {
		t.Fatalf("Reset(ForceOff): %v", err)
	}
	if got := h.snapshot(); !slices.Equal(got.power, []bool{true, false}) || !slices.Equal(got.resets, []string{"ForceRestart"}) || got.ejects != 2 {
		t.Errorf("hooks: power %v, resets %v, ejects %d; want [true false], [ForceRestart], 2", got.power, got.resets, got.ejects)
	}
	if s := bmc.State(); !slices.Equal(s.Resets, []string{"On", "ForceRestart", "ForceOff"}) {
		t.Errorf("resets sent = %v, want [On ForceRestart ForceOff]", s.Resets)
	}

	st2 := bmc.State()
	switch {
	case session && !q.NoSessions:
		if st2.Sessions != 1 || st2.BasicAuthOK != 0 {
			t.Errorf("session mode: %d sessions, %d basic-auth requests; want 1 and 0", st2.Sessions, st2.BasicAuthOK)
		}
	default:
		if st2.SessionAuth != 0 || st2.BasicAuthOK == 0 {
			t.Errorf("basic mode: %d token requests, %d basic-auth requests; want 0 and >0", st2.SessionAuth, st2.BasicAuthOK)
		}
	}
	if st2.Failed5xx != int64(q.Flaky5xx) {
		t.Errorf("503 answers = %d, want %d", st2.Failed5xx, q.Flaky5xx)
	}
	if q.NoInsertAction && (st2.Actions != 0 || st2.MediaPatches == 0) {
		t.Errorf("NoInsertAction: %d actions, %d patches; want 0 and >0", st2.Actions, st2.MediaPatches)
	}
	if !q.NoInsertAction && (st2.MediaPatches != 0 || st2.Actions == 0) {
		t.Errorf("with actions: %d actions, %d patches; want >0 and 0", st2.Actions, st2.MediaPatches)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := bmc.State().Sessions; n != 0 {
		t.Errorf("%d sessions left after Close, want 0", n)
	}
}

func TestAuthFailures(t *testing.T) {
	for _, session := range []bool{false, true} {
		_, _, ep, _ := newBMC(t, bmcsim.Config{})
		ep.Password, ep.Session = "wrong-password", session
		_, err := redfish.Dial(context.Background(), ep)
		var e *redfish.Error
		if !errors.Is(err, redfish.ErrAuth) || !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
			t.Errorf("session=%v: Dial with a wrong password = %v, want *Error 401 wrapping ErrAuth", session, err)
			continue
		}
		if !strings.Contains(err.Error(), ep.URL) || strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("session=%v: error %q must name the BMC %s and not the password", session, err, ep.URL)
		}
	}
}

func TestRetriesExhausted(t *testing.T) {
	bmc, _, ep, _ := newBMC(t, bmcsim.Config{Quirks: bmcsim.Quirks{Flaky5xx: 100}})
	ep.Retries = 2
	_, err := redfish.Dial(context.Background(), ep)
	var e *redfish.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || !strings.Contains(e.Message, "ServiceTemporarilyUnavailable") {
		t.Fatalf("Dial against a BMC that keeps answering 503 = %v, want *Error 503 with the BMC's message", err)
	}
	if !strings.Contains(err.Error(), "read service root") || !strings.Contains(err.Error(), ep.URL) {
		t.Errorf("error %q should name the step and the BMC", err)
	}
	if n := bmc.State().Requests; n != 3 {
		t.Errorf("BMC saw %d requests, want 3 (1 + 2 retries)", n)
	}
}

// TestTimeoutRetried stalls the first Systems request past the per-attempt
// timeout; the adapter retries it.
func TestTimeoutRetried(t *testing.T) {
	bmc := bmcsim.New(bmcsim.Config{Username: user, Password: pass})
	var systems atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redfish/v1/Systems" && systems.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		bmc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, err := redfish.Dial(context.Background(), redfish.Endpoint{
		URL: srv.URL, Username: user, Password: pass, CAPEM: caPEM(srv),
		Timeout: time.Second, RetryBackoff: time.Millisecond, Logger: quiet,
	})
	if err != nil {
		t.Fatalf("Dial with one stalled request: %v", err)
	}
	defer c.Close()
	if n := systems.Load(); n != 2 {
		t.Errorf("Systems requested %d times, want 2", n)
	}
}

func TestTLS(t *testing.T) {
	_, _, ep, _ := newBMC(t, bmcsim.Config{})
	ctx := context.Background()
	wrongCA := ep
	wrongCA.CAPEM = otherCA(t)
	_, err := redfish.Dial(ctx, wrongCA)
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Errorf("Dial with another CA = %v, want a certificate verification error", err)
	}
	noCA := ep
	noCA.CAPEM = nil
	if _, err := redfish.Dial(ctx, noCA); !errors.As(err, &verr) {
		t.Errorf("Dial with system roots = %v, want a certificate verification error", err)
	}
	insecure := noCA
	insecure.Insecure = true
	c, err := redfish.Dial(ctx, insecure)
	if err != nil {
		t.Fatalf("Dial with Insecure: %v", err)
	}
	c.Close()
	both := ep
	both.Insecure = true
	if _, err := redfish.Dial(ctx, both); !errors.Is(err, redfish.ErrInvalid) {
		t.Errorf("Dial with CA and Insecure = %v, want ErrInvalid", err)
	}
	withCreds := ep
	withCreds.URL = strings.Replace(ep.URL, "https://", "https://admin:x@", 1)
	if _, err := redfish.Dial(ctx, withCreds); !errors.Is(err, redfish.ErrInvalid) || strings.Contains(err.Error(), "admin:x") {
		t.Errorf("Dial with credentials in the URL = %v, want ErrInvalid without them", err)
	}
}

// TestPlaintextRefused: an http:// BMC gets no request at all — no Basic
// credentials, no session login — unless the endpoint says
// InsecurePlaintext; then it works, with a warning in the log.
func TestPlaintextRefused(t *testing.T) {
	for _, session := range []bool{false, true} {
		bmc := bmcsim.New(bmcsim.Config{Username: user, Password: pass})
		var requests, withCreds atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			if r.Header.Get("Authorization") != "" || r.Header.Get("X-Auth-Token") != "" || r.Method == http.MethodPost {
				withCreds.Add(1)
			}
			bmc.ServeHTTP(w, r)
		}))
		ep := redfish.Endpoint{URL: srv.URL, Username: user, Password: pass, Session: session, Logger: quiet}
		_, err := redfish.Dial(context.Background(), ep)
		var ve *host.ValidationError
		if !errors.Is(err, redfish.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "url" || !strings.Contains(ve.Reason, "insecure_plaintext") {
			t.Errorf("session=%v: Dial(http://) = %v, want ErrInvalid and a url error naming insecure_plaintext", session, err)
		}
		if n := requests.Load(); n != 0 {
			t.Errorf("session=%v: the plaintext BMC got %d requests before the refusal, want 0", session, n)
		}

		var logged bytes.Buffer
		ep.InsecurePlaintext, ep.Logger = true, slog.New(slog.NewTextHandler(&logged, nil))
		c, err := redfish.Dial(context.Background(), ep)
		if err != nil {
			t.Fatalf("session=%v: Dial(http://) with InsecurePlaintext: %v", session, err)
		}
		if _, err := c.PowerState(context.Background()); err != nil {
			t.Errorf("session=%v: PowerState over plaintext: %v", session, err)
		}
		c.Close()
		if withCreds.Load() == 0 {
			t.Errorf("session=%v: no credentials reached the BMC: the refusal above proves nothing", session)
		}
		if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "in clear") {
			t.Errorf("session=%v: no warning logged for a plaintext BMC:\n%s", session, logged.String())
		}
		srv.Close()
	}
	// The flag does not turn TLS checks off for an https:// BMC.
	_, _, ep, _ := newBMC(t, bmcsim.Config{})
	ep.CAPEM, ep.InsecurePlaintext = otherCA(t), true
	var verr *tls.CertificateVerificationError
	if _, err := redfish.Dial(context.Background(), ep); !errors.As(err, &verr) {
		t.Errorf("Dial(https://, wrong CA, InsecurePlaintext) = %v, want a certificate verification error", err)
	}
}

// TestInsertRefused: the BMC cannot read the image; the error carries the
// BMC's answer without the URL's signature, and the slot stays empty.
func TestInsertRefused(t *testing.T) {
	for _, async := range []bool{false, true} {
		bmc, h, ep, _ := newBMC(t, bmcsim.Config{Quirks: bmcsim.Quirks{AsyncTasks: async}})
		h.fail = errors.New("GET http://127.0.0.1:8081/media/v1/node01.iso?exp=1&sig=deadbeefcafe: 403 Forbidden")
		c := mustDial(t, ep)
		err := c.InsertMedia(context.Background(), "http://127.0.0.1:8081/media/v1/node01.iso?exp=1&sig=deadbeefcafe")
		var e *redfish.Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, "ResourceCannotBeCreated") {
			t.Errorf("async=%v: InsertMedia = %v, want *Error 400 with the BMC's message", async, err)
		}
		if async && !errors.Is(err, redfish.ErrTask) {
			t.Errorf("async=%v: InsertMedia = %v, want ErrTask", async, err)
		}
		if err != nil && strings.Contains(err.Error(), "deadbeefcafe") {
			t.Errorf("async=%v: error %q leaks the URL signature", async, err)
		}
		if cd := bmc.CD(); cd.Image != "" || cd.Inserted {
			t.Errorf("async=%v: CD = %+v after a failed insert, want empty", async, cd)
		}
		c.Close()
	}
}

func TestInvalidArguments(t *testing.T) {
	_, _, ep, _ := newBMC(t, bmcsim.Config{})
	c := mustDial(t, ep)
	defer c.Close()
	ctx := context.Background()
	for name, err := range map[string]error{
		"SetBootOverride(Floppy)": c.SetBootOverride(ctx, "Floppy", "Once"),
		"SetBootOverride(Always)": c.SetBootOverride(ctx, "Cd", "Always"),
		"Reset(Explode)":          c.Reset(ctx, "Explode"),
		"InsertMedia(ftp)":        c.InsertMedia(ctx, "ftp://127.0.0.1/x.iso"),
		"InsertMedia(relative)":   c.InsertMedia(ctx, "/media/v1/x.iso"),
	} {
		if !errors.Is(err, redfish.ErrInvalid) {
			t.Errorf("%s = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := redfish.Dial(ctx, redfish.Endpoint{URL: "ftp://127.0.0.1"}); !errors.Is(err, redfish.ErrInvalid) {
		t.Errorf("Dial(ftp://) = %v, want ErrInvalid", err)
	}
}

// TestRestartWhenOff: a restart of a system that is off powers it on.
func TestRestartWhenOff(t *testing.T) {
	bmc, h, ep, _ := newBMC(t, bmcsim.Config{})
	c := mustDial(t, ep)
	defer c.Close()
	if err := c.Reset(context.Background(), "GracefulRestart"); err != nil {
		t.Fatal(err)
	}
	if s := bmc.State(); !s.PowerOn || !slices.Equal(s.Resets, []string{"On"}) {
		t.Errorf("after a restart of an off system: power %v, resets %v; want on via [On]", s.PowerOn, s.Resets)
	}
	if got := h.snapshot(); !slices.Equal(got.power, []bool{true}) || len(got.resets) != 0 {
		t.Errorf("hooks: power %v resets %v, want [true] []", got.power, got.resets)
	}
}

// TestInsertLostAnswer: the BMC inserts the image but its answer is lost
// (500); the retried POST meets 409 ResourceInUse, and the adapter trusts
// the read back slot.
func TestInsertLostAnswer(t *testing.T) {
	bmc := bmcsim.New(bmcsim.Config{Username: user, Password: pass})
	var inserts atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "InsertMedia") && inserts.Add(1) == 1 {
			bmc.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "gateway lost the answer", http.StatusInternalServerError)
			return
		}
		bmc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := mustDial(t, redfish.Endpoint{URL: srv.URL, Username: user, Password: pass, CAPEM: caPEM(srv),
		RetryBackoff: time.Millisecond, Logger: quiet})
	defer c.Close()
	u := "http://127.0.0.1:8081/media/v1/node01.iso?exp=1800000000&sig=aaaa"
	if err := c.InsertMedia(context.Background(), u); err != nil {
		t.Fatalf("InsertMedia: %v", err)
	}
	if n := inserts.Load(); n != 2 {
		t.Errorf("InsertMedia POSTs = %d, want 2 (one lost answer, one retry)", n)
	}
	if cd := bmc.CD(); cd.Image != u || !cd.Inserted {
		t.Errorf("CD = %+v, want %s inserted", cd, u)
	}
}

// TestSessionExpiry: the BMC drops all sessions mid-way; the adapter logs
// in again and carries on.
func TestSessionExpiry(t *testing.T) {
	for _, async := range []bool{false, true} {
		bmc, _, ep, _ := newBMC(t, bmcsim.Config{Quirks: bmcsim.Quirks{AsyncTasks: async}})
		ep.Session = true
		c := mustDial(t, ep)
		ctx := context.Background()
		if _, err := c.PowerState(ctx); err != nil {
			t.Fatal(err)
		}
		bmc.ExpireSessions()
		u := "http://127.0.0.1:8081/media/v1/node01.iso?exp=1800000000&sig=aaaa"
		if err := c.InsertMedia(ctx, u); err != nil {
			t.Fatalf("async=%v: InsertMedia after the session expired: %v", async, err)
		}
		if n := bmc.State().Sessions; n != 1 {
			t.Errorf("async=%v: %d sessions, want 1 (a new one)", async, n)
		}
		bmc.ExpireSessions()
		if err := c.Reset(ctx, "On"); err != nil {
			t.Fatalf("async=%v: Reset after the session expired: %v", async, err)
		}
		if s := bmc.State(); s.BasicAuthOK != 0 || !s.PowerOn {
			t.Errorf("async=%v: %d basic-auth requests, power %v; want 0 and on", async, s.BasicAuthOK, s.PowerOn)
		}
		c.Close()
	}
}
