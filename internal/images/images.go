// Package images keeps the blobs that bootpilot serves to booting hosts —
// disk images, the agent kernel and its initramfs — in a content-addressed
// cache on local disk, and serves them over HTTP.
//
// A blob enters the cache only through Fetch (from an HTTPS URL, a file in an
// import directory or an OCI artifact in a registry), Put (an upload) or
// Import (a local file named by the program, never by a request). Every byte
// is hashed while it streams into a temporary file; only when the SHA-256
// matches the expected digest is the file fsynced and renamed to
// Dir/sha256/<hex>, so a half-downloaded or mismatching blob is never
// visible. Concurrent fetches of one digest (or one reference) download once.
//
// Sources are hostile input. Fetch reads local files only below ImportDirs,
// remote ones only from Origins (each request and redirect is checked), and
// connects only to public addresses unless AllowPrivate is set — checked on
// the address actually dialled, after DNS. No blob exceeds MaxSize. A
// digest mismatch never tells the actual digest of the content, and refs
// in logs and errors go through Redact.
//
// Handler serves cached blobs by digest with Range, ETag, If-None-Match,
// If-Range and HEAD support, which is what the agent uses to stream an image
// to disk and to resume after a network error.
package images

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Cache keeps verified image blobs under Dir by digest: Dir/sha256/<hex>.
// It is safe for concurrent use; concurrent fetches of one digest download
// once, and writes go to a temporary file that is fsynced and renamed, so a
// half-downloaded or mismatching blob is never visible.
//
// The policy fields (Origins, AllowPrivate, ImportDirs, MaxSize, RootCAs)
// are read once, on first use; change them before that.
type Cache struct {
	// Dir is the cache root, e.g. "/var/lib/bootpilot/images".
	Dir string
	// Log receives one line per download; New sets a discarding logger.
	Log *slog.Logger
	// Keychain resolves OCI registry credentials; New sets anonymous access.
	Keychain authn.Keychain
	// Origins are where remote sources may come from:
	// "https://mirror.example.com", "http://10.0.0.9:8080" or a registry
	// "registry.example.com[:5000]" (https, or http where the OCI client
	// uses it). Every request, redirects and registry token services
	// included, must go to one of them. Empty: no remote sources.
	Origins []string
	// AllowPrivate lets fetches connect to loopback, private, link-local,
	// CGNAT, ULA and other non-public addresses.
	AllowPrivate bool
	// ImportDirs are the directories whose regular files Fetch imports by
	// path ("/abs/path" or "file:///abs/path"). Empty: no local paths.
	ImportDirs []string
	// MaxSize caps a blob in bytes; 0 means DefaultMaxSize.
	MaxSize int64
	// RootCAs verifies https sources and registries; nil: the system roots.
	RootCAs *x509.CertPool

	once       sync.Once
	setupErr   error
	origins    []origin
	importDirs []importDir
	http       *http.Client
	transport  http.RoundTripper // guarded: origins per request, addresses per dial
	mu         sync.Mutex
	inflight   map[string]*call
	resolved   map[string]string // immutable OCI reference (by digest) → layer hex
}

// DefaultMaxSize is the size cap of a blob when Cache.MaxSize is 0.
const DefaultMaxSize int64 = 64 << 30

// Dial and connection timeouts of remote fetches.
const (
	dialTimeout = 10 * time.Second
	keepAlive   = 30 * time.Second
)

// Option configures a Cache built by New.
type Option func(*Cache)

// WithOrigins adds origins remote sources may come from (see Cache.Origins).
func WithOrigins(origins ...string) Option {
	return func(x *Cache) { x.Origins = append(x.Origins, origins...) }
}

// WithAllowPrivate sets whether fetches may connect to non-public addresses.
func WithAllowPrivate(allow bool) Option { return func(x *Cache) { x.AllowPrivate = allow } }

// WithImportDirs adds directories whose files Fetch imports by path.
func WithImportDirs(dirs ...string) Option {
	return func(x *Cache) { x.ImportDirs = append(x.ImportDirs, dirs...) }
}

// WithMaxSize sets the size cap of a blob in bytes.
func WithMaxSize(n int64) Option { return func(x *Cache) { x.MaxSize = n } }

// WithRootCAs sets the roots that verify https sources and registries.
func WithRootCAs(p *x509.CertPool) Option { return func(x *Cache) { x.RootCAs = p } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(x *Cache) { x.Log = l } }

// WithKeychain sets how credentials for OCI registries are found, e.g.
// authn.DefaultKeychain to read the Docker config file.
func WithKeychain(k authn.Keychain) Option { return func(x *Cache) { x.Keychain = k } }

// Entry is a cached, verified blob.
type Entry struct {
	// Digest is "sha256:<hex>".
	Digest string
	// Size is the blob's length in bytes.
	Size int64
	// Path is the blob's file in the cache; treat it as read-only.
	Path string
}

// Hex returns the hex part of e.Digest.
func (e Entry) Hex() string { return e.Digest[len("sha256:"):] }

// New creates the cache directory (mode 0750) if needed, removes temporary
// files left by an earlier crash, and returns a Cache. An invalid origin,
// import directory or size cap is an error.
func New(dir string, opts ...Option) (*Cache, error) {
	if dir == "" {
		return nil, host.Invalid("dir", "must not be empty")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("images: cache dir %s: %w", dir, err)
	}
	c := &Cache{Dir: abs}
	for _, o := range opts {
		o(c)
	}
	if err := c.setup(); err != nil {
		return nil, err
	}
	left, err := os.ReadDir(c.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("images: read %s: %w", c.tmpDir(), err)
	}
	for _, f := range left {
		_ = os.Remove(filepath.Join(c.tmpDir(), f.Name()))
	}
	return c, nil
}

// setup fills in defaults and creates the directories, once; it lets a
// Cache built as a struct literal work too.
func (c *Cache) setup() error {
	c.once.Do(func() { c.setupErr = c.init() })
	return c.setupErr
}

func (c *Cache) init() error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Keychain == nil {
		c.Keychain = anonymous{}
	}
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.MaxSize < 0 {
		return host.Invalid("max-size", "must not be negative")
	}
	if c.Dir == "" {
		return host.Invalid("dir", "must not be empty")
	}
	var err error
	if c.origins, err = parseOrigins(c.Origins); err != nil {
		return err
	}
	for _, d := range []string{c.blobDir(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("images: create %s: %w", d, err)
		}
	}
	if c.importDirs, err = resolveImportDirs(c.ImportDirs, c.Dir); err != nil {
		return err
	}
	c.transport = guardedTransport{c: c, base: c.baseTransport()}
	c.http = &http.Client{Transport: c.transport, CheckRedirect: c.checkRedirect}
	return nil
}

// anonymous is a keychain that never has credentials.
type anonymous struct{}

func (anonymous) Resolve(authn.Resource) (authn.Authenticator, error) { return authn.Anonymous, nil }

// baseTransport bounds connecting and waiting for headers, never the body:
// a multi-GiB image may take long to stream. It uses no proxy: the
// address check must see the destination, not a proxy.
func (c *Cache) baseTransport() *http.Transport {
	return &http.Transport{
		DialContext:           c.dialer().DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
}

func (c *Cache) blobDir() string { return filepath.Join(c.Dir, "sha256") }
func (c *Cache) tmpDir() string  { return filepath.Join(c.Dir, "tmp") }

// validHex reports whether s is a lower-case hex SHA-256.
func validHex(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if (ch < '0' || ch > '9') && (ch < 'a' || ch > 'f') {
			return false
		}
	}
	return true
}

// Lookup returns the cached entry for hexDigest without fetching. It returns
// a *host.ValidationError for a malformed digest and host.ErrNotFound if the
// blob is not cached.
func (c *Cache) Lookup(hexDigest string) (Entry, error) {
	if !validHex(hexDigest) {
		return Entry{}, host.Invalid("digest", "want 64 lower-case hex characters")
	}
	p := filepath.Join(c.blobDir(), hexDigest)
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return Entry{}, fmt.Errorf("images: blob %s: %w", hexDigest, host.ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("images: stat blob %s: %w", hexDigest, err)
	}
	return Entry{Digest: "sha256:" + hexDigest, Size: fi.Size(), Path: p}, nil
}

// Import copies the local file at path into the cache under its own SHA-256
// and returns its entry. path is trusted: it must come from the program or
// its operator, never from a request (requests name local files through
// Fetch, which reads only below ImportDirs).
func (c *Cache) Import(ctx context.Context, path string) (Entry, error) {
	if err := c.setup(); err != nil {
		return Entry{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, fmt.Errorf("images: import: %w", err)
	}
	defer f.Close()
	e, err := c.store(ctx, f, -1, "")
	if err != nil {
		return Entry{}, fmt.Errorf("images: import %s: %w", path, err)
	}
	c.Log.Info("image imported", "path", path, "digest", e.Digest, "size", e.Size)
	return e, nil
}

// Put streams r (an upload: the caller has the bytes) straight into the
// cache under its own SHA-256 and returns its entry. size is the announced
// length, or -1; a longer announcement than MaxSize is refused before
// reading, a longer stream when it passes MaxSize, and a stream that ends
// early or fails gives a *host.ValidationError on "body". Nothing is
// cached unless the whole stream arrived.
func (c *Cache) Put(ctx context.Context, r io.Reader, size int64) (Entry, error) {
	if err := c.setup(); err != nil {
		return Entry{}, err
	}
	e, err := c.store(ctx, r, size, "")
	var re *readError
	switch {
	case errors.As(err, &re):
		return Entry{}, host.Invalid("body", "upload interrupted: %v", re.err)
	case errors.Is(err, errShort):
		return Entry{}, host.Invalid("body", "%v", err)
	case err != nil:
		return Entry{}, fmt.Errorf("images: put: %w", err)
	}
	return e, nil
}

// DigestMismatchError reports a source whose content does not have the
// expected SHA-256. It never carries the actual digest: whoever named the
// source must not learn the digest of content they did not supply.
type DigestMismatchError struct {
	Ref  string // the source, redacted ("https://mirror.example.com/disk.raw")
	Want string // hex
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("digest mismatch: the content at %s does not have sha256:%s", e.Ref, e.Want)
}

// errMismatch is what store returns for a wrong digest; Fetch turns it into
// a *DigestMismatchError naming the caller's source.
var errMismatch = errors.New("digest mismatch")

// errShort is a stream shorter or longer than announced.
var errShort = errors.New("size mismatch")

// readError is a failure to read the source (as opposed to the cache).
type readError struct{ err error }

func (e *readError) Error() string { return "read: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// tooLarge is the error for a blob over the cap.
func (c *Cache) tooLarge() error {
	return host.Invalid("size", "the blob is larger than this server's image size limit of %d bytes (serve --image-max-size)", c.MaxSize)
}

// store streams r into a temporary file while hashing it, checks the size
// (if size >= 0), the cap (MaxSize, while streaming) and the digest (if want
// != ""), then fsyncs and renames it into place. On any error the temporary
// file is removed. A wrong digest is errMismatch.
func (c *Cache) store(ctx context.Context, r io.Reader, size int64, want string) (Entry, error) {
	if size > c.MaxSize {
		return Entry{}, c.tooLarge()
	}
	tmp, err := os.CreateTemp(c.tmpDir(), "blob-*")
	if err != nil {
		return Entry{}, fmt.Errorf("create temp file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := copyCtx(ctx, io.MultiWriter(tmp, h), io.LimitReader(r, c.MaxSize+1))
	if err != nil {
		return Entry{}, err
	}
	if n > c.MaxSize {
		return Entry{}, c.tooLarge()
	}
	if size >= 0 && n != size {
		return Entry{}, fmt.Errorf("%w: want %d bytes, got %d", errShort, size, n)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return Entry{}, errMismatch
	}
	if err := tmp.Chmod(0o440); err != nil {
		return Entry{}, fmt.Errorf("chmod temp file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Entry{}, fmt.Errorf("fsync temp file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Entry{}, fmt.Errorf("close temp file: %w", err)
	}
	final := filepath.Join(c.blobDir(), got)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return Entry{}, fmt.Errorf("rename into cache: %w", err)
	}
	ok = true
	if d, err := os.Open(c.blobDir()); err == nil {
		_ = d.Sync() // make the rename durable
		d.Close()
	}
	return Entry{Digest: "sha256:" + got, Size: n, Path: final}, nil
}

// copyCtx is io.Copy with a 1 MiB buffer that stops when ctx is done.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			w, werr := dst.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				return n, fmt.Errorf("write: %w", werr)
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, &readError{rerr}
		}
	}
}

// hashFile returns the hex SHA-256 of a file (used by tests through Verify).
func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Verify re-hashes the cached blob hexDigest and returns a
// *DigestMismatchError (Ref: the blob's path) if the file on disk was
// altered, or host.ErrNotFound if it is not cached.
func (c *Cache) Verify(hexDigest string) error {
	e, err := c.Lookup(hexDigest)
	if err != nil {
		return err
	}
	got, err := hashFile(e.Path)
	if err != nil {
		return fmt.Errorf("images: verify %s: %w", hexDigest, err)
	}
	if got != hexDigest {
		return fmt.Errorf("images: verify: %w", &DigestMismatchError{Ref: e.Path, Want: hexDigest})
	}
	return nil
}
