package replica_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/bootpilot/bootpilot/internal/testenv"
)

// replica is one `bootpilot serve` subprocess.
type replica struct {
	addr   string // 127.0.0.1:PORT
	url    string // https://127.0.0.1:PORT
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *logBuffer
}

// cluster is n replicas sharing one data dir (CA, server certificate,
// secret key, db key, admin token) and one database, reached through a
// proxy the test controls.
type cluster struct {
	t        *testing.T
	dir      string
	replicas []*replica
	proxy    *dbProxy
	pool     *x509.CertPool
	admin    string       // the admin API token
	api      *http.Client // keep-alive client for the admin API
}

// startCluster starts n replicas on dsn (a go-sql-driver DSN or a
// postgres:// URL), each connecting to the database through a new proxy.
// The first replica makes the data dir; the others start once it is ready.
func startCluster(t *testing.T, n int, dsn string) *cluster {
	t.Helper()
	if buildError != nil {
		t.Fatal(buildError)
	}
	c := &cluster{t: t, dir: filepath.Join(t.TempDir(), "data")}
	c.proxy = startProxy(t, dbAddr(t, dsn))
	proxied := viaProxy(t, dsn, c.proxy.addr())
	for i := 0; i < n; i++ {
		c.replicas = append(c.replicas, c.start(proxied))
	}
	ca, err := os.ReadFile(filepath.Join(c.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	if !c.pool.AppendCertsFromPEM(ca) {
		t.Fatal("ca.pem: no certificate")
	}
	tok, err := os.ReadFile(filepath.Join(c.dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	c.admin = strings.TrimSpace(string(tok))
	c.api = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: c.pool}, MaxIdleConnsPerHost: 16}}
	return c
}

// start launches one replica and waits until it answers /healthz.
func (c *cluster) start(dsn string) *replica {
	c.t.Helper()
	for attempt := 1; ; attempt++ {
		r, err := c.launch(dsn)
		if err == nil {
			return r
		}
		// FreePort closes its listener before the server binds: another
		// process may take the port in between.
		if attempt < 3 && strings.Contains(string(r.stderr.Bytes()), "address already in use") {
			continue
		}
		c.t.Fatalf("%v\n%s", err, r.stderr.Bytes())
	}
}

func (c *cluster) launch(dsn string) (*replica, error) {
	t := c.t
	r := &replica{addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), stderr: &logBuffer{}, exited: make(chan struct{})}
	r.url = "https://" + r.addr
	// --max-attempts 10: a boot whose answer was lost (replica killed,
	// database cut after the commit) is legitimately served again as a new
	// attempt; the default 3 could fail a host that was unlucky twice.
	r.cmd = exec.Command(bootpilot, "serve", "--data-dir", c.dir, "--listen", r.addr, "--external-url", r.url,
		"--db", dsn, "--max-attempts", "10", "--log-level", "warn")
	r.cmd.Env = testenv.CleanEnv()
	r.cmd.Stdout = io.Discard // the admin token, printed once
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(15 * time.Second):
			r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("replica %s stderr (last 4 KiB):\n%s", r.addr, tail(r.stderr.Bytes(), 4<<10))
		}
	})
	deadline := time.Now().Add(60 * time.Second) // a safety net, not a timing
	for {
		select {
		case <-r.exited:
			return r, fmt.Errorf("bootpilot serve exited: %v", r.cmd.ProcessState)
		default:
		}
		if healthy(r.url, c.dir) {
			return r, nil
		}
		if time.Now().After(deadline) {
			return r, errors.New("bootpilot serve not ready after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthy reports whether the replica at u answers /healthz, trusting the
// CA in dir once it is written.
func healthy(u, dir string) bool {
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return false
	}
	if tok, err := os.ReadFile(filepath.Join(dir, "admin-token")); err != nil || len(bytes.TrimSpace(tok)) == 0 {
		return false
	}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	resp, err := cl.Get(u + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill sends SIGKILL to the replica's process and waits until it is gone.
func (r *replica) kill() error {
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL %d: %v", r.cmd.Process.Pid, err)
	}
	<-r.exited
	return nil
}

// call is do that fails the test on an error; only for the test's own
// goroutine.
func (c *cluster) call(want int, method, path string, body, out any) {
	c.t.Helper()
	if err := c.do(want, method, path, body, out); err != nil {
		c.t.Fatal(err)
	}
}

// do sends an admin API request to replica 0 (never killed); body is
// JSON-encoded unless nil. It returns an error unless the status is want;
// out, if not nil, receives the JSON answer. Safe for concurrent use.
func (c *cluster) do(want int, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.replicas[0].url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.admin)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.api.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %v", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %.300s, want %d", method, path, resp.StatusCode, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %v in %.300s", method, path, err, b)
		}
	}
	return nil
}

// dbAddr is the host:port of the database named by dsn.
func dbAddr(t *testing.T, dsn string) string {
	t.Helper()
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Host
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("database DSN: %v", err)
	}
	return cfg.Addr
}

// viaProxy is dsn with its address replaced by addr.
func viaProxy(t *testing.T, dsn, addr string) string {
	t.Helper()
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Host = addr
		return u.String()
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("database DSN: %v", err)
	}
	cfg.Addr = addr
	return cfg.FormatDSN()
}

// dbProxy forwards TCP connections from a loopback port to the database.
// cut stands in for a database restart: it closes every forwarded
// connection and refuses new ones (the port is closed) for a while.
type dbProxy struct {
	t        *testing.T
	upstream string
	port     string // 127.0.0.1:PORT, the same across cuts

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, upstream string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{t: t, upstream: upstream, port: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.mu.Lock()
		p.done = true
		p.ln.Close()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *dbProxy) addr() string { return p.port }

// serve accepts on ln until it is closed.
func (p *dbProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.forward(c) }()
		}
	}()
}

// forward copies bytes both ways between c and a new upstream connection.
func (p *dbProxy) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	defer p.untrack(c, up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
}

func (p *dbProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *dbProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// cut closes the listener and every forwarded connection, keeps the port
// closed (connections are refused) for d, then listens on it again. It
// returns how many connections it cut.
func (p *dbProxy) cut(d time.Duration) int {
	p.t.Helper()
	p.mu.Lock()
	p.ln.Close()
	n := len(p.conns)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	time.Sleep(d)
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.port); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Errorf("database proxy: listen again on %s: %v", p.port, err)
		return n / 2
	}
	p.serve(ln)
	return n / 2 // two conns (client side, database side) per connection
}

// logBuffer collects a replica's stderr; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of everything written so far.
func (b *logBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
