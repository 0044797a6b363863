package attack_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSlowBodies — finding 6: the server had no read deadlines: 300 slow
// POST callbacks (headers, then a byte, then nothing) stayed open 40 s and
// more. Now the callback route's body must arrive within the body timeout
// (30 s): meanwhile a normal boot is served, and then the server closes the
// slow connections. The 120 s deadline is only a safety net.
func TestSlowBodies(t *testing.T) {
	t.Parallel() // mostly waiting; overlaps the other long test
	s := startServer(t, serverOptions{})
	tok := s.addHost("node01", 1, "")
	const slow = 50
	conns := make([]*tls.Conn, slow)
	for i := range conns {
		c, err := tls.Dial("tcp", s.addr, s.tlsConfig())
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /boot/v1/callback/node01/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
			"Content-Length: 100\r\n\r\n{", strings.Repeat("ab", 16), s.addr)
		conns[i] = c
	}
	// All 50 requests are in; the server is still responsive.
	if a := s.boot("node01", tok, "mac="+mac(1)); a.code != http.StatusOK {
		t.Errorf("boot while %d slow bodies are open: %s, want 200", slow, a)
	}
	deadline := time.Now().Add(120 * time.Second)
	var wg sync.WaitGroup
	open := make([]bool, slow)
	for i, c := range conns {
		wg.Go(func() { open[i] = !closedByServer(c, deadline) })
	}
	wg.Wait()
	n := 0
	for _, o := range open {
		if o {
			n++
		}
	}
	if n > 0 {
		t.Errorf("%d of %d slow-body connections still open after 120 s, want all closed by the server", n, slow)
	}
	if a := s.unauthenticated("GET", "/readyz"); a.code != http.StatusOK {
		t.Errorf("GET /readyz: %s, want 200", a)
	}
}

// closedByServer reads c until the server closes it (an error answer
// first is fine) and reports whether that happened before deadline.
func closedByServer(c net.Conn, deadline time.Time) bool {
	c.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestBodyCaps — finding 6: no route capped its body. Bodies over a
// route's cap are refused with 413 before they are read.
func TestBodyCaps(t *testing.T) {
	s := startServer(t, serverOptions{})
	for _, tc := range []struct {
		path string
		size int64
	}{
		{"/api/v1/profiles", 4 << 20},
		{"/api/v1/hosts", 4 << 20},
		{"/api/v1/images/fetch", 1 << 20},
		{"/boot/v1/callback/node01/" + strings.Repeat("ab", 16), 1 << 20},
	} {
		if a := s.rawPost(tc.path, tc.size, true); a.code != http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s with %d KiB: %s, want 413", tc.path, tc.size>>10, a)
		}
	}
}
