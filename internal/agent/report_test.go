package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/agent"
	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
)

func TestReporterRetries(t *testing.T) {
	ca := agenttest.NewCA(t, "report test CA")
	rec := agenttest.NewRecorder()
	rec.Fail = 3 // three 503s first
	srv := tlsServer(t, ca, rec)
	r := &agent.Reporter{URL: srv.URL + "/boot/v1/callback/node01/TOKEN", Client: agent.NewHTTPClient(ca.Fingerprint),
		Attempts: 5, Backoff: time.Millisecond}
	if err := r.Result(context.Background(), "cleaned", "all zero"); err != nil {
		t.Fatalf("Result: %v", err)
	}
	calls := rec.Calls()
	if len(calls) != 1 || calls[0].Event != "cleaned" || calls[0].Detail != "all zero" || calls[0].Path != "/boot/v1/callback/node01/TOKEN" {
		t.Errorf("calls = %+v", calls)
	}
}

func TestReporterGivesUp(t *testing.T) {
	ca := agenttest.NewCA(t, "report test CA")
	rec := agenttest.NewRecorder()
	rec.Fail = 10
	srv := tlsServer(t, ca, rec)
	r := &agent.Reporter{URL: srv.URL + "/cb", Client: agent.NewHTTPClient(ca.Fingerprint), Attempts: 3, Backoff: time.Millisecond}
	if err := r.Result(context.Background(), "failed", "x"); err == nil {
		t.Fatal("Result succeeded against a server answering 503")
	}
	if rec.Fail != 7 {
		t.Errorf("server saw %d attempts, want 3", 10-rec.Fail)
	}
}

func TestReporterPermanent(t *testing.T) {
	ca := agenttest.NewCA(t, "report test CA")
	n := 0
	srv := tlsServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		http.Error(w, "bad token", http.StatusForbidden)
	}))
	r := &agent.Reporter{URL: srv.URL + "/cb", Client: agent.NewHTTPClient(ca.Fingerprint), Attempts: 5, Backoff: time.Millisecond}
	if err := r.Result(context.Background(), "installed", ""); err == nil {
		t.Fatal("Result succeeded against 403")
	}
	if n != 1 {
		t.Errorf("403 was retried: %d requests, want 1", n)
	}
}

func TestReporterNetworkErrorRetried(t *testing.T) {
	ca := agenttest.NewCA(t, "report test CA")
	rec := agenttest.NewRecorder()
	srv := httptest.NewUnstartedServer(rec)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(t, "127.0.0.1")}}
	addr := srv.Listener.Addr().String()
	srv.Listener.Close() // nothing listens yet: connection refused
	r := &agent.Reporter{URL: "https://" + addr + "/cb", Client: agent.NewHTTPClient(ca.Fingerprint), Attempts: 6, Backoff: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- r.Result(context.Background(), "cleaned", "") }()
	time.Sleep(300 * time.Millisecond) // at least one refused attempt
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", addr, err)
	}
	srv.Listener = l
	srv.StartTLS()
	defer srv.Close()
	if err := <-done; err != nil {
		t.Fatalf("Result after the server came up: %v", err)
	}
	if c, ok := rec.Result(); !ok || c.Event != "cleaned" {
		t.Errorf("server got %+v", rec.Calls())
	}
}

func TestPinnedTLS(t *testing.T) {
	ca := agenttest.NewCA(t, "pinned CA")
	other := agenttest.NewCA(t, "other CA")
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	get := func(fp []byte, url string) error {
		resp, err := agent.NewHTTPClient(fp).Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	good := tlsServer(t, ca, ok)
	if err := get(ca.Fingerprint, good.URL); err != nil {
		t.Errorf("pinned CA, full chain: %v", err)
	}
	if err := get(other.Fingerprint, good.URL); !errors.Is(err, agent.ErrUntrusted) {
		t.Errorf("client pinning another CA: %v, want ErrUntrusted", err)
	}
	bad := tlsServer(t, other, ok)
	if err := get(ca.Fingerprint, bad.URL); !errors.Is(err, agent.ErrUntrusted) {
		t.Errorf("server of another CA: %v, want ErrUntrusted", err)
	}

	// A chain that merely includes the pinned CA but whose leaf another CA
	// signed must be refused.
	mixed := other.ServerCert(t, "127.0.0.1")
	mixed.Certificate = [][]byte{mixed.Certificate[0], ca.Cert.Raw}
	srv := httptest.NewUnstartedServer(ok)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{mixed}}
	srv.StartTLS()
	defer srv.Close()
	if err := get(ca.Fingerprint, srv.URL); !errors.Is(err, agent.ErrUntrusted) {
		t.Errorf("pinned CA appended to another CA's leaf: %v, want ErrUntrusted", err)
	}

	// Leaf only (no CA in the chain): refused, as iPXE does.
	leafOnly := ca.ServerCert(t, "127.0.0.1")
	leafOnly.Certificate = leafOnly.Certificate[:1]
	srv2 := httptest.NewUnstartedServer(ok)
	srv2.TLS = &tls.Config{Certificates: []tls.Certificate{leafOnly}}
	srv2.StartTLS()
	defer srv2.Close()
	if err := get(ca.Fingerprint, srv2.URL); !errors.Is(err, agent.ErrUntrusted) {
		t.Errorf("leaf-only chain: %v, want ErrUntrusted", err)
	}

	// Right CA, wrong name: the certificate is for 10.0.2.100 only.
	wrongIP := ca.ServerCert(t, "10.0.2.100")
	srv3 := httptest.NewUnstartedServer(ok)
	srv3.TLS = &tls.Config{Certificates: []tls.Certificate{wrongIP}}
	srv3.StartTLS()
	defer srv3.Close()
	if err := get(ca.Fingerprint, srv3.URL); !errors.Is(err, agent.ErrUntrusted) {
		t.Errorf("certificate for another address: %v, want ErrUntrusted", err)
	}
}
