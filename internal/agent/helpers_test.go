package agent_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/bootpilot/bootpilot/internal/agent"
	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
)

// mustDevice creates a disk image file of size bytes filled with 0xAA and
// opens it as a Device.
func mustDevice(tb testing.TB, size int) (*agent.FileDevice, string) {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "disk.img")
	b := make([]byte, size)
	for i := range b {
		b[i] = 0xaa
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	d, err := agent.OpenDevice(p)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d, p
}

// tlsServer starts an HTTPS server on loopback whose chain (leaf + CA) is
// issued by ca.
func tlsServer(tb testing.TB, ca *agenttest.CA, h http.Handler) *httptest.Server {
	tb.Helper()
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(tb, "127.0.0.1")}}
	s.StartTLS()
	tb.Cleanup(s.Close)
	return s
}
