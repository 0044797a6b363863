package bootscripts_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// callbackServer is an HTTPS server on loopback whose certificate chains to
// a CA made for this test; it records every request.
type callbackServer struct {
	URL   string // "https://127.0.0.1:PORT/boot/v1/callback/node01/tok"
	CAPEM string // the CA that signed the server certificate

	mu   sync.Mutex
	reqs []string // "POST application/json {"event":"installed"}"
}

func (s *callbackServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// newCA returns a CA certificate and key.
func newCA(tb testing.TB) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "callback test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func newCallbackServer(tb testing.TB) *callbackServer {
	tb.Helper()
	ca, caKey, caPEM := newCA(tb)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	s := &callbackServer{CAPEM: caPEM}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(b))
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}}}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	s.URL = srv.URL + "/boot/v1/callback/node01/tok"
	return s
}

// render renders config file with the callback pointing at s and the CA
// set to caPEM.
func renderConfig(t *testing.T, i host.Installer, file string, s *callbackServer, caPEM string) string {
	t.Helper()
	d := testData(t, host.ActionInstall, testHost(t, nil), testProfile(t, i, nil))
	d.CallbackURL, d.CAPEM = s.URL, caPEM
	var b bytes.Buffer
	if err := MustRenderer(t).Config(&b, file, d); err != nil {
		t.Fatalf("Config(%s) = %v", file, err)
	}
	return b.String()
}

// runShell runs script with sh and returns its error.
func runShell(t *testing.T, script string) error {
	t.Helper()
	out, err := exec.Command("sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Logf("sh: %v\n%s", err, out)
	}
	return err
}

// kickstartSection returns the body of the first section that starts with
// header ("%post").
func kickstartSection(t *testing.T, ks, header string) string {
	t.Helper()
	var body []string
	in := false
	for _, l := range strings.Split(ks, "\n") {
		switch {
		case !in && strings.HasPrefix(l, header):
			in = true
		case in && l == "%end":
			return strings.Join(body, "\n") + "\n"
		case in:
			body = append(body, l)
		}
	}
	t.Fatalf("no %s section in:\n%s", header, ks)
	return ""
}

// TestKickstartCallbacks runs the kickstart's %pre, %post and %onerror
// scripts with the real curl against an HTTPS server: the callbacks arrive,
// and they fail when the pinned CA is not the server's.
func TestKickstartCallbacks(t *testing.T) {
	testenv.Tool(t, "curl")
	s := newCallbackServer(t)
	dir := t.TempDir()
	local := func(script string) string { return strings.ReplaceAll(script, "/tmp/", dir+"/") }

	ks := renderConfig(t, host.InstallerKickstart, "ks.cfg", s, s.CAPEM)
	if err := runShell(t, local(kickstartSection(t, ks, "%pre"))); err != nil {
		t.Fatalf("%%pre: %v", err)
	}
	if err := runShell(t, local(kickstartSection(t, ks, "%post"))); err != nil {
		t.Fatalf("%%post: %v", err)
	}
	if err := runShell(t, local(kickstartSection(t, ks, "%onerror"))); err != nil {
		t.Fatalf("%%onerror: %v", err)
	}
	want := []string{
		`POST /boot/v1/callback/node01/tok application/json {"event":"progress","detail":"installer started"}`,
		`POST /boot/v1/callback/node01/tok application/json {"event":"installed"}`,
		`POST /boot/v1/callback/node01/tok application/json {"event":"failed"}`,
	}
	if got := s.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("server got %q, want %q", got, want)
	}

	// Pinned to another CA, curl must refuse the server: %pre goes on
	// without its report, %post fails.
	_, _, other := newCA(t)
	ks = renderConfig(t, host.InstallerKickstart, "ks.cfg", s, other)
	if err := runShell(t, local(kickstartSection(t, ks, "%pre"))); err != nil {
		t.Fatalf("%%pre: %v", err)
	}
	if err := runShell(t, local(kickstartSection(t, ks, "%post"))); err == nil {
		t.Errorf("%%post succeeded with the wrong CA pinned")
	}
	if n := len(s.requests()); n != 3 {
		t.Errorf("server got %d requests, want still 3", n)
	}
}

// lateCommand returns preseed/late_command's value with its line
// continuations joined.
func lateCommand(t *testing.T, cfg string) string {
	t.Helper()
	return preseedCommand(t, cfg, "late_command")
}

// preseedCommand returns preseed/<name>'s value with its line
// continuations joined.
func preseedCommand(t *testing.T, cfg, name string) string {
	t.Helper()
	key := "d-i preseed/" + name + " string "
	i := strings.Index(cfg, key)
	if i < 0 {
		t.Fatalf("no %s in:\n%s", name, cfg)
	}
	var cmd strings.Builder
	for _, l := range strings.Split(cfg[i+len(key):], "\n") {
		if c, ok := strings.CutSuffix(l, "\\"); ok {
			cmd.WriteString(c)
			continue
		}
		cmd.WriteString(l)
		break
	}
	return cmd.String()
}

// TestPreseedLateCommand runs the late_command (in-target dropped, /target
// mapped to a temporary directory) with the real curl, and checks the file
// with debconf-set-selections.
func TestPreseedLateCommand(t *testing.T) {
	testenv.Tool(t, "curl")
	s := newCallbackServer(t)
	dir := t.TempDir()
	cfg := renderConfig(t, host.InstallerPreseed, "preseed.cfg", s, s.CAPEM)

	if dss, err := exec.LookPath("debconf-set-selections"); err == nil {
		p := filepath.Join(dir, "preseed.cfg")
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(dss, "-c", p).CombinedOutput(); err != nil {
			t.Errorf("debconf-set-selections -c: %v\n%s", err, out)
		}
	} else {
		testenv.Missing(t, "debconf-set-selections")
	}

	cmd := lateCommand(t, cfg)
	cmd = strings.ReplaceAll(cmd, "/target/root/", dir+"/")
	cmd = strings.ReplaceAll(cmd, "in-target ", "")
	cmd = strings.ReplaceAll(cmd, "/root/", dir+"/")
	if err := runShell(t, cmd); err != nil {
		t.Fatalf("late_command: %v", err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "bootpilot-ca.pem"))
	if err != nil || string(ca) != s.CAPEM {
		t.Errorf("late_command wrote CA %q (%v), want %q", ca, err, s.CAPEM)
	}
	want := `POST /boot/v1/callback/node01/tok application/json {"event":"installed"}`
	if got := s.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("server got %q, want [%q]", got, want)
	}
}

// TestPreseedEarlyCommand runs the early_command with the real GNU wget
// (d-i's initrd ships wget-udeb, GNU wget with OpenSSL): it posts
// "installer started" pinning the CA file iPXE put into the initramfs, and
// posts nothing when that CA is not the server's. The loop is cut to one
// try and run in the foreground; /bootpilot-ca.pem and /dev/console are
// mapped to a temporary directory.
func TestPreseedEarlyCommand(t *testing.T) {
	testenv.Tool(t, "wget")
	s := newCallbackServer(t)
	_, _, other := newCA(t)
	for _, tt := range []struct {
		name, ca string
		want     []string
	}{
		{"pinned CA", s.CAPEM, []string{`POST /boot/v1/callback/node01/tok application/json {"event":"progress","detail":"installer started"}`}},
		{"another CA", other, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.requests())
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(tt.ca), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := preseedCommand(t, renderConfig(t, host.InstallerPreseed, "preseed.cfg", s, s.CAPEM), "early_command")
			for _, r := range [][2]string{
				{"--ca-certificate=/bootpilot-ca.pem ", "--ca-certificate=" + dir + "/ca.pem "},
				{">/dev/console", ">" + dir + "/console"},
				{"$(seq 1 120)", "1"},
			} {
				if !strings.Contains(cmd, r[0]) {
					t.Fatalf("early_command lacks %q:\n%s", r[0], cmd)
				}
				cmd = strings.ReplaceAll(cmd, r[0], r[1])
			}
			cmd, ok := strings.CutSuffix(cmd, " &")
			if !ok {
				t.Fatalf("early_command does not run in the background (d-i runs it before the network is up):\n%s", cmd)
			}
			runShell(t, cmd) // sleeps 5 s after a failed try
			if got := s.requests()[before:]; strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("server got %q, want %q", got, tt.want)
			}
			console, _ := os.ReadFile(filepath.Join(dir, "console"))
			if wantLine := len(tt.want) > 0; wantLine != strings.Contains(string(console), "bootpilot: reported installer started") {
				t.Errorf("console = %q, want the report line: %v", console, wantLine)
			}
		})
	}
}

// TestPreseedEarlyCommandDetaches runs the early_command as d-i does, with
// a pipe as fd 3 (debconf's channel, which the frontend reads to its end),
// while the background loop cannot reach the server: the pipe must end as
// soon as the command returns, not when the loop does.
func TestPreseedEarlyCommandDetaches(t *testing.T) {
	testenv.Tool(t, "wget")
	s := newCallbackServer(t)
	_, _, other := newCA(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := preseedCommand(t, renderConfig(t, host.InstallerPreseed, "preseed.cfg", s, s.CAPEM), "early_command")
	cmd = strings.ReplaceAll(cmd, "/bootpilot-ca.pem", dir+"/ca.pem")
	cmd = strings.ReplaceAll(cmd, "$(seq 1 120)", "1")
	cmd = strings.ReplaceAll(cmd, "sleep 5", "sleep 60") // the loop outlives the wait below
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sh := exec.Command("sh", "-c", cmd)
	sh.ExtraFiles = []*os.File{w} // fd 3
	if err := sh.Run(); err != nil {
		t.Fatalf("early_command: %v", err)
	}
	w.Close()
	eof := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, r); eof <- err }()
	select {
	case err := <-eof:
		if err != nil {
			t.Errorf("reading fd 3: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("fd 3 still open 30 s after early_command returned: the background loop holds debconf's channel")
	}
}

// TestAutoinstallUserData parses user-data as YAML, checks the network and
// runs late-commands and error-commands with the real curl.
func TestAutoinstallUserData(t *testing.T) {
	testenv.Tool(t, "curl")
	s := newCallbackServer(t)
	dir := t.TempDir()
	ud := renderConfig(t, host.InstallerAutoinstall, "user-data", s, s.CAPEM)
	if !strings.HasPrefix(ud, "#cloud-config\n") {
		t.Errorf("user-data does not start with #cloud-config")
	}
	var doc struct {
		WriteFiles []struct {
			Path    string `yaml:"path"`
			Content string `yaml:"content"`
		} `yaml:"write_files"`
		Autoinstall struct {
			Version int `yaml:"version"`
			Network struct {
				Version   int `yaml:"version"`
				Ethernets map[string]struct {
					Match struct {
						MAC string `yaml:"macaddress"`
					} `yaml:"match"`
					Addresses   []string `yaml:"addresses"`
					DHCP4       bool     `yaml:"dhcp4"`
					Nameservers struct {
						Addresses []string `yaml:"addresses"`
					} `yaml:"nameservers"`
				} `yaml:"ethernets"`
			} `yaml:"network"`
			Early [][]string `yaml:"early-commands"`
			Late  [][]string `yaml:"late-commands"`
			Error [][]string `yaml:"error-commands"`
		} `yaml:"autoinstall"`
	}
	if err := yaml.Unmarshal([]byte(ud), &doc); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, ud)
	}
	eth := doc.Autoinstall.Network.Ethernets["bootnet"]
	if doc.Autoinstall.Version != 1 || doc.Autoinstall.Network.Version != 2 ||
		eth.Match.MAC != "52:54:00:12:34:56" || strings.Join(eth.Addresses, ",") != "10.0.2.15/24" ||
		eth.DHCP4 || strings.Join(eth.Nameservers.Addresses, ",") != "10.0.2.3,10.0.2.4" {
		t.Errorf("user-data network = %+v, want static 10.0.2.15/24 on 52:54:00:12:34:56", doc.Autoinstall.Network)
	}
	if len(doc.WriteFiles) != 1 || doc.WriteFiles[0].Content != s.CAPEM {
		t.Fatalf("write_files = %+v, want the CA", doc.WriteFiles)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootpilot-ca.pem"), []byte(doc.WriteFiles[0].Content), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(argv []string) {
		t.Helper()
		for i, a := range argv {
			argv[i] = strings.ReplaceAll(a, doc.WriteFiles[0].Path, filepath.Join(dir, "bootpilot-ca.pem"))
		}
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%q: %v\n%s", argv, err, out)
		}
	}
	if len(doc.Autoinstall.Early) != 1 || len(doc.Autoinstall.Late) != 1 || len(doc.Autoinstall.Error) != 1 {
		t.Fatalf("early-commands %q, late-commands %q, error-commands %q: want one each",
			doc.Autoinstall.Early, doc.Autoinstall.Late, doc.Autoinstall.Error)
	}
	run(doc.Autoinstall.Early[0])
	run(doc.Autoinstall.Late[0])
	run(doc.Autoinstall.Error[0])
	want := []string{
		`POST /boot/v1/callback/node01/tok application/json {"event":"progress","detail":"installer started"}`,
		`POST /boot/v1/callback/node01/tok application/json {"event":"installed"}`,
		`POST /boot/v1/callback/node01/tok application/json {"event":"failed"}`,
	}
	if got := s.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("server got %q, want %q", got, want)
	}

	md := renderConfig(t, host.InstallerAutoinstall, "meta-data", s, s.CAPEM)
	var meta map[string]string
	if err := yaml.Unmarshal([]byte(md), &meta); err != nil {
		t.Fatalf("meta-data is not YAML: %v", err)
	}
	if meta["instance-id"] != "bootpilot-node01-1" || meta["local-hostname"] != "node01" {
		t.Errorf("meta-data = %v", meta)
	}
}
