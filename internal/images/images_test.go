package images_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

const diskType = types.MediaType("application/vnd.bootpilot.disk.v1.raw")

// MustRandom returns n random bytes.
func MustRandom(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func hexOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// MustCache returns a cache in a fresh temporary directory.
func MustCache(tb testing.TB, opts ...images.Option) *images.Cache {
	tb.Helper()
	c, err := images.New(tb.TempDir(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// tlsOrigin returns the options that let a cache fetch from srv (a
// loopback httptest TLS server): its CA, its origin, and private
// addresses (tests run on 127.0.0.1).
func tlsOrigin(srv *httptest.Server) []images.Option {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return []images.Option{images.WithRootCAs(pool), images.WithOrigins(srv.URL), images.WithAllowPrivate(true)}
}

// files lists every file below the cache directory (blobs and temporaries).
func files(tb testing.TB, c *images.Cache) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(c.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, c.Dir))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func assertEmpty(tb testing.TB, c *images.Cache) {
	tb.Helper()
	if f := files(tb, c); len(f) != 0 {
		tb.Errorf("cache holds %v after a failed fetch, want nothing", f)
	}
}

func assertBlob(tb testing.TB, c *images.Cache, e images.Entry, data []byte) {
	tb.Helper()
	want := hexOf(data)
	if e.Digest != "sha256:"+want || e.Size != int64(len(data)) {
		tb.Errorf("entry = %+v, want digest sha256:%s size %d", e, want, len(data))
	}
	if e.Path != filepath.Join(c.Dir, "sha256", want) {
		tb.Errorf("entry path = %s, want %s", e.Path, filepath.Join(c.Dir, "sha256", want))
	}
	got, err := os.ReadFile(e.Path)
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		tb.Errorf("cached blob differs from the source (%d bytes, want %d)", len(got), len(data))
	}
	l, err := c.Lookup(want)
	if err != nil || l != e {
		tb.Errorf("Lookup(%s) = %+v, %v; want %+v", want, l, err, e)
	}
}

func TestFetchHTTPS(t *testing.T) {
	data := MustRandom(t, 3<<20+17)
	var fail atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		if r.URL.Path != "/img/disk.raw.zst" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	u := srv.URL + "/img/disk.raw.zst"
	ctx := context.Background()

	t.Run("right digest", func(t *testing.T) {
		c := MustCache(t, tlsOrigin(srv)...)
		e, err := c.Fetch(ctx, u, "sha256:"+hexOf(data))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		assertBlob(t, c, e, data)
		if f := files(t, c); len(f) != 1 {
			t.Errorf("cache files = %v, want only the blob", f)
		}
	})
	t.Run("wrong digest", func(t *testing.T) {
		c := MustCache(t, tlsOrigin(srv)...)
		_, err := c.Fetch(ctx, u, hexOf([]byte("other")))
		var dm *images.DigestMismatchError
		if !errors.As(err, &dm) || dm.Want != hexOf([]byte("other")) {
			t.Fatalf("Fetch with a wrong digest: err = %v, want a DigestMismatchError", err)
		}
		want := "digest mismatch: the content at " + u + " does not have sha256:" + hexOf([]byte("other"))
		if dm.Error() != want {
			t.Errorf("mismatch message = %q, want %q", dm.Error(), want)
		}
		if strings.Contains(err.Error(), hexOf(data)) {
			t.Errorf("Fetch error %q tells the actual digest of content the caller did not supply", err)
		}
		assertEmpty(t, c)
	})
	t.Run("server 500", func(t *testing.T) {
		fail.Store(true)
		defer fail.Store(false)
		c := MustCache(t, tlsOrigin(srv)...)
		if _, err := c.Fetch(ctx, u, hexOf(data)); err == nil || !strings.Contains(err.Error(), "500") {
			t.Errorf("Fetch from a failing server: err = %v, want one naming 500", err)
		}
		assertEmpty(t, c)
	})
	t.Run("404", func(t *testing.T) {
		c := MustCache(t, tlsOrigin(srv)...)
		if _, err := c.Fetch(ctx, srv.URL+"/nope", hexOf(data)); err == nil {
			t.Error("Fetch of a missing URL succeeded")
		}
		assertEmpty(t, c)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		c := MustCache(t, images.WithOrigins(srv.URL), images.WithAllowPrivate(true)) // the test CA is unknown
		if _, err := c.Fetch(ctx, u, hexOf(data)); err == nil {
			t.Error("Fetch from a server with an unknown CA succeeded")
		}
		assertEmpty(t, c)
	})
	t.Run("digest required", func(t *testing.T) {
		c := MustCache(t, tlsOrigin(srv)...)
		_, err := c.Fetch(ctx, u, "")
		var ve *host.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("Fetch without a digest: err = %v, want a ValidationError", err)
		}
	})
	t.Run("cached needs no network", func(t *testing.T) {
		c := MustCache(t, tlsOrigin(srv)...)
		if _, err := c.Fetch(ctx, u, hexOf(data)); err != nil {
			t.Fatal(err)
		}
		fail.Store(true)
		defer fail.Store(false)
		e, err := c.Fetch(ctx, u, hexOf(data))
		if err != nil {
			t.Fatalf("second Fetch with the server failing: %v", err)
		}
		assertBlob(t, c, e, data)
	})
}

func TestFetchCredentialsNotInError(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	c := MustCache(t, tlsOrigin(srv)...)
	u := strings.Replace(srv.URL, "https://", "https://user:s3cret@", 1) + "/x?token=s3cret"
	_, err := c.Fetch(context.Background(), u, hexOf([]byte("x")))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Fetch error = %v, want an error without the secret", err)
	}
}

func TestFetchFile(t *testing.T) {
	data := MustRandom(t, 1<<20+3)
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ref := range []string{p, "file://" + p} {
		c := MustCache(t, images.WithImportDirs(dir))
		e, err := c.Fetch(ctx, ref, hexOf(data))
		if err != nil {
			t.Fatalf("Fetch(%s): %v", ref, err)
		}
		assertBlob(t, c, e, data)
	}
	c := MustCache(t, images.WithImportDirs(dir))
	if _, err := c.Fetch(ctx, p, hexOf([]byte("no"))); err == nil {
		t.Error("Fetch of a file with a wrong digest succeeded")
	}
	assertEmpty(t, c)
	for _, ref := range []string{"relative/disk.raw", "file://otherhost/x", "ftp://x/y"} {
		_, err := c.Fetch(ctx, ref, hexOf(data))
		var ve *host.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("Fetch(%q): err = %v, want a ValidationError", ref, err)
		}
	}
	if _, err := c.Fetch(ctx, filepath.Dir(p), hexOf(data)); err == nil {
		t.Error("Fetch of a directory succeeded")
	}
	if _, err := c.Fetch(ctx, p+".missing", hexOf(data)); err == nil {
		t.Error("Fetch of a missing file succeeded")
	}
	assertEmpty(t, c)
}

func TestImportAndLookup(t *testing.T) {
	data := MustRandom(t, 12345)
	p := filepath.Join(t.TempDir(), "kernel")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := MustCache(t)
	e, err := c.Import(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	assertBlob(t, c, e, data)
	if err := c.Verify(e.Hex()); err != nil {
		t.Errorf("Verify(%s) = %v", e.Hex(), err)
	}
	// Importing again keeps one blob.
	if _, err := c.Import(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if f := files(t, c); len(f) != 1 {
		t.Errorf("cache files after two imports = %v, want one", f)
	}
	if _, err := c.Lookup(hexOf([]byte("absent"))); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("Lookup(absent) err = %v, want ErrNotFound", err)
	}
	var ve *host.ValidationError
	if _, err := c.Lookup("../../etc/passwd"); !errors.As(err, &ve) {
		t.Errorf("Lookup(bad) err = %v, want a ValidationError", err)
	}
	// A blob changed on disk is caught by Verify.
	if err := os.Chmod(e.Path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.Path, []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	var dm *images.DigestMismatchError
	if err := c.Verify(e.Hex()); !errors.As(err, &dm) {
		t.Errorf("Verify of a tampered blob = %v, want a DigestMismatchError", err)
	}
}

func TestNewRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	if _, err := images.New(dir); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(dir, "tmp", "blob-123")
	if err := os.WriteFile(left, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := images.New(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("leftover temporary file still there after New (stat err %v)", err)
	}
}

func TestFetchConcurrentDownloadsOnce(t *testing.T) {
	data := MustRandom(t, 2<<20)
	var requests atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-release // hold the download until every caller is waiting
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	c := MustCache(t, tlsOrigin(srv)...)
	const n = 16
	var started, done sync.WaitGroup
	errs := make([]error, n)
	ents := make([]images.Entry, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			ents[i], errs[i] = c.Fetch(context.Background(), srv.URL+"/disk.raw", hexOf(data))
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // let the callers reach Fetch; the result holds either way
	close(release)
	done.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Fetch #%d: %v", i, errs[i])
		}
		assertBlob(t, c, ents[i], data)
	}
	if got := requests.Load(); got != 1 {
		t.Errorf("server saw %d requests for %d concurrent fetches, want 1", got, n)
	}
}

func TestFetchCancelled(t *testing.T) {
	data := MustRandom(t, 1<<20)
	release := make(chan struct{})
	var requests atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	defer close(release)
	c := MustCache(t, tlsOrigin(srv)...)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for requests.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := c.Fetch(ctx, srv.URL+"/d", hexOf(data)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Fetch err = %v, want context.Canceled", err)
	}
	// The abandoned download was cancelled; a new Fetch starts afresh.
	e, err := c.Fetch(context.Background(), srv.URL+"/d", hexOf(data))
	if err != nil {
		t.Fatalf("Fetch after a cancelled one: %v", err)
	}
	assertBlob(t, c, e, data)
}

// testRegistry is go-containerregistry's in-memory registry on loopback that
// counts blob downloads and can serve wrong bytes for one blob.
type testRegistry struct {
	srv       *httptest.Server
	host      string
	blobGets  atomic.Int32
	tamper    atomic.Value // string: digest whose bytes are flipped
	holdBlobs atomic.Pointer[chan struct{}]
}

func newTestRegistry(tb testing.TB) *testRegistry {
	tb.Helper()
	tr := &testRegistry{}
	tr.tamper.Store("")
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.blobGets.Add(1)
			if h := tr.holdBlobs.Load(); h != nil {
				<-*h
			}
			if d := tr.tamper.Load().(string); d != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				rec := httptest.NewRecorder()
				reg.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 0 {
					body[len(body)/2] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	tb.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

// opts lets a cache pull from the registry (a registry host origin, on
// loopback).
func (tr *testRegistry) opts() []images.Option {
	return []images.Option{images.WithOrigins(tr.host), images.WithAllowPrivate(true)}
}

// push writes an OCI artifact with the given layers to repo:tag and returns
// the manifest digest.
func (tr *testRegistry) push(tb testing.TB, repoTag string, layers ...mutate.Addendum) v1.Hash {
	tb.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType("application/vnd.oci.empty.v1+json"))
	img, err := mutate.Append(img, layers...)
	if err != nil {
		tb.Fatal(err)
	}
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		tb.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func layer(data []byte, title string) mutate.Addendum {
	a := mutate.Addendum{Layer: static.NewLayer(data, diskType)}
	if title != "" {
		a.Annotations = map[string]string{images.TitleAnnotation: title}
	}
	return a
}

func TestFetchOCI(t *testing.T) {
	tr := newTestRegistry(t)
	data := MustRandom(t, 4<<20+5)
	md := tr.push(t, "bootpilot/disk:v1", layer(data, ""))
	byDigest := tr.host + "/bootpilot/disk@" + md.String()
	byTag := tr.host + "/bootpilot/disk:v1"
	ctx := context.Background()

	for _, tc := range []struct{ name, ref, want string }{
		{"digest", byDigest, ""},
		{"digest oci prefix", "oci://" + byDigest, ""},
		{"tag", byTag, ""},
		{"tag with layer digest", byTag, hexOf(data)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := MustCache(t, tr.opts()...)
			before := tr.blobGets.Load()
			e, err := c.Fetch(ctx, tc.ref, tc.want)
			if err != nil {
				t.Fatalf("Fetch(%s): %v", tc.ref, err)
			}
			assertBlob(t, c, e, data)
			if got := tr.blobGets.Load() - before; got != 1 {
				t.Errorf("blob downloads = %d, want 1", got)
			}
		})
	}
	t.Run("wrong want", func(t *testing.T) {
		c := MustCache(t, tr.opts()...)
		before := tr.blobGets.Load()
		_, err := c.Fetch(ctx, byTag, hexOf([]byte("other")))
		var dm *images.DigestMismatchError
		if !errors.As(err, &dm) {
			t.Errorf("Fetch with a wrong want: err = %v, want DigestMismatchError", err)
		}
		if got := tr.blobGets.Load() - before; got != 0 {
			t.Errorf("blob downloads = %d, want 0 (the manifest already says it is wrong)", got)
		}
		assertEmpty(t, c)
	})
	t.Run("tampered blob", func(t *testing.T) {
		tr.tamper.Store("sha256:" + hexOf(data))
		defer tr.tamper.Store("")
		c := MustCache(t, tr.opts()...)
		if _, err := c.Fetch(ctx, byDigest, ""); err == nil {
			t.Fatal("Fetch of a tampered layer succeeded")
		} else {
			t.Logf("tampered layer: %v", err)
		}
		assertEmpty(t, c)
	})
	t.Run("unknown tag", func(t *testing.T) {
		c := MustCache(t, tr.opts()...)
		if _, err := c.Fetch(ctx, tr.host+"/bootpilot/disk:nope", ""); err == nil {
			t.Error("Fetch of an unknown tag succeeded")
		}
		assertEmpty(t, c)
	})
	t.Run("tag moves", func(t *testing.T) {
		c := MustCache(t, tr.opts()...)
		other := MustRandom(t, 1000)
		tr.push(t, "bootpilot/moving:latest", layer(data, ""))
		e1, err := c.Fetch(ctx, tr.host+"/bootpilot/moving:latest", "")
		if err != nil {
			t.Fatal(err)
		}
		assertBlob(t, c, e1, data)
		tr.push(t, "bootpilot/moving:latest", layer(other, ""))
		e2, err := c.Fetch(ctx, tr.host+"/bootpilot/moving:latest", "")
		if err != nil {
			t.Fatal(err)
		}
		assertBlob(t, c, e2, other)
	})
	t.Run("digest ref resolved once", func(t *testing.T) {
		c := MustCache(t, tr.opts()...)
		if _, err := c.Fetch(ctx, byDigest, ""); err != nil {
			t.Fatal(err)
		}
		before := tr.blobGets.Load()
		e, err := c.Fetch(ctx, byDigest, "")
		if err != nil {
			t.Fatal(err)
		}
		assertBlob(t, c, e, data)
		if got := tr.blobGets.Load() - before; got != 0 {
			t.Errorf("blob downloads for a cached digest ref = %d, want 0", got)
		}
	})
}

func TestFetchOCITitledLayers(t *testing.T) {
	tr := newTestRegistry(t)
	kernel, initrd := MustRandom(t, 3000), MustRandom(t, 5000)
	md := tr.push(t, "bootpilot/agent:1", layer(kernel, "vmlinuz"), layer(initrd, "initramfs.cpio.gz"))
	ref := tr.host + "/bootpilot/agent@" + md.String()
	ctx := context.Background()
	c := MustCache(t, tr.opts()...)
	for title, data := range map[string][]byte{"vmlinuz": kernel, "initramfs.cpio.gz": initrd} {
		e, err := c.Fetch(ctx, ref+"#"+title, "")
		if err != nil {
			t.Fatalf("Fetch(#%s): %v", title, err)
		}
		assertBlob(t, c, e, data)
	}
	var ve *host.ValidationError
	if _, err := c.Fetch(ctx, ref, ""); !errors.As(err, &ve) {
		t.Errorf("Fetch of a two-layer artifact without #title: err = %v, want a ValidationError", err)
	}
	if _, err := c.Fetch(ctx, ref+"#nope", ""); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("Fetch(#nope): err = %v, want ErrNotFound", err)
	}
}

func TestFetchOCIConcurrentDownloadsOnce(t *testing.T) {
	tr := newTestRegistry(t)
	data := MustRandom(t, 2<<20)
	tr.push(t, "bootpilot/disk:v1", layer(data, ""))
	hold := make(chan struct{})
	tr.holdBlobs.Store(&hold)
	c := MustCache(t, tr.opts()...)
	ref := tr.host + "/bootpilot/disk:v1"
	const n = 16
	var started, done sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			_, errs[i] = c.Fetch(context.Background(), ref, "")
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond)
	close(hold)
	done.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Fetch #%d: %v", i, err)
		}
	}
	if got := tr.blobGets.Load(); got != 1 {
		t.Errorf("registry saw %d blob downloads for %d concurrent fetches, want 1", got, n)
	}
}

func TestFetchTruncated(t *testing.T) {
	data := MustRandom(t, 1<<20)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:len(data)/2])
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}))
	defer srv.Close()
	c := MustCache(t, tlsOrigin(srv)...)
	if _, err := c.Fetch(context.Background(), srv.URL+"/d", hexOf(data)); err == nil {
		t.Error("Fetch of a truncated body succeeded")
	}
	assertEmpty(t, c)
}

func TestCacheLiteral(t *testing.T) {
	data := MustRandom(t, 4096)
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &images.Cache{Dir: filepath.Join(t.TempDir(), "cache"), ImportDirs: []string{filepath.Dir(p)}}
	e, err := c.Fetch(context.Background(), p, hexOf(data))
	if err != nil {
		t.Fatalf("Fetch on a struct-literal Cache: %v", err)
	}
	assertBlob(t, c, e, data)
}
