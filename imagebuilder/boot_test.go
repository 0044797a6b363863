package imagebuilder_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/qemutest"
)

// bootHost is the host as QEMU presents it.
func bootHost() host.Host {
	return host.Host{Name: "node01", MACs: []string{"52:54:00:aa:bb:01", qemutest.DefaultMAC},
		IPv4: qemutest.GuestIP, Gateway: qemutest.GuestGW, DNS: []string{qemutest.GuestDNS},
		IPv6: "fd00::15/64", Gateway6: "fd00::2"}
}

// serverTLS returns an RSA-2048 leaf for 10.0.2.100 issued by the test CA,
// served with the full chain including the CA (iPXE needs the root).
func serverTLS(t *testing.T) *tls.Config {
	p := mustPKI(t)
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: qemutest.ServerAddr},
		IPAddresses: []net.IP{net.ParseIP(qemutest.ServerAddr)},
		NotBefore:   time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, p.CA.Raw}, PrivateKey: key}}}
}

func buildBootISO(t *testing.T, dir string, mode imagebuilder.Mode) string {
	c := signedConfig(t)
	c.Mode = mode
	if mode == imagebuilder.ModeESPScript {
		c.ScriptSigner = mustPKI(t).Code
	}
	b, err := imagebuilder.NewBuilder(c)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := b.Build(&buf, bootHost(), testToken); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "node01.iso", buf.Bytes())
}

// request is what the fake boot server saw.
type request struct {
	user, pass string
	ok         bool
	query      url.Values
}

func TestBootQEMU(t *testing.T) {
	for _, mode := range []imagebuilder.Mode{imagebuilder.ModeBinary, imagebuilder.ModeESPScript} {
		t.Run(string(mode), func(t *testing.T) {
			qemutest.Require(t, false)
			dir := t.TempDir()
			iso := buildBootISO(t, dir, mode)
			var mu sync.Mutex
			var reqs []request
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				u, p, ok := r.BasicAuth()
				mu.Lock()
				reqs = append(reqs, request{u, p, ok, r.URL.Query()})
				mu.Unlock()
				if r.URL.Path != "/boot/v1/script" {
					http.NotFound(w, r)
					return
				}
				if !ok || u != "node01" || p != testToken {
					w.Header().Set("WWW-Authenticate", `Basic realm="bootpilot"`)
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
				w.Write([]byte("#!ipxe\necho BOOTPILOT-STAGE1-OK\npoweroff\n"))
			}))
			srv.TLS = serverTLS(t)
			srv.StartTLS()
			defer srv.Close()
			port := srv.Listener.Addr().(*net.TCPAddr).Port

			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			m := &qemutest.Machine{Dir: dir, ISO: iso, ForwardTo: port, Serial: "SN-0042"}
			if err := m.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer m.Kill()
			if _, err := m.WaitFor(ctx, regexp.MustCompile(`BOOTPILOT-STAGE1-OK`)); err != nil {
				t.Fatalf("%v\nserial log:\n%s", err, m.Log())
			}
			if err := m.Wait(); err != nil {
				t.Errorf("qemu exit after poweroff: %v", err)
			}
			log := m.Log()
			if !strings.Contains(log, "bootpilot: net0 52:54:00:12:34:56 10.0.2.15") {
				t.Errorf("serial log does not show the static IP on net0:\n%s", log)
			}
			if strings.Contains(log, "no static IPv6") {
				t.Errorf("iPXE refused the static IPv6 settings:\n%s", log)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(reqs) < 2 || reqs[0].ok {
				t.Fatalf("want a first request without credentials, then one with; got %+v", reqs)
			}
			last := reqs[len(reqs)-1]
			if !last.ok || last.user != "node01" || last.pass != testToken {
				t.Errorf("credentials %q/%q, want node01/%s", last.user, last.pass, testToken)
			}
			want := map[string]string{"mac": "52-54-00-12-34-56", "uuid": qemutest.DefaultUUID, "serial": "SN-0042", "arch": "x86_64", "platform": "efi"}
			for k, v := range want {
				if got := last.query.Get(k); got != v {
					t.Errorf("query %s=%q, want %q", k, got, v)
				}
			}
			if strings.Contains(log, testToken) {
				t.Error("the boot token appears on the console")
			}
		})
	}
}

func TestBootQEMUServerDown(t *testing.T) {
	qemutest.Require(t, false)
	dir := t.TempDir()
	iso := buildBootISO(t, dir, imagebuilder.ModeBinary)
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m := &qemutest.Machine{Dir: dir, ISO: iso, ForwardTo: port}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	if _, err := m.WaitFor(ctx, regexp.MustCompile(`bootpilot: giving up, exit 1`)); err != nil {
		t.Fatalf("%v\nserial log:\n%s", err, m.Log())
	}
	// exit 1 hands control back to the firmware, which goes on to the
	// next boot option (plain exit would stop in its menu).
	if _, err := m.WaitFor(ctx, regexp.MustCompile(`(?s)giving up, exit 1.*BdsDxe: failed to start Boot0001`)); err != nil {
		t.Fatalf("%v\nserial log:\n%s", err, m.Log())
	}
	log := m.Log()
	if n := strings.Count(log, "bootpilot: fetch "); n != 3 {
		t.Errorf("saw %d retries, want 3 (4 tries):\n%s", n, log)
	}
	t.Logf("serial log:\n%s", log)
}

// TestBootQEMUSecureBoot boots with Secure Boot on and our db certificate
// enrolled: the signed ISO runs iPXE; the unsigned one is refused, and so is
// the signed one when our certificate is not enrolled.
func TestBootQEMUSecureBoot(t *testing.T) {
	qemutest.Require(t, true)
	p := mustPKI(t)
	stock, err := os.ReadFile(qemutest.OVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	enrolled, err := qemutest.EnrollDB(stock, p.DB.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		signed bool
		vars   []byte
		boots  bool
	}{
		{"signed", true, enrolled, true},
		{"unsigned", false, enrolled, false},
		{"signed-not-enrolled", true, stock, false},
	}
	for _, tc := range cases {
		signed, vars, ok := tc.signed, tc.vars, tc.boots
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := signedConfig(t)
			if !signed {
				c.Signer, c.Unsigned = nil, true
			}
			img, _ := mustBuild(t, c, testToken)
			iso := writeFile(t, dir, "node01.iso", img)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			m := &qemutest.Machine{Dir: dir, ISO: iso, SecureBoot: true, Vars: vars}
			if err := m.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer m.Kill()
			want := regexp.MustCompile(`bootpilot stage 0: node01`)
			if !ok {
				want = regexp.MustCompile(`failed to (load|start) Boot0001 "UEFI QEMU DVD-ROM[^\n]*Access Denied`)
			}
			if _, err := m.WaitFor(ctx, want); err != nil {
				t.Fatalf("%v\nserial log:\n%s", err, m.Log())
			}
			if !ok && strings.Contains(m.Log(), "iPXE") {
				t.Errorf("unsigned iPXE ran under Secure Boot:\n%s", m.Log())
			}
		})
	}
}

// TestBootQEMUESPScriptTampered changes host.ipxe on the ESP after signing:
// imgverify must refuse it and iPXE must exit 1 without calling the server.
func TestBootQEMUESPScriptTampered(t *testing.T) {
	qemutest.Require(t, false)
	dir := t.TempDir()
	iso := buildBootISO(t, dir, imagebuilder.ModeESPScript)
	img, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	// The ESP is stored uncompressed: edit the script in place, same length.
	old := []byte("set ${nic}/gateway 10.0.2.2 ")
	if bytes.Count(img, old) != 1 {
		t.Fatalf("script line found %d times in the ISO", bytes.Count(img, old))
	}
	img = bytes.Replace(img, old, []byte("set ${nic}/gateway 10.0.2.3 "), 1)
	iso = writeFile(t, dir, "tampered.iso", img)
	var hits sync.Mutex
	called := false
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Lock()
		called = true
		hits.Unlock()
		http.NotFound(w, r)
	}))
	srv.TLS = serverTLS(t)
	srv.StartTLS()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m := &qemutest.Machine{Dir: dir, ISO: iso, ForwardTo: srv.Listener.Addr().(*net.TCPAddr).Port}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	if _, err := m.WaitFor(ctx, regexp.MustCompile(`(?s)not signed by the pinned CA, exit 1.*BdsDxe: failed to start Boot0001`)); err != nil {
		t.Fatalf("%v\nserial log:\n%s", err, m.Log())
	}
	hits.Lock()
	defer hits.Unlock()
	if !strings.Contains(m.Log(), "ipxe.org/0227e18f") {
		t.Errorf("no imgverify failure (0227e18f) on the console:\n%s", m.Log())
	}
	if called || strings.Contains(m.Log(), "bootpilot: net0") {
		t.Errorf("the tampered script ran:\n%s", m.Log())
	}
}
