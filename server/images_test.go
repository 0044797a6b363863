package server_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/server"
)

func TestImageDeployProfile(t *testing.T) {
	e := newEnv(t, "sqlite")
	tok := e.addHost("node01", mac1, "10.0.2.15/24")
	blob := []byte(strings.Repeat("disk image ", 10000))
	sum := sha256.Sum256(blob)
	want := hex.EncodeToString(sum[:])

	req, _ := http.NewRequest("POST", e.url+"/api/v1/images", strings.NewReader(string(blob)))
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.client.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("upload: %v %v", err, resp)
	}
	resp.Body.Close()

	// A wrong digest is refused at profile time, never at deploy time.
	bad := map[string]any{"name": "img-bad", "kernel": "https://k.example/vmlinuz", "installer": "image",
		"image": e.url + "/images/v1/" + want, "image_sha256": strings.Repeat("0", 64)}
	var eb struct{ Error, Field string }
	if code := e.do("POST", "/api/v1/profiles", bad, &eb); code != 400 || eb.Field != "image_sha256" {
		t.Errorf("wrong digest: %d %+v, want 400 on image_sha256", code, eb)
	}
	unreachable := map[string]any{"name": "img-gone", "kernel": "https://k.example/vmlinuz", "installer": "image",
		"image": "https://127.0.0.1:1/disk.raw", "image_sha256": strings.Repeat("1", 64)}
	if code := e.do("POST", "/api/v1/profiles", unreachable, &eb); code != 400 || eb.Field != "image" {
		t.Errorf("unreachable image: %d %+v, want 400 on image", code, eb)
	}

	e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "img", "kernel": "https://k.example/vmlinuz",
		"initrds": []string{"https://k.example/agent.cpio.gz"}, "installer": "image",
		"image": e.url + "/images/v1/" + want, "image_sha256": want, "target_disk": "/dev/vda"}, nil)
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"profile": "img"}, nil)
	_, s := e.boot("node01", tok, mac1)
	for _, w := range []string{"bootpilot.task=deploy", "bootpilot.image=" + e.url + "/images/v1/" + want, "bootpilot.sha256=" + want, "bootpilot.disk=/dev/vda"} {
		if !strings.Contains(s, w) {
			t.Errorf("deploy script lacks %q:\n%s", w, s)
		}
	}
	if h := e.host("node01"); h.State != host.StateInstalling {
		t.Errorf("state %s", h.State)
	}

	// Hosts fetch it with Range, as the agent may resume.
	req, _ = http.NewRequest("GET", e.url+"/images/v1/"+want, nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err = e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(part) != "disk image" {
		t.Errorf("ranged image: %d %q", resp.StatusCode, part)
	}
}

// rawDo sends body as is to the admin API and returns the status and answer.
func (e *env) rawDo(method, path string, body io.Reader) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, body)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// jsonBody encodes v.
func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// TestImageFetchLocalPathAttack is the reported attack: a local path of a
// secret file in the data dir, with a wrong digest, used to answer 400 with
// the file's real digest; sent back, that digest cached the file, and
// GET /images/v1/<digest> served it to anyone. Now the path is refused
// (no import dir) without the digest, whatever digest is offered, through
// the fetch API and a profile's image alike.
func TestImageFetchLocalPathAttack(t *testing.T) {
	dataDir := t.TempDir()
	cache, err := images.New(filepath.Join(dataDir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "sqlite", func(o *server.Options) { o.Images = cache })
	secret := []byte("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n")
	keyFile := filepath.Join(dataDir, "ca-key.pem")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(secret)
	real := hex.EncodeToString(sum[:])
	zeros := strings.Repeat("0", 64)
	for _, ref := range []string{keyFile, "file://" + keyFile} {
		for _, want := range []string{zeros, real} {
			code, body := e.rawDo("POST", "/api/v1/images/fetch", jsonBody(map[string]string{"ref": ref, "sha256": want}))
			if code != http.StatusBadRequest || (want == zeros && strings.Contains(body, real)) {
				t.Errorf("fetch %s with sha256 %.8s… = %d %s, want 400 without the file's digest", ref, want, code, body)
			}
			profile := map[string]any{"name": "steal", "kernel": "https://k.example/vmlinuz", "installer": "image",
				"image": ref, "image_sha256": want}
			code, body = e.rawDo("POST", "/api/v1/profiles", jsonBody(profile))
			if code != http.StatusBadRequest || (want == zeros && strings.Contains(body, real)) {
				t.Errorf("profile with image %s, sha256 %.8s… = %d %s, want 400 without the file's digest", ref, want, code, body)
			}
		}
	}
	if code, _ := e.get(e.url + "/images/v1/" + real); code != http.StatusNotFound {
		t.Errorf("GET /images/v1/<digest of the key> = %d, want 404", code)
	}
}

// imageEnv is a server whose cache fetches from origin srv (on loopback,
// so private addresses are allowed explicitly) with opts, and whose server
// and cache log into the returned buffer.
func imageEnv(t *testing.T, srv *httptest.Server, opts ...images.Option) (*env, *images.Cache, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	base := []images.Option{images.WithLogger(log)}
	if srv != nil {
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		base = append(base, images.WithRootCAs(pool), images.WithOrigins(srv.URL), images.WithAllowPrivate(true))
	}
	cache, err := images.New(t.TempDir(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "sqlite", func(o *server.Options) { o.Images = cache; o.Logger = log })
	return e, cache, logs
}

// blobServer serves data at every path but /redirect, which sends the
// client to *to, and counts requests.
func blobServer(t *testing.T, data []byte, to *string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, *to, http.StatusFound)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestImageFetchMismatchHidesDigest: a mismatch on an allowed origin says
// what was wanted, never what the content is.
func TestImageFetchMismatchHidesDigest(t *testing.T) {
	data := []byte("internal service answer")
	srv, _ := blobServer(t, data, nil)
	e, _, _ := imageEnv(t, srv)
	zeros := strings.Repeat("0", 64)
	for _, tc := range []struct{ path, ref, field string }{
		{"/api/v1/images/fetch", "ref", "sha256"},
		{"/api/v1/profiles", "image", "image_sha256"},
	} {
		body := map[string]any{tc.ref: srv.URL + "/blob", tc.field: zeros}
		if tc.ref == "image" {
			body = map[string]any{"name": "img", "kernel": "https://k.example/vmlinuz", "installer": "image", "image": srv.URL + "/blob", "image_sha256": zeros}
		}
		var eb struct{ Error, Field string }
		code, ans := e.rawDo("POST", tc.path, jsonBody(body))
		json.Unmarshal([]byte(ans), &eb)
		want := "digest mismatch: the content at " + srv.URL + "/blob does not have sha256:" + zeros
		if code != 400 || eb.Error != want || eb.Field != tc.field || strings.Contains(ans, sha(data)) {
			t.Errorf("POST %s with a wrong digest = %d %s, want 400 %q on %s", tc.path, code, ans, want, tc.field)
		}
	}
	if code, _ := e.get(e.url + "/images/v1/" + sha(data)); code != 404 {
		t.Errorf("GET of the mismatching content = %d, want 404", code)
	}
	var img struct{ Digest string }
	e.mustDo(200, "POST", "/api/v1/images/fetch", map[string]string{"ref": srv.URL + "/blob", "sha256": sha(data)}, &img)
	if img.Digest != "sha256:"+sha(data) {
		t.Errorf("fetch with the right digest = %+v", img)
	}
}

// TestImageFetchOrigins: remote sources only from --image-origin, only to
// public addresses unless allowed (checked after DNS), redirects
// re-checked, size capped.
func TestImageFetchOrigins(t *testing.T) {
	data := []byte(strings.Repeat("disk ", 1000))
	var to string
	srv, n := blobServer(t, data, &to)
	other, otherN := blobServer(t, data, &to)
	fetch := func(e *env, ref string) (int, string) {
		return e.rawDo("POST", "/api/v1/images/fetch", jsonBody(map[string]string{"ref": ref, "sha256": sha(data)}))
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	e, cache, _ := imageEnv(t, nil) // no origin configured
	if code, ans := fetch(e, srv.URL+"/blob"); code != 400 || !strings.Contains(ans, "--image-origin") {
		t.Errorf("fetch with no origin configured = %d %s, want 400 naming --image-origin", code, ans)
	}
	e, cache, _ = imageEnv(t, other) // srv is not on the list
	if code, ans := fetch(e, srv.URL+"/blob"); code != 400 || !strings.Contains(ans, "not an allowed image origin") {
		t.Errorf("fetch from an origin not on the list = %d %s, want 400", code, ans)
	}
	if n.Load() != 0 {
		t.Errorf("the origin not on the list saw %d requests", n.Load())
	}

	// On the list, but loopback (by name: localhost resolves to it) and
	// no --image-allow-private.
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, origin := range []string{"https://localhost:" + port, srv.URL} {
		e, _, _ = imageEnv(t, nil, images.WithOrigins(origin), images.WithRootCAs(pool))
		if code, ans := fetch(e, origin+"/blob"); code != 400 || !strings.Contains(ans, "loopback") || !strings.Contains(ans, "--image-allow-private") {
			t.Errorf("fetch from loopback origin %s without allow-private = %d %s, want 400 naming loopback and --image-allow-private", origin, code, ans)
		}
	}
	if n.Load() != 0 {
		t.Errorf("the loopback origin saw %d requests without allow-private", n.Load())
	}

	// An allowed origin redirects to one that is not.
	to = other.URL + "/blob"
	e, cache, _ = imageEnv(t, srv)
	if code, ans := fetch(e, srv.URL+"/redirect"); code != 400 || !strings.Contains(ans, "redirect to "+other.URL+" refused") {
		t.Errorf("redirect to an origin not on the list = %d %s, want 400", code, ans)
	}
	if otherN.Load() != 0 {
		t.Errorf("the redirect target saw %d requests", otherN.Load())
	}
	if _, err := cache.Lookup(sha(data)); err == nil {
		t.Error("the redirect target's content is cached")
	}

	// Over --image-max-size: 400, nothing cached, nothing left behind.
	e, cache, _ = imageEnv(t, srv, images.WithMaxSize(int64(len(data)-1)))
	var eb struct{ Error, Field string }
	code, ans := fetch(e, srv.URL+"/blob")
	json.Unmarshal([]byte(ans), &eb)
	if code != 400 || eb.Field != "size" || !strings.Contains(eb.Error, "--image-max-size") {
		t.Errorf("fetch over the size cap = %d %s, want 400 on size", code, ans)
	}
	assertNoBlobs(t, cache)
}

// assertNoBlobs fails if the cache holds any file.
func assertNoBlobs(tb testing.TB, c *images.Cache) {
	tb.Helper()
	filepath.WalkDir(c.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			tb.Errorf("cache holds %s", p)
		}
		return nil
	})
}

// TestImageRefsRedacted: URL credentials and signed query strings reach
// no log line, no answer and no stored profile.
func TestImageRefsRedacted(t *testing.T) {
	data := []byte(strings.Repeat("img", 100))
	to := "https://svc:redirsecret@elsewhere.example/x?X-Amz-Signature=redirsig"
	srv, _ := blobServer(t, data, &to)
	e, _, logs := imageEnv(t, srv)
	signed := strings.Replace(srv.URL, "https://", "https://user:topsecret@", 1) + "/disk.raw?X-Amz-Signature=sigsecret&X-Amz-Credential=credsecret"
	var answers []string
	post := func(path string, body any) {
		_, ans := e.rawDo("POST", path, jsonBody(body))
		answers = append(answers, ans)
	}
	post("/api/v1/images/fetch", map[string]string{"ref": signed, "sha256": sha(data)})
	post("/api/v1/images/fetch", map[string]string{"ref": signed, "sha256": strings.Repeat("1", 64)})
	post("/api/v1/images/fetch", map[string]string{"ref": strings.Replace(signed, "disk.raw", "redirect", 1), "sha256": strings.Repeat("2", 64)})
	post("/api/v1/images/fetch", map[string]string{"ref": strings.Replace(signed, srv.URL[len("https://"):], "unlisted.example", 1), "sha256": sha(data)})
	post("/api/v1/profiles", map[string]any{"name": "img", "kernel": "https://k.example/vmlinuz", "installer": "image",
		"image": signed, "image_sha256": sha(data), "target_disk": "/dev/vda"})
	var p host.Profile
	e.mustDo(200, "GET", "/api/v1/profiles/img", nil, &p)
	if want := srv.URL + "/disk.raw"; p.Image != want {
		t.Errorf("stored profile image = %q, want %q", p.Image, want)
	}
	all := logs.String() + strings.Join(answers, "\n")
	for _, s := range []string{"topsecret", "sigsecret", "credsecret", "redirsecret", "redirsig", "X-Amz"} {
		if strings.Contains(all, s) {
			t.Errorf("%q appears in logs or answers:\n%s", s, all)
		}
	}
	if !strings.Contains(logs.String(), "image cached") {
		t.Errorf("the fetch was not logged:\n%s", logs.String())
	}
}

func TestImageUploadAndBodyCaps(t *testing.T) {
	e, cache, _ := imageEnv(t, nil, images.WithMaxSize(1000))
	blob := bytes.Repeat([]byte("k"), 1000)
	var img struct{ Digest string }
	code, ans := e.rawDo("POST", "/api/v1/images", bytes.NewReader(blob))
	json.Unmarshal([]byte(ans), &img)
	if code != 201 || img.Digest != "sha256:"+sha(blob) {
		t.Fatalf("upload at the cap = %d %s, want 201 with its digest", code, ans)
	}
	big := append(blob, 'k')
	// With a Content-Length (refused before reading) and streamed
	// (refused when it passes the cap).
	for _, body := range []io.Reader{bytes.NewReader(big), io.MultiReader(bytes.NewReader(big))} {
		code, ans := e.rawDo("POST", "/api/v1/images", body)
		if code != 400 && code != 413 {
			t.Errorf("upload over the cap = %d %s, want 400 or 413", code, ans)
		}
	}
	if _, err := cache.Lookup(sha(big)); err == nil {
		t.Error("the oversized upload is cached")
	}
	tmp, _ := os.ReadDir(filepath.Join(cache.Dir, "tmp"))
	if len(tmp) != 0 {
		t.Errorf("temporary files left in the cache: %v", tmp)
	}
	huge := `{"ref":"https://m.example/` + strings.Repeat("a", 70<<10) + `","sha256":""}`
	if code, ans := e.rawDo("POST", "/api/v1/images/fetch", strings.NewReader(huge)); code != 400 && code != 413 {
		t.Errorf("fetch with a 70 KiB body = %d %s, want 400 or 413", code, ans)
	}
}

// TestImageImportDir: with --image-import-dir, files inside it can be
// named by path; nothing outside it, through ../ or a link.
func TestImageImportDir(t *testing.T) {
	root := t.TempDir()
	dir, outside := filepath.Join(root, "import"), filepath.Join(root, "data")
	for _, d := range []string{dir, outside} {
		if err := os.Mkdir(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	data, secret := []byte("disk image"), []byte("secret key")
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "key"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "key"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	e, _, _ := imageEnv(t, nil, images.WithImportDirs(dir))
	e.mustDo(200, "POST", "/api/v1/images/fetch", map[string]string{"ref": "file://" + filepath.Join(dir, "disk.raw"), "sha256": sha(data)}, nil)
	for _, ref := range []string{filepath.Join(outside, "key"), dir + "/../data/key", filepath.Join(dir, "link"), dir} {
		for _, want := range []string{strings.Repeat("0", 64), sha(secret)} {
			code, ans := e.rawDo("POST", "/api/v1/images/fetch", jsonBody(map[string]string{"ref": ref, "sha256": want}))
			if code != 400 || strings.Contains(ans, sha(secret)) && want != sha(secret) {
				t.Errorf("fetch %s = %d %s, want 400 without the file's digest", ref, code, ans)
			}
		}
	}
	if code, _ := e.get(e.url + "/images/v1/" + sha(secret)); code != 404 {
		t.Errorf("GET of the secret's digest = %d, want 404", code)
	}
}
