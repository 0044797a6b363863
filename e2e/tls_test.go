package e2e_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// handshakeCount is the server's bootpilot_tls_handshakes_total.
type handshakeCount struct{ full, resumed int }

var reHandshakes = regexp.MustCompile(`(?m)^bootpilot_tls_handshakes_total\{resumed="(true|false)"\} (\d+)$`)

// tlsHandshakes reads the server's handshake counter from /metrics. The
// scrape's own connection is one full handshake, counted in the answer.
func (s *server) tlsHandshakes() handshakeCount {
	s.t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.dataDir, "ca.pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", s.port))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h handshakeCount
	m := reHandshakes.FindAllStringSubmatch(string(b), -1)
	if len(m) != 2 {
		s.t.Fatalf("/metrics has %d bootpilot_tls_handshakes_total series, want 2", len(m))
	}
	for _, x := range m {
		n, _ := strconv.Atoi(x[2])
		if x[1] == "true" {
			h.resumed = n
		} else {
			h.full = n
		}
	}
	return h
}

var reHandshakeLog = regexp.MustCompile(`msg="tls handshake" version="(TLS 1\.[23])" resumed=(true|false)`)

// logHandshakes logs the TLS handshakes the server made since before (the
// scrapes' own excluded) and, from its debug log (--log-level debug), those
// with TLS 1.2: iPXE's, as every Go client here (agent, CLI) speaks 1.3.
func (s *server) logHandshakes(t *testing.T, what string, before handshakeCount) map[string]int {
	t.Helper()
	now := s.tlsHandshakes()
	t.Logf("TLS handshakes during %s: %d full (RSA signature), %d resumed", what, now.full-before.full-1, now.resumed-before.resumed)
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, m := range reHandshakeLog.FindAllStringSubmatch(string(b), -1) {
		count[m[1]+" resumed="+m[2]]++
	}
	t.Logf("TLS handshakes in the server log so far (TLS 1.2 = iPXE): %v", count)
	return count
}

// TestIPXEResumesTLS: iPXE keeps one pooled connection for a boot's
// requests (script, kernel, initrd), so a deploy boot makes one TLS
// handshake. Here two replicas share the data dir (one secret key, one
// database) behind a proxy that sends connections to them in turn and cuts
// every TLS 1.2 connection after its first answered request, as a load
// balancer or an idle timeout may. iPXE opens a new connection for each
// next request, and each must resume the session with the ticket the other
// replica issued: one full RSA handshake per boot, the rest resumed.
func TestIPXEResumesTLS(t *testing.T) {
	a := require(t, false)
	scenario(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	s := startServer(t, data, portA, "--iso-unsigned", "--agent-after", "reboot", "--log-level", "debug")
	b := startServer(t, data, portB, "--iso-unsigned", "--agent-after", "reboot", "--log-level", "debug")
	s.agentProfiles(a.kernel, a.initrd, "zero", "")
	s.addHost("")
	disk := newMarkerDisk(t, dir, "disk.img", diskSize, a.markerA)
	iso := s.iso(dir)
	s.cli("host", "clean", "node01", "--reason", "e2e tls resumption")
	wantState(t, s, host.StateClean)
	p := startCutProxy(t, fmt.Sprintf("127.0.0.1:%d", portA), fmt.Sprintf("127.0.0.1:%d", portB))

	hsA, hsB := s.tlsHandshakes(), b.tlsHandshakes()
	log := startVM(t, dir, "boot1-clean", iso, disk, p.port, bootOpts{}).finishAgent(t, limitAgent)
	mustContain(t, "clean", log, reStage0, `msg="agent done" after=reboot`)
	s.logHandshakes(t, "the clean boot on replica A", hsA)
	b.logHandshakes(t, "the clean boot on replica B", hsB)
	full, resumed, cuts := p.full.Load(), p.resumed.Load(), p.cuts.Load()
	t.Logf("iPXE (TLS 1.2) through the proxy: %d connections, %d full handshakes, %d resumed; %d cut after their first request",
		full+resumed, full, resumed, cuts)
	wantState(t, s, host.StateReady)
	if cuts == 0 {
		t.Fatal("the proxy cut no connection: iPXE made one request per connection")
	}
	if full != 1 || resumed < 2 {
		t.Errorf("iPXE: %d full TLS 1.2 handshakes and %d resumed across two replicas, want 1 full and the rest (≥ 2) resumed", full, resumed)
	}
}

// cutProxy forwards TCP connections to its targets in turn. It closes a
// TLS 1.2 connection when the client sends a request after the previous one
// was answered; TLS 1.3 connections (Go clients) pass untouched. It reads
// TLS record headers only (content type 20 is ChangeCipherSpec, 23
// application data) and tells a resumed TLS 1.2 handshake from a full one
// by who sends ChangeCipherSpec first: the server when resuming (in TLS 1.3
// the server's compatibility ChangeCipherSpec is followed by application
// data records, which tells the two apart).
type cutProxy struct {
	port          int
	targets       []string
	next          atomic.Int64
	cuts          atomic.Int64
	full, resumed atomic.Int64 // TLS 1.2 handshakes
}

func startCutProxy(t *testing.T, targets ...string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{port: ln.Addr().(*net.TCPAddr).Port, targets: targets}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			target := p.targets[int(p.next.Add(1)-1)%len(p.targets)]
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(c, target) }()
		}
	}()
	return p
}

func (p *cutProxy) serve(c net.Conn, target string) {
	defer c.Close()
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	var (
		mu         sync.Mutex
		clientApp  int  // application-data records from the client
		tls13      bool // the server sent application data before the client did
		answered   bool // the server sent application data since the client's last
		ccs        bool // someone sent ChangeCipherSpec
		serverCCS  bool // the server did first, and its next record decides
		serverDone = make(chan struct{})
	)
	go func() {
		defer close(serverDone)
		copyRecords(u, c, func(typ byte) bool {
			mu.Lock()
			defer mu.Unlock()
			if serverCCS {
				// TLS 1.2 resumed: an encrypted Finished (22) follows;
				// TLS 1.3 (compatibility CCS): application data.
				serverCCS = false
				if typ != 23 {
					p.resumed.Add(1)
				}
			}
			switch {
			case typ == 23 && clientApp == 0:
				tls13 = true
			case typ == 23:
				answered = true
			case typ == 20 && !ccs:
				ccs, serverCCS = true, true
			}
			return true
		})
		c.Close()
	}()
	copyRecords(c, u, func(typ byte) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case typ == 20 && !ccs:
			ccs = true
			p.full.Add(1)
		case typ == 23 && !tls13:
			clientApp++
			if clientApp > 1 && answered {
				p.cuts.Add(1)
				return false
			}
			answered = false
		}
		return true
	})
	u.Close()
	c.Close()
	<-serverDone
}

// copyRecords copies TLS records from src to dst while ok(content type)
// says so.
func copyRecords(src, dst net.Conn, ok func(typ byte) bool) {
	hdr := make([]byte, 5)
	buf := make([]byte, 5+1<<15)
	for {
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n > len(buf)-5 {
			return
		}
		copy(buf, hdr)
		if _, err := io.ReadFull(src, buf[5:5+n]); err != nil {
			return
		}
		if !ok(hdr[0]) {
			return
		}
		if _, err := dst.Write(buf[:5+n]); err != nil {
			return
		}
	}
}
