// Package images keeps the blobs that bootpilot serves to booting hosts —
// disk images, the agent kernel and its initramfs — in a content-addressed
// cache on local disk, and serves them over HTTP.
//
// A blob enters the cache only through Fetch (from an HTTPS URL, a local file
// or an OCI artifact in a registry) or Import (a local file). Every byte is
// hashed while it streams into a temporary file; only when the SHA-256 matches
// the expected digest is the file fsynced and renamed to Dir/sha256/<hex>, so
// a half-downloaded or mismatching blob is never visible. Concurrent fetches
// of one digest (or one reference) download once.
//
// Handler serves cached blobs by digest with Range, ETag, If-None-Match,
// If-Range and HEAD support, which is what the agent uses to stream an image
// to disk and to resume after a network error.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
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
type Cache struct {
	// Dir is the cache root, e.g. "/var/lib/bootpilot/images".
	Dir string
	// HTTP is the client for https and http sources; its Transport is also
	// used to reach OCI registries. New sets a default with timeouts.
	HTTP *http.Client
	// Log receives one line per download; New sets a discarding logger.
	Log *slog.Logger
	// Keychain resolves OCI registry credentials; New sets anonymous access.
	Keychain authn.Keychain

	once     sync.Once
	setupErr error
	mu       sync.Mutex
	inflight map[string]*call
	resolved map[string]string // immutable OCI reference (by digest) → layer hex
}

// Option configures a Cache built by New.
type Option func(*Cache)

// WithHTTPClient sets the client used for URL sources and, through its
// Transport, for OCI registries.
func WithHTTPClient(c *http.Client) Option { return func(x *Cache) { x.HTTP = c } }

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
// files left by an earlier crash, and returns a Cache.
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
	c.once.Do(func() {
		if c.HTTP == nil {
			c.HTTP = defaultClient()
		}
		if c.Log == nil {
			c.Log = slog.New(slog.DiscardHandler)
		}
		if c.Keychain == nil {
			c.Keychain = anonymous{}
		}
		if c.Dir == "" {
			c.setupErr = host.Invalid("dir", "must not be empty")
			return
		}
		for _, d := range []string{c.blobDir(), c.tmpDir()} {
			if err := os.MkdirAll(d, 0o750); err != nil {
				c.setupErr = fmt.Errorf("images: create %s: %w", d, err)
				return
			}
		}
	})
	return c.setupErr
}

// anonymous is a keychain that never has credentials.
type anonymous struct{}

func (anonymous) Resolve(authn.Resource) (authn.Authenticator, error) { return authn.Anonymous, nil }

// defaultClient bounds connecting and waiting for headers, never the body:
// a multi-GiB image may take long to stream.
func defaultClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}}
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
// and returns its entry.
func (c *Cache) Import(ctx context.Context, path string) (Entry, error) {
	if err := c.setup(); err != nil {
		return Entry{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, fmt.Errorf("images: import: %w", err)
	}
	defer f.Close()
	e, err := c.store(ctx, f, "", -1)
	if err != nil {
		return Entry{}, fmt.Errorf("images: import %s: %w", path, err)
	}
	c.Log.Info("image imported", "path", path, "digest", e.Digest, "size", e.Size)
	return e, nil
}

// DigestMismatchError reports a blob whose SHA-256 is not the expected one.
type DigestMismatchError struct {
	Want, Got string // hex
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("digest mismatch: want sha256:%s, got sha256:%s", e.Want, e.Got)
}

// store streams r into a temporary file while hashing it, checks the size
// (if size >= 0) and digest (if want != ""), then fsyncs and renames it into
// place. On any error the temporary file is removed.
func (c *Cache) store(ctx context.Context, r io.Reader, want string, size int64) (Entry, error) {
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
	n, err := copyCtx(ctx, io.MultiWriter(tmp, h), r)
	if err != nil {
		return Entry{}, err
	}
	if size >= 0 && n != size {
		return Entry{}, fmt.Errorf("size mismatch: want %d bytes, got %d", size, n)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return Entry{}, &DigestMismatchError{Want: want, Got: got}
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
			return n, fmt.Errorf("read: %w", rerr)
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
// *DigestMismatchError if the file on disk was altered, or host.ErrNotFound
// if it is not cached.
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
		return fmt.Errorf("images: verify: %w", &DigestMismatchError{Want: hexDigest, Got: got})
	}
	return nil
}
