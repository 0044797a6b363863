package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/bootpilot/bootpilot/internal/client"
	"github.com/bootpilot/bootpilot/internal/client/clienttest"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/token"
)

func node(name, mac, ip string) host.Host {
	return host.Host{Name: name, MACs: []string{mac}, IPv4: ip + "/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
}

// MustClient returns a client for the fake, trusting its CA.
func MustClient(tb testing.TB, s *clienttest.Server) *client.Client {
	tb.Helper()
	c, err := client.New(s.URL, s.Token, s.CAPEM)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return c
}

func TestNewRefusesNonHTTPS(t *testing.T) {
	for _, server := range []string{
		"http://127.0.0.1:8443", "localhost:8443", "ftp://x", "https://", "",
		"https://user:pw@127.0.0.1:8443", "https://127.0.0.1:8443/?a=b",
	} {
		if _, err := client.New(server, "t", nil); err == nil {
			t.Errorf("New(%q) = nil error, want refusal", server)
		}
	}
	if _, err := client.New("https://127.0.0.1:8443", "t", []byte("not a pem")); err == nil {
		t.Errorf("New with a CA that is not PEM = nil error, want refusal")
	}
	if _, err := client.New("https://127.0.0.1:8443", "t\nX-Evil: 1", nil); err == nil {
		t.Errorf("New with a token holding a line break = nil error, want refusal")
	}
}

// TestCAPinning checks that the client trusts exactly the CA it was given: a
// server whose certificate comes from another CA is refused, and so is the
// fake's own private CA when the client uses the system roots.
func TestCAPinning(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	if _, err := MustClient(t, s).ListHosts(ctx, client.HostFilter{}); err != nil {
		t.Fatalf("ListHosts with the right CA: %v", err)
	}

	otherCA, _ := clienttest.MustCA(t)
	c, err := client.New(s.URL, s.Token, otherCA)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListHosts(ctx, client.HostFilter{})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("ListHosts against a server with another CA: err = %v, want x509.UnknownAuthorityError", err)
	}

	sys, err := client.New(s.URL, s.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.ListHosts(ctx, client.HostFilter{}); err == nil {
		t.Errorf("ListHosts with system roots against a private CA = nil error, want TLS failure")
	}
	for _, r := range s.Requests() {
		if r.Path != "/api/v1/hosts" {
			t.Errorf("unexpected request %s %s", r.Method, r.Path)
		}
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("server saw %d requests, want 1 (refused handshakes send nothing)", n)
	}
}

// TestBearerToken checks the header the server sees and that a bad token
// maps to host.ErrUnauthorized without the token in the message.
func TestBearerToken(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	if _, err := MustClient(t, s).ListProfiles(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := s.LastRequest().Auth, "Bearer "+s.Token; got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}
	secret := "wrong-" + strings.Repeat("9", 30)
	bad, _ := client.New(s.URL, secret, s.CAPEM)
	_, err := bad.GetHost(ctx, "node01")
	if !errors.Is(err, host.ErrUnauthorized) {
		t.Errorf("GetHost with a bad token: err = %v, want ErrUnauthorized", err)
	}
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
		t.Errorf("GetHost with a bad token: err = %#v, want *client.Error 401", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error %q contains the token", err)
	}
}

func TestHostLifecycle(t *testing.T) {
	s := clienttest.New(t)
	c := MustClient(t, s)
	ctx := context.Background()
	if _, err := c.CreateProfile(ctx, host.Profile{Name: "rocky9", Kernel: "https://m.example/vmlinuz",
		Initrds: []string{"https://m.example/initrd.img"}, Installer: host.InstallerKickstart}); err != nil {
		t.Fatalf("CreateProfile: %v", err)
	}
	h := node("node01", "52-54-00-12-34-56", "10.0.2.15")
	h.Profile = "rocky9"
	got, err := c.CreateHost(ctx, h)
	if err != nil {
		t.Fatalf("CreateHost: %v", err)
	}
	if got.State != host.StateReady || got.MACs[0] != "52:54:00:12:34:56" {
		t.Errorf("CreateHost = %+v, want state ready and normalized MAC", got)
	}
	var sent map[string]any
	if err := json.Unmarshal(s.LastRequest().Body, &sent); err != nil {
		t.Fatal(err)
	}
	if _, ok := sent["token_hash"]; ok {
		t.Errorf("CreateHost sent token_hash: %s", s.LastRequest().Body)
	}
	for _, k := range []string{"attempt", "version", "state", "created_at"} {
		if _, ok := sent[k]; ok {
			t.Errorf("CreateHost sent the server-owned field %q: %s", k, s.LastRequest().Body)
		}
	}
	if sent["ipv4"] != "10.0.2.15/24" || sent["name"] != "node01" {
		t.Errorf("CreateHost body = %s, want host JSON", s.LastRequest().Body)
	}

	if _, err := c.CreateHost(ctx, h); !errors.Is(err, host.ErrConflict) {
		t.Errorf("CreateHost twice: err = %v, want ErrConflict", err)
	}
	bad := node("node02", "52:54:00:12:34:57", "10.0.2.16")
	bad.IPv4 = "10.0.2.16"
	_, err = c.CreateHost(ctx, bad)
	var ve *host.ValidationError
	if !errors.As(err, &ve) || ve.Field != "ipv4" || strings.HasPrefix(ve.Reason, "ipv4:") || ve.Reason == "" {
		t.Errorf("CreateHost without prefix: err = %v (%#v), want ValidationError on ipv4", err, ve)
	}
	if errors.Is(err, host.ErrNotFound) || errors.Is(err, host.ErrConflict) {
		t.Errorf("validation error %v matches a sentinel it should not", err)
	}

	if _, err := c.GetHost(ctx, "nope"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("GetHost(nope): err = %v, want ErrNotFound", err)
	}
	if err := c.DeleteHost(ctx, "nope"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("DeleteHost(nope): err = %v, want ErrNotFound", err)
	}

	r, err := c.Reimage(ctx, "node01", client.ReimageOptions{Reason: "ticket 42"})
	if err != nil || r.State != host.StateReimage {
		t.Fatalf("Reimage = %+v, %v; want state reimage", r.State, err)
	}
	if got, want := string(s.LastRequest().Body), `{"reason":"ticket 42"}`; got != want {
		t.Errorf("Reimage body = %s, want %s", got, want)
	}
	_, err = c.Action(ctx, "node01", host.EventRetry, "")
	if !errors.Is(err, host.ErrConflict) || !errors.Is(err, host.ErrInvalidTransition) {
		t.Errorf("Retry from reimage: err = %v, want ErrConflict and ErrInvalidTransition", err)
	}
	if len(s.LastRequest().Body) != 0 {
		t.Errorf("Retry without a reason sent a body: %s", s.LastRequest().Body)
	}
	if r, err := c.Action(ctx, "node01", host.EventCancel, "test"); err != nil || r.State != host.StateReady {
		t.Errorf("Cancel = %q, %v; want ready", r.State, err)
	}
	if got, want := string(s.LastRequest().Body), `{"reason":"test"}`; got != want {
		t.Errorf("Cancel body = %s, want %s", got, want)
	}
	cl, err := c.Clean(ctx, "node01", client.CleanOptions{Profile: "rocky9", ThenInstall: true})
	if err != nil || cl.State != host.StateClean || !cl.CleanThenInstall {
		t.Errorf("Clean = %+v, %v; want clean with then-install", cl, err)
	}
	if got, want := string(s.LastRequest().Body), `{"profile":"rocky9","then_install":true}`; got != want {
		t.Errorf("Clean body = %s, want %s", got, want)
	}

	evs, err := c.Events(ctx, "node01", 0)
	if err != nil {
		t.Fatal(err)
	}
	if q := s.LastRequest().Query; q != "" {
		t.Errorf("Events(0) query = %q, want none", q)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, string(e.Event)+e.Action)
	}
	if want := []string{"clean", "cancel", "reimage", "create"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("Events = %v, want %v (newest first)", kinds, want)
	}
	if evs, err := c.Events(ctx, "node01", 2); err != nil || len(evs) != 2 || evs[0].Event != host.EventClean {
		t.Errorf("Events(limit 2) = %+v, %v; want the 2 newest", evs, err)
	}
	if q := s.LastRequest().Query; q != "limit=2" {
		t.Errorf("Events(2) query = %q, want limit=2", q)
	}

	tok, err := c.RotateBootToken(ctx, "node01")
	if err != nil {
		t.Fatal(err)
	}
	if _, hash, _ := s.Host("node01"); !token.Match(hash, tok) {
		t.Errorf("RotateBootToken returned a token that does not match the stored hash")
	}

	p, err := c.PatchHost(ctx, "node01", map[string]any{"ipv4": "10.0.2.20/24", "vlan": 12})
	if err != nil || p.IPv4 != "10.0.2.20/24" || p.VLAN != 12 || p.Gateway != "10.0.2.2" {
		t.Errorf("PatchHost = %+v, %v", p, err)
	}
	if got, want := string(s.LastRequest().Body), `{"ipv4":"10.0.2.20/24","vlan":12}`; got != want {
		t.Errorf("PatchHost body = %s, want %s", got, want)
	}
	if s.LastRequest().Method != http.MethodPatch {
		t.Errorf("PatchHost method = %s", s.LastRequest().Method)
	}

	var iso bytes.Buffer
	n, err := c.DownloadISO(ctx, "node01", &iso)
	if err != nil || n != int64(len(s.ISO)) || !bytes.Equal(iso.Bytes(), s.ISO) {
		t.Errorf("DownloadISO = %d, %v; bytes %q, want %q", n, err, iso.Bytes(), s.ISO)
	}
	if _, err := c.DownloadISO(ctx, "nope", &iso); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("DownloadISO(nope): err = %v, want ErrNotFound", err)
	}

	if err := c.DeleteHost(ctx, "node01"); err != nil {
		t.Fatalf("DeleteHost: %v", err)
	}
	if _, err := c.GetHost(ctx, "node01"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("GetHost after delete: err = %v, want ErrNotFound", err)
	}
}

func TestImportHost(t *testing.T) {
	s := clienttest.New(t)
	c := MustClient(t, s)
	ctx := context.Background()
	plain, hash := token.New()
	if _, err := c.ImportHost(ctx, node("node01", "52:54:00:00:00:01", "10.0.2.15"), hash); err != nil {
		t.Fatal(err)
	}
	var sent map[string]any
	_ = json.Unmarshal(s.LastRequest().Body, &sent)
	if sent["token_hash"] != hash {
		t.Errorf("ImportHost body = %s, want token_hash %s", s.LastRequest().Body, hash)
	}
	if _, stored, _ := s.Host("node01"); !token.Match(stored, plain) {
		t.Errorf("stored hash %q does not match the imported token", stored)
	}
	_, err := c.ImportHost(ctx, node("node02", "52:54:00:00:00:02", "10.0.2.16"), "XYZ")
	var ve *host.ValidationError
	if !errors.As(err, &ve) || ve.Field != "token_hash" {
		t.Errorf("ImportHost with a bad hash: err = %v, want ValidationError on token_hash", err)
	}
}

func TestListHostsFilter(t *testing.T) {
	s := clienttest.New(t)
	c := MustClient(t, s)
	ctx := context.Background()
	for i, name := range []string{"a1", "a2", "b1", "b2"} {
		h := node(name, "52:54:00:00:00:0"+string(rune('1'+i)), "10.0.2.1"+string(rune('1'+i)))
		if _, err := c.CreateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Reimage(ctx, "a2", client.ReimageOptions{}); err != nil {
		t.Fatal(err)
	}
	names := func(hs []host.Host) (out []string) {
		for _, h := range hs {
			out = append(out, h.Name)
		}
		return out
	}
	tests := []struct {
		f     client.HostFilter
		query string
		want  []string
	}{
		{client.HostFilter{}, "", []string{"a1", "a2", "b1", "b2"}},
		{client.HostFilter{State: host.StateReimage}, "state=reimage", []string{"a2"}},
		{client.HostFilter{Limit: 2, After: "a1"}, "after=a1&limit=2", []string{"a2", "b1"}},
		{client.HostFilter{Profile: "none"}, "profile=none", nil},
	}
	for _, tt := range tests {
		got, err := c.ListHosts(ctx, tt.f)
		if err != nil {
			t.Fatalf("ListHosts(%+v): %v", tt.f, err)
		}
		if !reflect.DeepEqual(names(got), tt.want) {
			t.Errorf("ListHosts(%+v) = %v, want %v", tt.f, names(got), tt.want)
		}
		if q := s.LastRequest().Query; q != tt.query {
			t.Errorf("ListHosts(%+v) query = %q, want %q", tt.f, q, tt.query)
		}
	}
}

func TestProfiles(t *testing.T) {
	s := clienttest.New(t)
	c := MustClient(t, s)
	ctx := context.Background()
	p := host.Profile{Name: "deb12", Kernel: "https://m.example/linux", Initrds: []string{"https://m.example/initrd.gz"},
		Cmdline: "console=ttyS0", Installer: host.InstallerPreseed}
	if _, err := c.CreateProfile(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateProfile(ctx, p); !errors.Is(err, host.ErrConflict) {
		t.Errorf("CreateProfile twice: err = %v, want ErrConflict", err)
	}
	p.Name, p.Kernel = "bad", "file:///x"
	var ve *host.ValidationError
	if _, err := c.CreateProfile(ctx, p); !errors.As(err, &ve) || ve.Field != "kernel" {
		t.Errorf("CreateProfile with a file URL: err = %v, want ValidationError on kernel", err)
	}
	got, err := c.PatchProfile(ctx, "deb12", map[string]any{"cmdline": "console=ttyS1"})
	if err != nil || got.Cmdline != "console=ttyS1" || got.Installer != host.InstallerPreseed {
		t.Errorf("PatchProfile = %+v, %v", got, err)
	}
	if g, err := c.GetProfile(ctx, "deb12"); err != nil || g.Cmdline != "console=ttyS1" {
		t.Errorf("GetProfile = %+v, %v", g, err)
	}
	ps, err := c.ListProfiles(ctx)
	if err != nil || len(ps) != 1 || ps[0].Name != "deb12" {
		t.Errorf("ListProfiles = %+v, %v", ps, err)
	}
	if err := c.DeleteProfile(ctx, "deb12"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetProfile(ctx, "deb12"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("GetProfile after delete: err = %v, want ErrNotFound", err)
	}
}

func TestVersion(t *testing.T) {
	s := clienttest.New(t)
	v, err := MustClient(t, s).Version(context.Background())
	if err != nil || v.Version != "v9.9.9-fake" || v.Commit != "abc123" {
		t.Errorf("Version = %+v, %v", v, err)
	}
}

// TestErrorBodies checks answers that are not the API's JSON, and that the
// client does not follow redirects (which could carry the token elsewhere).
func TestErrorBodies(t *testing.T) {
	caPEM, cert := clienttest.MustCA(t)
	redirected := false
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/hosts/plain", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream exploded", http.StatusBadGateway)
	})
	mux.HandleFunc("/api/v1/hosts/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(http.ResponseWriter, *http.Request) { redirected = true })
	mux.HandleFunc("/api/v1/hosts/field", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"not an address","field":"gateway"}`))
	})
	ts := httptest.NewUnstartedServer(mux)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	defer ts.Close()
	c, err := client.New(ts.URL, "tok", caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	_, err = c.GetHost(ctx, "plain")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadGateway || !strings.Contains(ce.Message, "upstream exploded") {
		t.Errorf("GetHost(plain): err = %#v, want *Error 502 with the body text", err)
	}
	_, err = c.GetHost(ctx, "moved")
	if !errors.As(err, &ce) || ce.Status != http.StatusFound || redirected {
		t.Errorf("GetHost(moved): err = %v, redirected %v; want *Error 302 and no redirect", err, redirected)
	}
	_, err = c.GetHost(ctx, "field")
	var ve *host.ValidationError
	if !errors.As(err, &ve) || ve.Field != "gateway" || ve.Reason != "not an address" {
		t.Errorf("GetHost(field): err = %v (%#v), want ValidationError{gateway, not an address}", err, ve)
	}
	if got, want := err.Error(), "server: gateway: not an address (HTTP 400)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestErrorFlag: a caller that names the API's field differently (a CLI
// flag) sees its own name in the message, whether or not the server's
// message repeats the field.
func TestErrorFlag(t *testing.T) {
	for _, tc := range []struct {
		e    client.Error
		want string
	}{
		{client.Error{Status: 400, Field: "profile", Message: "profile: no such profile", Flag: "--profile"}, "server: --profile: no such profile (HTTP 400)"},
		{client.Error{Status: 400, Field: "macs", Message: "not a MAC", Flag: "--mac"}, "server: --mac: not a MAC (HTTP 400)"},
		{client.Error{Status: 400, Field: "ipv4", Message: "ipv4: bad"}, "server: ipv4: bad (HTTP 400)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
}

// TestConnectionRefused: no server listening is reported as a question
// about the server, not as an API method and path.
func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := client.New("https://"+addr, "secret-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SetBMC(context.Background(), "node01", client.BMCSettings{})
	if err == nil {
		t.Fatal("SetBMC with no server: nil error")
	}
	msg := err.Error()
	if want := "is the server running at https://" + addr + "?"; !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
	for _, bad := range []string{"PUT", "/api/v1", "secret-token"} {
		if strings.Contains(msg, bad) {
			t.Errorf("error %q contains %q", msg, bad)
		}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
}
