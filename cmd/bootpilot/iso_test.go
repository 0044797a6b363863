package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

// isoKeys writes a CA and a self-signed db key pair to dir and returns the
// CA certificate, its key and the file paths.
func isoKeys(t *testing.T, dir string) (ca *x509.Certificate, caKey *rsa.PrivateKey, caPath, keyPath, certPath string) {
	t.Helper()
	mk := func(tmpl, parent *x509.Certificate, pub, priv any) []byte {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	caKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "iso test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER := mk(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ = x509.ParseCertificate(caDER)
	dbKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	dbTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "iso test db"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	dbDER := mk(dbTmpl, dbTmpl, &dbKey.PublicKey, dbKey)
	w := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return ca, caKey, w("ca.pem", "CERTIFICATE", caDER), w("db.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(dbKey)), w("db.pem", "CERTIFICATE", dbDER)
}

const isoCSV = `name,mac,ipv4,gateway,dns
node01,52:54:00:12:34:56,10.0.2.15/24,10.0.2.2,10.0.2.3
node02,52:54:00:12:34:57,10.0.2.16/24,10.0.2.2,10.0.2.3
node03,52:54:00:12:34:58,10.0.2.17/24,10.0.2.2,10.0.2.3
`

var isoCredRE = regexp.MustCompile(`https://(node0[0-9]):([0-9a-f]{32})@10\.0\.2\.100:8443/boot/v1/script`)

func TestISOBuildOffline(t *testing.T) {
	dir := t.TempDir()
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	csvPath := filepath.Join(dir, "hosts.csv")
	os.WriteFile(csvPath, []byte(isoCSV), 0o644)
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"iso", "build", "--csv", csvPath, "--out", out, "--server-url", "https://10.0.2.100:8443",
		"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath, "--offline", "--jobs", "2"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("iso build: %v\n%s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr is not a terminal, want no output; got %q", stderr.String())
	}
	var manifest struct {
		ISOs []struct {
			Host, File, SHA256, Mode string
			Size                     int64
			SignerFingerprint        string `json:"signer_fingerprint"`
			CAFingerprint            string `json:"ca_fingerprint"`
		} `json:"isos"`
	}
	readJSON(t, filepath.Join(out, "manifest.json"), &manifest)
	if len(manifest.ISOs) != 3 {
		t.Fatalf("manifest has %d ISOs, want 3", len(manifest.ISOs))
	}
	tokens := map[string]string{}
	for _, m := range manifest.ISOs {
		data, err := os.ReadFile(filepath.Join(out, m.File))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != m.SHA256 || int64(len(data)) != m.Size || m.Mode != "binary" || m.SignerFingerprint == "" || m.CAFingerprint == "" {
			t.Errorf("manifest entry %+v does not match %s", m, m.File)
		}
		c := isoCredRE.FindSubmatch(data)
		if c == nil || string(c[1]) != m.Host {
			t.Fatalf("%s: no stage-0 URL with the host's credentials", m.File)
		}
		tokens[m.Host] = string(c[2])
	}
	raw, _ := os.ReadFile(filepath.Join(out, "hosts-import.json"))
	var imp struct {
		Hosts []struct {
			Name      string `json:"name"`
			TokenHash string `json:"token_hash"`
		} `json:"hosts"`
	}
	readJSON(t, filepath.Join(out, "hosts-import.json"), &imp)
	if len(imp.Hosts) != 3 {
		t.Fatalf("hosts-import.json has %d hosts", len(imp.Hosts))
	}
	for _, h := range imp.Hosts {
		sum := sha256.Sum256([]byte(tokens[h.Name]))
		if h.TokenHash != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: token_hash does not hash the ISO's token", h.Name)
		}
		if bytes.Contains(raw, []byte(tokens[h.Name])) {
			t.Errorf("hosts-import.json holds %s's plaintext token", h.Name)
		}
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestISOBuildBadCSV(t *testing.T) {
	dir := t.TempDir()
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	var many []string
	for i := 0; i < 40; i++ {
		many = append(many, "52:54:00:00:01:"+hex.EncodeToString([]byte{byte(i)}))
	}
	csv := isoCSV +
		"node04,52:54:00:12:34:zz,10.0.2.18/24,10.0.2.2,10.0.2.3\n" +
		"node05,52:54:00:12:34:59,10.0.2.19/24,10.9.9.9,10.0.2.3\n"
	csvPath := filepath.Join(dir, "hosts.csv")
	os.WriteFile(csvPath, []byte(csv), 0o644)
	out := filepath.Join(dir, "out")
	args := []string{"iso", "build", "--csv", csvPath, "--out", out, "--server-url", "https://10.0.2.100:8443",
		"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath, "--offline"}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "2 bad rows") {
		t.Fatalf("err = %v, want 2 bad rows", err)
	}
	for _, want := range []string{"hosts.csv:5: mac: ", "hosts.csv:6: gateway: "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory was created despite bad rows")
	}

	// A script too long for the slot is found before anything is written.
	os.WriteFile(csvPath, []byte(isoCSV+"node09,"+strings.Join(many, ";")+",10.0.2.30/24,10.0.2.2,10.0.2.3\n"), 0o644)
	stderr.Reset()
	err = run(context.Background(), args, &stdout, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "hosts.csv:5: script: stage-0 script is ") {
		t.Fatalf("err = %v, stderr %q; want a script-too-long row error", err, stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory was created despite bad rows")
	}
}

func TestISOBuildAPI(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPath, keyPath, certPath := isoKeys(t, dir)
	leafKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.2.100")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)

	var mu sync.Mutex
	var calls []string
	tokens := map[string]string{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer admintok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		calls = append(calls, r.Method+" "+r.URL.Path)
		switch {
		case r.Method == "POST" && r.URL.Path == "/api/v1/hosts":
			var h struct{ Name string }
			json.NewDecoder(r.Body).Decode(&h)
			if h.Name == "node02" { // already registered
				http.Error(w, `{"error":"exists"}`, http.StatusConflict)
				return
			}
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("{}"))
		case r.Method == "PATCH":
			w.Write([]byte("{}"))
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/boot-token"):
			name := strings.Split(r.URL.Path, "/")[4]
			sum := sha256.Sum256([]byte(name))
			tok := hex.EncodeToString(sum[:16])
			tokens[name] = tok
			json.NewEncoder(w).Encode(map[string]string{"token": tok})
		default:
			http.NotFound(w, r)
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	srv.StartTLS()
	defer srv.Close()

	csvPath := filepath.Join(dir, "hosts.csv")
	os.WriteFile(csvPath, []byte(isoCSV), 0o644)
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"iso", "build", "--csv", csvPath, "--out", out, "--server-url", "https://10.0.2.100:8443",
		"--ca-cert", caPath, "--db-key", keyPath, "--db-cert", certPath, "--api", srv.URL, "--token", "admintok", "--jobs", "1"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("iso build --api: %v\n%s", err, stderr.String())
	}
	want := []string{
		"POST /api/v1/hosts", "POST /api/v1/hosts/node01/boot-token",
		"POST /api/v1/hosts", "PATCH /api/v1/hosts/node02", "POST /api/v1/hosts/node02/boot-token",
		"POST /api/v1/hosts", "POST /api/v1/hosts/node03/boot-token",
	}
	if strings.Join(calls, ",") != strings.Join(want, ",") {
		t.Errorf("API calls:\n%v\nwant\n%v", calls, want)
	}
	for name, tok := range tokens {
		data, _ := os.ReadFile(filepath.Join(out, name+".iso"))
		if !bytes.Contains(data, []byte(name+":"+tok+"@")) {
			t.Errorf("%s.iso does not carry the rotated token", name)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "hosts-import.json")); !os.IsNotExist(err) {
		t.Error("--api wrote hosts-import.json")
	}
}

func TestISOBuildFromDB(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o700)
	_, _, caPath, keyPath, certPath := isoKeys(t, dir)
	caPEM, _ := os.ReadFile(caPath)
	os.WriteFile(filepath.Join(data, "ca.pem"), caPEM, 0o644)
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(data, "bootpilot.db"))
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"node01", "node02"} {
		h := host.Host{Name: name, MACs: []string{"52:54:00:12:34:5" + string(rune('6'+i))}, IPv4: "10.0.2.1" + string(rune('5'+i)) + "/24",
			Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}, TokenHash: strings.Repeat("0", 64)}
		if err := h.Normalize(); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateHost(ctx, h, host.Record{Actor: "admin", Action: "create"}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"iso", "build", "--from-db", data, "--host", "node02", "--out", out, "--server-url", "https://10.0.2.100:8443",
		"--db-key", keyPath, "--db-cert", certPath}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("iso build --from-db: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "node01.iso")); !os.IsNotExist(err) {
		t.Error("--host node02 also built node01")
	}
	iso, err := os.ReadFile(filepath.Join(out, "node02.iso"))
	if err != nil {
		t.Fatal(err)
	}
	c := isoCredRE.FindSubmatch(iso)
	if c == nil {
		t.Fatal("node02.iso has no credentials")
	}
	db, err = store.Open(ctx, "sqlite:"+filepath.Join(data, "bootpilot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h2, _ := db.GetHost(ctx, "node02")
	h1, _ := db.GetHost(ctx, "node01")
	sum := sha256.Sum256(c[2])
	if h2.TokenHash != hex.EncodeToString(sum[:]) {
		t.Error("node02's stored token hash does not match the ISO's token")
	}
	if h1.TokenHash != strings.Repeat("0", 64) {
		t.Error("node01's token was rotated though it was not built")
	}
	ev, _ := db.Events(ctx, "node02", 10)
	found := false
	for _, e := range ev {
		found = found || e.Action == "token-rotate"
	}
	if !found {
		t.Errorf("no token-rotate audit event for node02: %+v", ev)
	}
}
