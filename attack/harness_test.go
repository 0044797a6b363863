package attack_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bootpilot/bootpilot/internal/testenv"
)

// server is one `bootpilot serve` subprocess and what an attacker (and the
// admin) knows about it.
type server struct {
	t      testing.TB
	dir    string // --data-dir
	url    string // https://127.0.0.1:PORT
	addr   string // 127.0.0.1:PORT
	cmd    *exec.Cmd
	admin  string // the admin token, from DIR/admin-token
	caFile string // DIR/ca.pem
	pool   *x509.CertPool
	client *http.Client
	stderr *logBuffer
}

// serverOptions are the few serve flags a test needs beyond the defaults.
// Only flags that every build knows are used, so the suite runs against
// old builds too.
type serverOptions struct {
	isoUnsigned bool // --iso-unsigned
	secretKey   bool // --secret-key-file (BMC calls)
}

// startServer starts `bootpilot serve` on a free loopback port with a fresh
// data directory and waits until it answers /healthz. It is stopped (by
// PID) when the test ends; its stderr is logged if the test failed.
func startServer(t *testing.T, o serverOptions) *server {
	t.Helper()
	if buildError != nil {
		t.Fatal(buildError)
	}
	for attempt := 1; ; attempt++ {
		s, err := launch(t, o)
		if err == nil {
			return s
		}
		// FreePort closes its listener before the server binds: another
		// process may take the port in between. Try another one.
		if attempt < 3 && strings.Contains(string(s.stderr.Bytes()), "address already in use") {
			t.Logf("port %s taken, retrying", s.addr)
			continue
		}
		t.Fatalf("%v\n%s", err, s.stderr.Bytes())
	}
}

// launch starts one server process and waits until it is ready or exits.
func launch(t *testing.T, o serverOptions) (*server, error) {
	t.Helper()
	tmp := t.TempDir()
	s := &server{t: t, dir: filepath.Join(tmp, "data"), stderr: &logBuffer{}}
	s.addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s.url = "https://" + s.addr
	args := []string{"serve", "--data-dir", s.dir, "--listen", s.addr, "--external-url", s.url}
	if o.isoUnsigned {
		args = append(args, "--iso-unsigned")
	}
	if o.secretKey {
		key := filepath.Join(tmp, "secret.key")
		if out, err := exec.Command(bootpilot, "secret-key", "init", key).CombinedOutput(); err != nil {
			t.Fatalf("secret-key init: %v\n%s", err, out)
		}
		args = append(args, "--secret-key-file", key)
	}
	s.cmd = exec.Command(bootpilot, args...)
	s.cmd.Env = testenv.CleanEnv()
	s.cmd.Stdout = io.Discard // the admin token, printed once
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server stderr (last 8 KiB):\n%s", tail(s.stderr.Bytes(), 8<<10))
		}
	})
	s.caFile = filepath.Join(s.dir, "ca.pem")
	deadline := time.Now().Add(60 * time.Second) // a safety net, not a timing
	for {
		select {
		case <-exited:
			return s, fmt.Errorf("bootpilot serve exited: %v", s.cmd.ProcessState)
		default:
		}
		if s.ready() {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, errors.New("bootpilot serve not ready after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready loads the CA and admin token once written and reports whether
// /healthz answers 200.
func (s *server) ready() bool {
	if s.client == nil {
		ca, err := os.ReadFile(s.caFile)
		if err != nil {
			return false
		}
		tok, err := os.ReadFile(filepath.Join(s.dir, "admin-token"))
		if err != nil || len(bytes.TrimSpace(tok)) == 0 {
			return false
		}
		s.pool = x509.NewCertPool()
		if !s.pool.AppendCertsFromPEM(ca) {
			return false
		}
		s.admin = strings.TrimSpace(string(tok))
		s.client = &http.Client{
			Timeout:   2 * time.Minute, // a safety net for a hung server
			Transport: &http.Transport{TLSClientConfig: s.tlsConfig()},
		}
	}
	resp, err := s.client.Get(s.url + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *server) tlsConfig() *tls.Config { return &tls.Config{RootCAs: s.pool} }

// answer is one HTTP answer, read whole.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

// field is the `field` of a JSON error answer ("" if none).
func (a answer) field() string {
	var e struct {
		Field string `json:"field"`
	}
	json.Unmarshal(a.body, &e)
	return e.Field
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s", a.code, quoteShort(a.body, 300))
}

// do sends req and reads the whole answer.
func (s *server) do(req *http.Request) answer {
	s.t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, redactURL(req.URL), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading the answer: %v", req.Method, redactURL(req.URL), err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// api calls the admin API with the admin token; body is JSON-encoded
// unless it is a string or nil.
func (s *server) api(method, path string, body any) answer {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.url+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.admin)
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.do(req)
}

// mustAPI is api that fails the test unless the status is want; out, if
// not nil, receives the JSON answer.
func (s *server) mustAPI(want int, method, path string, body, out any) answer {
	s.t.Helper()
	a := s.api(method, path, body)
	if a.code != want {
		s.t.Fatalf("%s %s: %s, want %d", method, path, a, want)
	}
	if out != nil {
		if err := json.Unmarshal(a.body, out); err != nil {
			s.t.Fatalf("%s %s: %v in %s", method, path, err, a)
		}
	}
	return a
}

// unauthenticated sends a request with no credentials at all.
func (s *server) unauthenticated(method, path string) answer {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.do(req)
}

// Benign fixtures every test builds on.
const (
	benignKernel = "https://mirror.example/rocky9/vmlinuz"
	benignInitrd = "https://mirror.example/rocky9/initrd.img"
)

// benignProfile is a kickstart profile with nothing hostile in it.
func benignProfile(name string) map[string]any {
	return map[string]any{"name": name, "installer": "kickstart", "kernel": benignKernel,
		"initrds": []string{benignInitrd}, "cmdline": "console=ttyS0"}
}

// benignHost is a host with nothing hostile in it; n picks its MAC and IP.
func benignHost(name string, n int, profile string) map[string]any {
	h := map[string]any{"name": name, "macs": []string{mac(n)}, "ipv4": fmt.Sprintf("10.0.%d.%d/16", n/250, n%250+2),
		"gateway": "10.0.0.1", "dns": []string{"10.0.0.53"}}
	if profile != "" {
		h["profile"] = profile
	}
	return h
}

// mac returns a distinct locally administered MAC for n.
func mac(n int) string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", n>>16&0xff, n>>8&0xff, n&0xff)
}

// addHost registers a benign host and returns its (rotated) boot token.
func (s *server) addHost(name string, n int, profile string) string {
	s.t.Helper()
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/hosts", benignHost(name, n, profile), nil)
	return s.rotateToken(name)
}

// rotateToken gives the host a new boot token and returns it.
func (s *server) rotateToken(name string) string {
	s.t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	s.mustAPI(http.StatusOK, "POST", "/api/v1/hosts/"+url.PathEscape(name)+"/boot-token", nil, &tok)
	if tok.Token == "" {
		s.t.Fatalf("boot-token of %s: no token in the answer", name)
	}
	return tok.Token
}

// boot asks for the host's stage-1 script the way iPXE does (HTTP Basic
// with the boot token); query is the raw query string ("mac=…&serial=…").
func (s *server) boot(name, tok, query string) answer {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.url+"/boot/v1/script?"+query, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.SetBasicAuth(name, tok)
	return s.do(req)
}

// callback posts body to a callback URL taken from a script.
func (s *server) callback(u, body string) answer {
	s.t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return s.do(req)
}

var (
	callbackRE = regexp.MustCompile(`bootpilot\.callback=(\S+)`)
	configRE   = regexp.MustCompile(`(?:inst\.ks=|url=|s=)(https://\S+/boot/v1/config/\S+)`)
)

// callbackURL is the one-time callback URL of a served install script.
func callbackURL(t testing.TB, script []byte) string {
	t.Helper()
	m := callbackRE.FindSubmatch(script)
	if m == nil {
		t.Fatalf("no bootpilot.callback= in script:\n%s", script)
	}
	return string(m[1])
}

// installing flags the host for reimage and boots it once: the host is
// then installing and the script holds its callback and config URLs.
func (s *server) installing(name, tok string, n int) []byte {
	s.t.Helper()
	s.mustAPI(http.StatusOK, "POST", "/api/v1/hosts/"+url.PathEscape(name)+"/reimage", map[string]any{"reason": "attack"}, nil)
	a := s.boot(name, tok, "mac="+mac(n))
	if a.code != http.StatusOK {
		s.t.Fatalf("boot %s after reimage: %s", name, a)
	}
	return a.body
}

// cli runs the bootpilot CLI against s (BOOTPILOT_SERVER, _TOKEN_FILE and
// _CA_CERT, as an admin would set them) in an empty directory.
func (s *server) cli(args ...string) (stdout, stderr []byte, err error) {
	s.t.Helper()
	env := append(testenv.CleanEnv(), "BOOTPILOT_SERVER="+s.url,
		"BOOTPILOT_TOKEN_FILE="+filepath.Join(s.dir, "admin-token"), "BOOTPILOT_CA_CERT="+s.caFile)
	return runCLI(s.t, env, args...)
}

// runCLI runs the binary with env in a fresh directory.
func runCLI(t testing.TB, env []string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bootpilot, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

// memory returns the server's resident set and its peak so far, in bytes,
// from /proc/PID/status.
func (s *server) memory() (rss, peak int64) {
	s.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatalf("server memory: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	if rss == 0 || peak == 0 {
		s.t.Fatalf("no VmRSS/VmHWM in /proc/%d/status", s.cmd.Process.Pid)
	}
	return rss, peak
}

// memoryBound is how much the server's peak resident set may grow during
// one attack: generous, the old server grew by hundreds of MiB.
const memoryBound = 64 << 20

// checkMemory fails the test if the server's peak RSS grew by more than
// memoryBound since peak0 (from memory()).
func (s *server) checkMemory(what string, peak0 int64) {
	s.t.Helper()
	_, peak := s.memory()
	if grew := peak - peak0; grew > memoryBound {
		s.t.Errorf("%s: server peak RSS grew by %d MiB (from %d to %d MiB), want at most %d MiB",
			what, grew>>20, peak0>>20, peak>>20, memoryBound>>20)
	} else {
		s.t.Logf("%s: server peak RSS grew by %d MiB", what, grew>>20)
	}
}

// logBuffer collects the server's stderr; safe for concurrent use.
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

// Len is how many bytes were written so far.
func (b *logBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// Since returns what was written after the first off bytes.
func (b *logBuffer) Since(off int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes()[off:])
}

// terminalControl returns a description of the first byte sequence in b
// that a terminal would act on instead of printing — C0 controls other than
// tab and newline (ESC, BEL, NUL, CR…), DEL, C1 controls (as UTF-8 or as
// raw bytes), bidi overrides and isolates — or "" if there is none.
func terminalControl(b []byte) string {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			if b[i] >= 0x80 && b[i] <= 0x9f {
				return fmt.Sprintf("raw C1 byte %#x at %d", b[i], i)
			}
		case r < 0x20 && r != '\t' && r != '\n', r == 0x7f:
			return fmt.Sprintf("control %U at %d", r, i)
		case r >= 0x80 && r <= 0x9f:
			return fmt.Sprintf("C1 control %U at %d", r, i)
		case isBidi(r):
			return fmt.Sprintf("bidi control %U at %d", r, i)
		}
		i += size
	}
	return ""
}

func isBidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// quoteShort quotes at most n bytes of b for a test message.
func quoteShort(b []byte, n int) string {
	if len(b) > n {
		return strconv.Quote(string(b[:n])) + fmt.Sprintf("…(%d bytes)", len(b))
	}
	return strconv.Quote(string(b))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// redactURL is u without credentials or query, for test messages.
func redactURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery = nil, ""
	return c.String()
}
