package redfish_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
)

// newCert returns a self-signed certificate named cn.
func newCert(t *testing.T, cn, org string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour).Truncate(time.Second),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sha(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// sbChanges records OnSecureBoot calls.
type sbChanges struct {
	mu   sync.Mutex
	got  []bmcsim.SecureBootChange
	fail error
}

func (s *sbChanges) hook(c bmcsim.SecureBootChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, c)
	return s.fail
}

func (s *sbChanges) all() []bmcsim.SecureBootChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bmcsim.SecureBootChange(nil), s.got...)
}

var sbProfiles = []struct {
	name   string
	quirks bmcsim.Quirks
}{
	{"standard", bmcsim.Quirks{}},
	{"AsyncTasks", bmcsim.Quirks{AsyncTasks: true, TaskPolls: 2}},
	{"NoCertificateString", bmcsim.Quirks{NoCertificateString: true}},
	{"Flaky5xx on certificates", bmcsim.Quirks{Flaky5xx: 3, FlakyPath: "/Certificates"}},
}

// TestEnrollDB enrols a db certificate on every profile, with basic auth
// and sessions: the certificate is listed at once, applied at the next power
// cycle, and a second enrolment changes nothing.
func TestEnrollDB(t *testing.T) {
	for _, p := range sbProfiles {
		for _, session := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/session=%v", p.name, session), func(t *testing.T) {
				testEnrollDB(t, p.quirks, session)
			})
		}
	}
}

func testEnrollDB(t *testing.T, q bmcsim.Quirks, session bool) {
	ctx := context.Background()
	ms := newCert(t, "Microsoft Corporation UEFI CA 2011", "Microsoft Corporation")
	ours := newCert(t, "bootpilot db", "Example")
	changes := &sbChanges{}
	bmc, h, ep, _ := newBMC(t, bmcsim.Config{Quirks: q, PoweredOn: true, SecureBoot: true,
		SecureBootDB: [][]byte{ms.Raw}, OnSecureBoot: changes.hook})
	ep.Session = session
	c := mustDial(t, ep)
	defer c.Close()

	st, err := c.SecureBootState(ctx)
	if err != nil {
		t.Fatalf("SecureBootState: %v", err)
	}
	want := redfish.Cert{Subject: "CN=Microsoft Corporation UEFI CA 2011,O=Microsoft Corporation",
		Issuer: "CN=Microsoft Corporation UEFI CA 2011,O=Microsoft Corporation", SHA256: sha(ms), NotAfter: ms.NotAfter}
	if !st.Enabled || st.CurrentBoot != "Enabled" || st.Mode != "DeployedMode" || !st.Databases ||
		len(st.DB) != 1 || st.DB[0].Subject != want.Subject || st.DB[0].Issuer != want.Issuer ||
		st.DB[0].SHA256 != want.SHA256 || !st.DB[0].NotAfter.Equal(want.NotAfter) {
		t.Fatalf("SecureBootState = %+v, want enabled, DeployedMode, databases, db [%+v]", st, want)
	}

	added, err := c.EnrollDB(ctx, ours)
	if err != nil || !added {
		t.Fatalf("EnrollDB = %v, %v; want true, nil", added, err)
	}
	st, err = c.SecureBootState(ctx)
	if err != nil || len(st.DB) != 2 || st.DB[1].SHA256 != sha(ours) {
		t.Fatalf("after EnrollDB: SecureBootState = %+v, %v; want db with ours second", st, err)
	}
	if s := bmc.State(); len(s.SecureBootDB) != 2 || len(s.SecureBootApplied) != 1 {
		t.Fatalf("BMC db %d certificates, applied %d; want 2 listed, 1 applied (pending until restart)", len(s.SecureBootDB), len(s.SecureBootApplied))
	}
	if added, err := c.EnrollDB(ctx, ours); err != nil || added {
		t.Fatalf("second EnrollDB = %v, %v; want false, nil", added, err)
	}
	if added, err := c.EnrollDB(ctx, ms); err != nil || added {
		t.Fatalf("EnrollDB of a certificate already in db = %v, %v; want false, nil", added, err)
	}
	if n := len(bmc.State().SecureBootDB); n != 2 {
		t.Fatalf("BMC db has %d certificates after repeated enrolments, want 2", n)
	}
	if len(changes.all()) != 0 {
		t.Fatal("OnSecureBoot ran before a power cycle")
	}

	// The restart applies it, before the reset hook.
	if err := c.Reset(ctx, "ForceRestart"); err != nil {
		t.Fatal(err)
	}
	got := changes.all()
	if len(got) != 1 || !got[0].Restart || !got[0].Enable || len(got[0].Added) != 1 ||
		!bytes.Equal(got[0].Added[0], ours.Raw) || len(got[0].Removed) != 0 || len(got[0].DB) != 2 {
		t.Fatalf("OnSecureBoot calls = %+v, want one restart adding ours", got)
	}
	if r := h.snapshot().resets; len(r) != 1 {
		t.Fatalf("reset hook calls %v, want 1", r)
	}
	if s := bmc.State(); len(s.SecureBootApplied) != 2 || s.SecureBootError != "" {
		t.Fatalf("after the restart the firmware has %d db certificates (error %q), want 2", len(s.SecureBootApplied), s.SecureBootError)
	}
	// Nothing pending: the next restart calls no hook.
	if err := c.Reset(ctx, "ForceRestart"); err != nil {
		t.Fatal(err)
	}
	if n := len(changes.all()); n != 1 {
		t.Fatalf("OnSecureBoot ran %d times, want 1 (nothing pending)", n)
	}
}

// TestSetSecureBoot: SecureBootEnable changes at once, SecureBootCurrentBoot
// after the next power-on.
func TestSetSecureBoot(t *testing.T) {
	ctx := context.Background()
	changes := &sbChanges{}
	bmc, _, ep, _ := newBMC(t, bmcsim.Config{Quirks: bmcsim.Quirks{AsyncTasks: true}, SecureBoot: false, OnSecureBoot: changes.hook})
	c := mustDial(t, ep)
	defer c.Close()
	if err := c.SetSecureBoot(ctx, true); err != nil {
		t.Fatalf("SetSecureBoot(true): %v", err)
	}
	st, err := c.SecureBootState(ctx)
	if err != nil || !st.Enabled || st.CurrentBoot != "Disabled" {
		t.Fatalf("SecureBootState = %+v, %v; want Enabled, CurrentBoot Disabled until a power cycle", st, err)
	}
	if on, err := c.SecureBoot(ctx); err != nil || !on {
		t.Fatalf("SecureBoot = %v, %v; want true", on, err)
	}
	if err := c.Reset(ctx, "On"); err != nil {
		t.Fatal(err)
	}
	if got := changes.all(); len(got) != 1 || got[0].Restart || !got[0].Enable || len(got[0].Added)+len(got[0].Removed) != 0 {
		t.Fatalf("OnSecureBoot calls = %+v, want one power-on enabling", got)
	}
	if st, err := c.SecureBootState(ctx); err != nil || st.CurrentBoot != "Enabled" || !bmc.State().SecureBootCurrent {
		t.Fatalf("after power on: SecureBootState = %+v, %v; want CurrentBoot Enabled", st, err)
	}
}

// TestSecureBootApplyFails: a firmware that cannot apply the change keeps
// it pending and says why.
func TestSecureBootApplyFails(t *testing.T) {
	ctx := context.Background()
	changes := &sbChanges{fail: errors.New("vars file is read-only")}
	bmc, h, ep, _ := newBMC(t, bmcsim.Config{OnSecureBoot: changes.hook})
	c := mustDial(t, ep)
	defer c.Close()
	if _, err := c.EnrollDB(ctx, newCert(t, "bootpilot db", "Example")); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(ctx, "On"); err != nil {
		t.Fatal(err)
	}
	s := bmc.State()
	if len(s.SecureBootApplied) != 0 || !strings.Contains(s.SecureBootError, "read-only") || len(h.snapshot().power) != 1 {
		t.Fatalf("BMC state %+v, power hooks %v; want the change pending with the error, and the power-on done", s, h.snapshot().power)
	}
}

// TestEnrollDBUnsupported: a BMC without SecureBootDatabases (SecureBoot
// v1.0) gives ErrUnsupported naming what is missing; reading the state
// still works.
func TestEnrollDBUnsupported(t *testing.T) {
	ctx := context.Background()
	bmc, _, ep, _ := newBMC(t, bmcsim.Config{Quirks: bmcsim.Quirks{NoSecureBootDatabases: true}, SecureBoot: true})
	c := mustDial(t, ep)
	defer c.Close()
	_, err := c.EnrollDB(ctx, newCert(t, "bootpilot db", "Example"))
	var e *redfish.Error
	if !errors.Is(err, redfish.ErrUnsupported) || !errors.As(err, &e) || !strings.Contains(err.Error(), "SecureBootDatabases") ||
		!strings.Contains(err.Error(), ep.URL) {
		t.Fatalf("EnrollDB on a BMC without SecureBootDatabases = %v, want *Error wrapping ErrUnsupported naming SecureBootDatabases and the BMC", err)
	}
	st, err := c.SecureBootState(ctx)
	if err != nil || !st.Enabled || st.Databases || st.DB != nil {
		t.Fatalf("SecureBootState = %+v, %v; want enabled, no databases, nil db", st, err)
	}
	if n := bmc.State().Requests; n == 0 {
		t.Fatal("no requests")
	}
	if _, err := c.EnrollDB(ctx, nil); !errors.Is(err, redfish.ErrInvalid) {
		t.Errorf("EnrollDB(nil) = %v, want ErrInvalid", err)
	}
}

// TestEnrollDBErrors: a BMC that refuses the certificate, or keeps failing,
// gives an *Error with its status and message, and nothing is enrolled.
func TestEnrollDBErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		status  int
		message string
	}{
		{"refused", http.StatusBadRequest, "Base.1.8.PropertyValueFormatError"},
		{"broken", http.StatusInternalServerError, "Base.1.8.InternalError"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bmc := bmcsim.New(bmcsim.Config{Username: user, Password: pass})
			srv := newTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/db/Certificates") {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(c.status)
					fmt.Fprintf(w, `{"error":{"code":%q,"message":"no","@Message.ExtendedInfo":[{"MessageId":%q,"Message":"the BMC says no"}]}}`, c.message, c.message)
					return
				}
				bmc.ServeHTTP(w, r)
			}))
			ep := redfish.Endpoint{URL: srv.URL, Username: user, Password: pass, CAPEM: caPEM(srv), Retries: 1,
				RetryBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Logger: quiet}
			cl := mustDial(t, ep)
			defer cl.Close()
			added, err := cl.EnrollDB(ctx, newCert(t, "bootpilot db", "Example"))
			var e *redfish.Error
			if added || !errors.As(err, &e) || e.Status != c.status || !strings.Contains(e.Message, c.message) ||
				!strings.Contains(err.Error(), "enroll db certificate") {
				t.Fatalf("EnrollDB = %v, %v; want *Error %d with %s naming the step", added, err, c.status, c.message)
			}
			if n := len(bmc.State().SecureBootDB); n != 0 {
				t.Errorf("db has %d certificates, want 0", n)
			}
		})
	}
}

func newTLS(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	return srv
}
