// Package agenttest is test support for the agent: a test CA whose server
// chain includes the CA (as the bootpilot server presents it), a callback
// recorder, and builders for the agent binary and ramdisk that work without
// the Makefile (go build with CGO_ENABLED=0 into a temporary directory).
package agenttest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/initramfs"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// CA is a throw-away RSA-2048 certificate authority.
type CA struct {
	Cert        *x509.Certificate
	Key         *rsa.PrivateKey
	Fingerprint []byte // SHA-256 of Cert.Raw: what bootpilot.ca carries
}

var serial int64

// NewCA makes a CA valid from an hour ago for a day.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return &CA{Cert: cert, Key: key, Fingerprint: sum[:]}
}

// ServerCert issues an RSA-2048 server certificate for the IP addresses
// and returns it with the full chain: leaf, then the CA.
func (ca *CA) ServerCert(tb testing.TB, ips ...string) tls.Certificate {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "bootpilot test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}
}

// Callback is one request received by a Recorder.
type Callback struct {
	Path   string
	Event  string `json:"event"`
	Detail string `json:"detail"`
}

// Recorder is an http.Handler that records JSON callbacks (POST) and serves
// Files (GET, by path). Fail makes the next Fail callbacks answer 503.
type Recorder struct {
	mu    sync.Mutex
	calls []Callback
	Files map[string][]byte
	Fail  int
	// Done is closed on the first installed, cleaned or failed event.
	Done chan struct{}
	once sync.Once
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{Files: map[string][]byte{}, Done: make(chan struct{})}
}

// ServeHTTP implements http.Handler.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodGet {
		r.mu.Lock()
		b, ok := r.Files[req.URL.Path]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(b))
		return
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Fail > 0 {
		r.Fail--
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	c := Callback{Path: req.URL.Path}
	if err := json.Unmarshal(body, &c); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.calls = append(r.calls, c)
	if c.Event == "installed" || c.Event == "cleaned" || c.Event == "failed" {
		r.once.Do(func() { close(r.Done) })
	}
	w.WriteHeader(http.StatusNoContent)
}

// Calls returns the callbacks received so far.
func (r *Recorder) Calls() []Callback {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Callback(nil), r.calls...)
}

// Result returns the first installed, cleaned or failed callback.
func (r *Recorder) Result() (Callback, bool) {
	for _, c := range r.Calls() {
		if c.Event != "progress" {
			return c, true
		}
	}
	return Callback{}, false
}

// BuildAgent builds cmd/bootpilot-agent statically (CGO_ENABLED=0) into a
// temporary directory and returns the binary's path.
func BuildAgent(tb testing.TB) string {
	tb.Helper()
	goBin := testenv.Tool(tb, "go")
	out := filepath.Join(tb.TempDir(), "bootpilot-agent")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/bootpilot-agent")
	root, err := testenv.ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build agent: %v\n%s", err, b)
	}
	return out
}

// Kernel returns the installed Debian kernel (linux-image-amd64) and its
// module directory, or calls testenv.Missing.
func Kernel(tb testing.TB) (vmlinuz, modules string) {
	tb.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	for _, k := range ks {
		ver := filepath.Base(k)[len("vmlinuz-"):]
		m := filepath.Join("/lib/modules", ver)
		if _, err := os.Stat(filepath.Join(m, "modules.dep")); err == nil {
			return k, m
		}
	}
	testenv.Missing(tb, "no /boot/vmlinuz-* with /lib/modules/<ver>/modules.dep (apt-get install linux-image-amd64)")
	return "", ""
}

// BuildRamdisk builds the agent and an agent ramdisk for the installed
// kernel; it returns the kernel and ramdisk paths.
func BuildRamdisk(tb testing.TB) (vmlinuz, initrd string) {
	tb.Helper()
	vmlinuz, modules := Kernel(tb)
	agent, err := os.ReadFile(BuildAgent(tb))
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := initramfs.Build(&buf, initramfs.Options{Agent: agent, ModulesDir: modules}); err != nil {
		tb.Fatal(err)
	}
	initrd = filepath.Join(tb.TempDir(), "agent.cpio.gz")
	if err := os.WriteFile(initrd, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return vmlinuz, initrd
}
