package images_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

// MustFile writes data to dir/name and returns its path.
func MustFile(tb testing.TB, dir, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// assertRefused checks that err is a ValidationError that does not tell
// the digest secret.
func assertRefused(tb testing.TB, what string, err error, secret string) {
	tb.Helper()
	var ve *host.ValidationError
	if !errors.As(err, &ve) {
		tb.Errorf("%s: err = %v, want a ValidationError", what, err)
		return
	}
	if strings.Contains(err.Error(), secret) {
		tb.Errorf("%s: error %q tells the file's digest", what, err)
	}
}

// TestFetchLocalPathRefused is the reported attack: without an import
// directory, no local path is read, whatever the digest offered — neither
// the wrong one (whose error used to tell the real digest) nor the real one.
func TestFetchLocalPathRefused(t *testing.T) {
	secret := []byte("-----BEGIN PRIVATE KEY-----\nnot really\n")
	p := MustFile(t, t.TempDir(), "ca-key.pem", secret)
	ctx := context.Background()
	c := MustCache(t)
	for _, ref := range []string{p, "file://" + p} {
		for _, want := range []string{hexOf([]byte("guess")), hexOf(secret)} {
			_, err := c.Fetch(ctx, ref, want)
			assertRefused(t, "Fetch("+ref+")", err, hexOf(secret))
			if err != nil && !strings.Contains(err.Error(), "--image-import-dir") {
				t.Errorf("Fetch(%s) = %v, want an error naming --image-import-dir", ref, err)
			}
		}
	}
	assertEmpty(t, c)
}

func TestFetchImportDir(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "import")
	outside := filepath.Join(root, "secret")
	for _, d := range []string{dir, outside, filepath.Join(dir, "sub")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	data := MustRandom(t, 5000)
	secret := []byte("root:$6$hash:19000:0:99999:7:::\n")
	in := MustFile(t, dir, "disk.raw", data)
	sec := MustFile(t, outside, "shadow", secret)
	mustLink := func(target, name string) string {
		t.Helper()
		l := filepath.Join(dir, name)
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	linkOut := mustLink(sec, "escape")
	linkDirOut := mustLink(outside, "escape-dir")
	linkIn := mustLink(in, "alias.raw")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	c := MustCache(t, images.WithImportDirs(dir))
	for _, ref := range []string{in, "file://" + in, linkIn, dir + "/sub/../disk.raw"} {
		e, err := c.Fetch(ctx, ref, hexOf(data))
		if err != nil {
			t.Errorf("Fetch(%s) below the import dir: %v", ref, err)
			continue
		}
		assertBlob(t, c, e, data)
	}
	for _, ref := range []string{
		sec, "file://" + sec, // outside
		dir + "/../secret/shadow", // ../ escape
		linkOut,                   // link to a file outside
		linkDirOut + "/shadow",    // through a link to a dir outside
		dir,                       // the dir itself
		filepath.Join(dir, "sub"), // a directory
		fifo,                      // not a regular file (and must not block)
		filepath.Join(dir, "missing"),
	} {
		_, err := c.Fetch(ctx, ref, hexOf([]byte("guess")))
		assertRefused(t, "Fetch("+ref+")", err, hexOf(secret))
		if _, err := c.Fetch(ctx, ref, hexOf(secret)); err == nil {
			t.Errorf("Fetch(%s) with the right digest succeeded", ref)
		}
	}
	if _, err := c.Lookup(hexOf(secret)); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("the secret is in the cache: Lookup = %v", err)
	}
}

func TestImportDirOverlapsCache(t *testing.T) {
	root := t.TempDir()
	cache := filepath.Join(root, "data", "images")
	for _, d := range []string{cache, filepath.Join(root, "data"), root} {
		if _, err := images.New(cache, images.WithImportDirs(d)); err == nil {
			t.Errorf("New(%s) with import dir %s: no error, want one (it overlaps the cache)", cache, d)
		}
	}
	inside := filepath.Join(cache, "sha256")
	if _, err := images.New(cache, images.WithImportDirs(inside)); err == nil {
		t.Errorf("New with an import dir inside the cache: no error")
	}
	for _, d := range []string{"relative", filepath.Join(root, "missing"), MustFile(t, root, "f", nil)} {
		if _, err := images.New(filepath.Join(root, "c2"), images.WithImportDirs(d)); err == nil {
			t.Errorf("New with import dir %q: no error", d)
		}
	}
	key := MustFile(t, root, "secret.key", []byte("k"))
	if err := images.CheckImportDirs([]string{root}, filepath.Join(root, "elsewhere"), key); err == nil {
		t.Error("CheckImportDirs of a dir holding a protected key file: no error")
	}
	other := filepath.Join(root, "other")
	if err := os.Mkdir(other, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := images.CheckImportDirs([]string{other}, filepath.Join(root, "data"), key); err != nil {
		t.Errorf("CheckImportDirs of an unrelated dir: %v", err)
	}
}

// counting is a TLS server that counts requests and serves data.
func counting(tb testing.TB, data []byte) (*httptest.Server, *atomic.Int32) {
	tb.Helper()
	var n atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	tb.Cleanup(srv.Close)
	return srv, &n
}

func TestFetchOrigins(t *testing.T) {
	data := MustRandom(t, 1000)
	srv, n := counting(t, data)
	other, _ := counting(t, data)
	ctx := context.Background()
	u := srv.URL + "/disk.raw"

	c := MustCache(t) // no origins: remote fetches disabled
	_, err := c.Fetch(ctx, u, hexOf(data))
	assertRefused(t, "Fetch without origins", err, hexOf(data))
	if err != nil && !strings.Contains(err.Error(), "--image-origin") {
		t.Errorf("Fetch without origins = %v, want an error naming --image-origin", err)
	}
	if _, err := c.Fetch(ctx, "registry.example.com/disk:1", ""); err == nil || !strings.Contains(err.Error(), "--image-origin") {
		t.Errorf("OCI Fetch without origins = %v, want an error naming --image-origin", err)
	}

	opts := append(tlsOrigin(other), images.WithAllowPrivate(true))
	c = MustCache(t, opts...) // only the other server's origin
	_, err = c.Fetch(ctx, u, hexOf(data))
	assertRefused(t, "Fetch from an origin not on the list", err, hexOf(data))
	for _, ref := range []string{strings.Replace(u, "https://", "http://", 1), "registry.example.com/disk:1"} {
		_, err := c.Fetch(ctx, ref, hexOf(data))
		assertRefused(t, "Fetch("+ref+")", err, hexOf(data))
	}
	if got := n.Load(); got != 0 {
		t.Errorf("the server not on the list saw %d requests, want 0", got)
	}

	c = MustCache(t, tlsOrigin(srv)...)
	e, err := c.Fetch(ctx, u, hexOf(data))
	if err != nil {
		t.Fatalf("Fetch from an allowed origin: %v", err)
	}
	assertBlob(t, c, e, data)

	for _, o := range []string{"ftp://x", "https://u:p@x", "https://x/path", "https://x?q", "https://x:99999", "", "https://"} {
		if err := images.CheckOrigins([]string{o}); err == nil {
			t.Errorf("CheckOrigins(%q) = nil, want an error", o)
		}
	}
	if err := images.CheckOrigins([]string{"https://mirror.example.com", "http://10.0.0.9:8080", "registry.example.com:5000", "[::1]:5000"}); err != nil {
		t.Errorf("CheckOrigins(valid) = %v", err)
	}
}

// TestFetchLoopbackRefused: an origin on the list that resolves to
// loopback is refused at dial time unless private addresses are allowed,
// whether named by address or by a name that DNS resolves.
func TestFetchLoopbackRefused(t *testing.T) {
	data := MustRandom(t, 1000)
	srv, n := counting(t, data)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	byName := "https://localhost:" + port
	ctx := context.Background()
	for _, origin := range []string{srv.URL, byName} {
		c := MustCache(t, images.WithOrigins(origin), tlsOrigin(srv)[0])
		_, err := c.Fetch(ctx, origin+"/disk.raw", hexOf(data))
		var be *images.BlockedAddressError
		if !errors.As(err, &be) || be.Reason != "loopback" {
			t.Errorf("Fetch(%s) without allow-private = %v, want a BlockedAddressError (loopback)", origin, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--image-allow-private") {
			t.Errorf("error %q does not name --image-allow-private", err)
		}
		assertEmpty(t, c)
	}
	if got := n.Load(); got != 0 {
		t.Errorf("server saw %d requests, want 0", got)
	}
	tr := newTestRegistry(t)
	tr.push(t, "bootpilot/disk:v1", layer(data, ""))
	c := MustCache(t, images.WithOrigins(tr.host))
	var be *images.BlockedAddressError
	if _, err := c.Fetch(ctx, tr.host+"/bootpilot/disk:v1", ""); !errors.As(err, &be) {
		t.Errorf("OCI Fetch from a loopback registry without allow-private = %v, want a BlockedAddressError", err)
	}
}

func TestBlockedReason(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1":        "loopback",
		"::1":              "loopback",
		"10.1.2.3":         "private",
		"172.16.0.1":       "private",
		"192.168.1.1":      "private",
		"fd00::1":          "private",
		"169.254.169.254":  "link-local",
		"fe80::1":          "link-local",
		"0.0.0.0":          "unspecified",
		"::":               "unspecified",
		"239.1.2.3":        "multicast",
		"224.0.0.1":        "link-local",
		"ff05::1":          "multicast",
		"100.64.0.1":       "carrier-grade NAT",
		"::ffff:10.0.0.1":  "private",
		"::ffff:127.0.0.1": "loopback",
		"64:ff9b::a00:1":   "private",
		"2002:a00:1::1":    "private",
		"255.255.255.255":  "reserved",
		"8.8.8.8":          "",
		"2001:4860::8888":  "",
		"100.128.0.1":      "",
	} {
		if got := images.BlockedReason(netip.MustParseAddr(addr)); got != want {
			t.Errorf("BlockedReason(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestFetchRedirect(t *testing.T) {
	data := MustRandom(t, 1000)
	target, n := counting(t, data)
	plainN := atomic.Int32{}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainN.Add(1)
		w.Write(data)
	}))
	defer plain.Close()
	to := target.URL
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, to+"/disk.raw", http.StatusFound)
	}))
	defer front.Close()
	ctx := context.Background()

	c := MustCache(t, tlsOrigin(front)...)
	_, err := c.Fetch(ctx, front.URL+"/disk.raw", hexOf(data))
	if err == nil || !strings.Contains(err.Error(), "not an allowed image origin") {
		t.Errorf("redirect to an origin not on the list: err = %v, want a refusal", err)
	}
	if got := n.Load(); got != 0 {
		t.Errorf("redirect target saw %d requests, want 0", got)
	}
	assertEmpty(t, c)

	// Both on the list, but the redirect leaves https.
	to = plain.URL
	c = MustCache(t, append(tlsOrigin(front), images.WithOrigins(plain.URL))...)
	if _, err := c.Fetch(ctx, front.URL+"/disk.raw", hexOf(data)); err == nil || !strings.Contains(err.Error(), "leaves https") {
		t.Errorf("redirect from https to http: err = %v, want a refusal", err)
	}
	if got := plainN.Load(); got != 0 {
		t.Errorf("http redirect target saw %d requests, want 0", got)
	}

	// Both on the list: followed.
	to = target.URL
	pool := tlsOrigin(front)[0] // httptest servers share one certificate
	c = MustCache(t, pool, images.WithOrigins(front.URL, target.URL), images.WithAllowPrivate(true))
	e, err := c.Fetch(ctx, front.URL+"/disk.raw", hexOf(data))
	if err != nil {
		t.Fatalf("redirect between allowed origins: %v", err)
	}
	assertBlob(t, c, e, data)
}

func TestFetchMaxSize(t *testing.T) {
	data := MustRandom(t, 64<<10)
	var chunked atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if chunked.Load() {
			w.(http.Flusher).Flush() // no Content-Length: the cap must hold while streaming
			for i := 0; i < len(data); i += 4096 {
				w.Write(data[i : i+4096])
			}
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, ch := range []bool{false, true} {
		chunked.Store(ch)
		c := MustCache(t, append(tlsOrigin(srv), images.WithMaxSize(int64(len(data)-1)))...)
		_, err := c.Fetch(ctx, srv.URL+"/disk.raw", hexOf(data))
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != "size" || !strings.Contains(err.Error(), "--image-max-size") {
			t.Errorf("chunked=%v: Fetch of a blob over the cap: err = %v, want a ValidationError on size naming --image-max-size", ch, err)
		}
		assertEmpty(t, c)
		c = MustCache(t, append(tlsOrigin(srv), images.WithMaxSize(int64(len(data))))...)
		if _, err := c.Fetch(ctx, srv.URL+"/disk.raw", hexOf(data)); err != nil {
			t.Errorf("chunked=%v: Fetch of a blob at the cap: %v", ch, err)
		}
	}

	tr := newTestRegistry(t)
	tr.push(t, "bootpilot/big:1", layer(data, ""))
	c := MustCache(t, append(tr.opts(), images.WithMaxSize(1000))...)
	before := tr.blobGets.Load()
	var ve *host.ValidationError
	if _, err := c.Fetch(ctx, tr.host+"/bootpilot/big:1", ""); !errors.As(err, &ve) || ve.Field != "size" {
		t.Errorf("OCI Fetch over the cap: err = %v, want a ValidationError on size", err)
	}
	if got := tr.blobGets.Load() - before; got != 0 {
		t.Errorf("blob downloads = %d, want 0 (the manifest says it is too large)", got)
	}
	assertEmpty(t, c)

	p := MustFile(t, t.TempDir(), "big", data)
	c = MustCache(t, images.WithImportDirs(filepath.Dir(p)), images.WithMaxSize(1000))
	if _, err := c.Fetch(ctx, p, hexOf(data)); !errors.As(err, &ve) || ve.Field != "size" {
		t.Errorf("file Fetch over the cap: err = %v, want a ValidationError on size", err)
	}
	assertEmpty(t, c)
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:secret@m.example/d.raw?X-Amz-Signature=abc#f": "https://m.example/d.raw",
		"https://m.example/d.raw":                                   "https://m.example/d.raw",
		"http://tok@m.example:8080/a@b/c":                           "http://m.example:8080/a@b/c",
		"https://user:pa/ss@m.example/x":                            "https://m.example/x",
		"oci://u:p@reg.example/repo:tag#vmlinuz":                    "oci://reg.example/repo:tag#vmlinuz",
		"reg.example/repo@sha256:" + strings.Repeat("a", 64):        "reg.example/repo@sha256:" + strings.Repeat("a", 64),
		"reg.example/repo:tag#initrd":                               "reg.example/repo:tag#initrd",
		"/srv/images/disk.raw":                                      "/srv/images/disk.raw",
		"file:///srv/images/disk.raw?x=1":                           "file:///srv/images/disk.raw",
	} {
		if got := images.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	msg := `Get "https://u:secret@s3.example/b?X-Amz-Signature=sig": EOF; then https://x/y?token=t`
	if got, want := images.RedactText(msg), `Get "https://s3.example/b": EOF; then https://x/y`; got != want {
		t.Errorf("RedactText = %q, want %q", got, want)
	}
}

// TestFetchSecretsNotLogged: credentials and signed query strings of a
// source reach neither the log nor an error, on success, on failure and
// through a redirect to a signed URL.
func TestFetchSecretsNotLogged(t *testing.T) {
	data := MustRandom(t, 1000)
	var fail atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/redirect":
			http.Redirect(w, r, "https://user:topsecret@blocked.example/b?X-Amz-Signature=sigsecret", http.StatusFound)
		case fail.Load():
			http.Error(w, "denied", http.StatusForbidden)
		default:
			w.Write(data)
		}
	}))
	defer srv.Close()
	var logs bytes.Buffer
	c := MustCache(t, append(tlsOrigin(srv), images.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))...)
	u := strings.Replace(srv.URL, "https://", "https://user:topsecret@", 1) + "/disk.raw?X-Amz-Signature=sigsecret&X-Amz-Credential=credsecret"
	var errs []string
	if _, err := c.Fetch(context.Background(), u, hexOf(data)); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	fail.Store(true)
	for _, ref := range []string{u, strings.Replace(u, "disk.raw", "other", 1), strings.Replace(u, "disk.raw", "redirect", 1)} {
		_, err := c.Fetch(context.Background(), ref, hexOf([]byte("other")))
		if err == nil {
			t.Fatalf("Fetch(%s) succeeded, want an error", ref)
		}
		errs = append(errs, err.Error())
	}
	fail.Store(false)
	_, err := c.Fetch(context.Background(), strings.Replace(u, "disk.raw", "mismatch", 1), hexOf([]byte("other")))
	var dm *images.DigestMismatchError
	if !errors.As(err, &dm) {
		t.Fatalf("mismatch: err = %v, want a DigestMismatchError", err)
	}
	errs = append(errs, err.Error(), dm.Error())
	all := logs.String() + strings.Join(errs, "\n")
	for _, s := range []string{"topsecret", "sigsecret", "credsecret", "X-Amz"} {
		if strings.Contains(all, s) {
			t.Errorf("%q appears in the logs or errors:\n%s", s, all)
		}
	}
	if !strings.Contains(logs.String(), "image fetched") {
		t.Errorf("no fetch logged:\n%s", logs.String())
	}
}

func TestPut(t *testing.T) {
	data := MustRandom(t, 10000)
	ctx := context.Background()
	c := MustCache(t, images.WithMaxSize(int64(len(data))))
	for _, size := range []int64{int64(len(data)), -1} {
		e, err := c.Put(ctx, bytes.NewReader(data), size)
		if err != nil {
			t.Fatalf("Put(size %d): %v", size, err)
		}
		assertBlob(t, c, e, data)
	}
	big := append(data, 'x')
	var ve *host.ValidationError
	c = MustCache(t, images.WithMaxSize(int64(len(data))))
	for _, size := range []int64{int64(len(big)), -1} {
		if _, err := c.Put(ctx, bytes.NewReader(big), size); !errors.As(err, &ve) || ve.Field != "size" {
			t.Errorf("Put over the cap (size %d): err = %v, want a ValidationError on size", size, err)
		}
	}
	if _, err := c.Put(ctx, bytes.NewReader(data[:10]), int64(len(data))); !errors.As(err, &ve) || ve.Field != "body" {
		t.Errorf("Put of a short body: err = %v, want a ValidationError on body", err)
	}
	if _, err := c.Put(ctx, &failing{}, -1); !errors.As(err, &ve) || ve.Field != "body" {
		t.Errorf("Put of a failing body: err = %v, want a ValidationError on body", err)
	}
	assertEmpty(t, c)
}

type failing struct{ n int }

func (f *failing) Read(p []byte) (int, error) {
	if f.n++; f.n > 2 {
		return 0, errors.New("connection reset")
	}
	return copy(p, "some bytes"), nil
}
