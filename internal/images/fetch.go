package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bootpilot/bootpilot/internal/host"
)

// TitleAnnotation is the layer annotation that a "#name" suffix of an OCI
// reference selects on (what `oras push` sets to the file name).
const TitleAnnotation = "org.opencontainers.image.title"

// Fetch resolves ref and makes sure its blob is in the cache, verifying the
// SHA-256 while it streams. The forms of ref are:
//
//   - "https://host/path/disk.raw.zst" or "http://…": want (hex SHA-256) is
//     required; a non-200 answer or a mismatch is an error and caches
//     nothing. The URL, and every redirect, must be on Origins.
//   - "file:///abs/path" or "/abs/path": a regular file below one of
//     ImportDirs (after resolving links); want is required. Without
//     ImportDirs no local path is accepted.
//   - "registry/repo@sha256:<manifest digest>" or "registry/repo:tag",
//     optionally prefixed "oci://" and suffixed "#name": an OCI artifact
//     from a registry on Origins. It must have exactly one layer, or "#name"
//     picks the layer whose org.opencontainers.image.title annotation is
//     name. The layer's digest is the entry's digest; if want is set it must
//     equal it. Tags resolve at fetch time.
//
// want may carry a "sha256:" prefix. A ref the policy refuses is refused
// first, even when want is cached; otherwise, if want is set and already
// cached, Fetch returns without any network access. Invalid or refused
// input gives a *host.ValidationError, a blob over MaxSize one on "size",
// and a wrong digest a *DigestMismatchError (wrapped) that does not tell
// the actual digest. Error messages carry refs only through Redact.
func (c *Cache) Fetch(ctx context.Context, ref, want string) (Entry, error) {
	if err := c.setup(); err != nil {
		return Entry{}, err
	}
	want = strings.ToLower(strings.TrimPrefix(want, "sha256:"))
	if want != "" && !validHex(want) {
		return Entry{}, host.Invalid("sha256", "want 64 hex characters")
	}
	src, err := c.source(ref)
	if err != nil {
		return Entry{}, err
	}
	if src.kind != kindOCI && want == "" {
		return Entry{}, host.Invalid("sha256", "required for URL and file sources")
	}
	if want != "" {
		if e, err := c.Lookup(want); err == nil {
			return e, nil
		}
	} else if e, ok := c.resolvedEntry(ref); ok {
		return e, nil
	}
	key := "ref:" + ref
	if want != "" {
		key = "sha256:" + want
	}
	e, err := c.do(ctx, key, func(ctx context.Context) (Entry, error) {
		if want != "" {
			if e, err := c.Lookup(want); err == nil {
				return e, nil // another flight stored it meanwhile
			}
		}
		switch src.kind {
		case kindURL:
			return c.fetchURL(ctx, src.url, want)
		case kindFile:
			return c.fetchFile(ctx, src.file, want)
		default:
			return c.fetchOCI(ctx, ref, want)
		}
	})
	if errors.Is(err, errMismatch) {
		return Entry{}, fmt.Errorf("images: fetch: %w", &DigestMismatchError{Ref: Redact(ref), Want: want})
	}
	return e, redactErr(err)
}

type sourceKind int

const (
	kindURL sourceKind = iota
	kindFile
	kindOCI
)

// source is a ref that passed the policy.
type source struct {
	kind sourceKind
	url  *url.URL // kindURL
	file localFile
}

// source parses ref and applies the policy: URLs and registries only from
// Origins, local files only below ImportDirs.
func (c *Cache) source(ref string) (source, error) {
	switch {
	case ref == "":
		return source{}, host.Invalid("ref", "must not be empty")
	case strings.HasPrefix(ref, "https://"), strings.HasPrefix(ref, "http://"):
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" || u.Hostname() == "" {
			return source{}, host.Invalid("ref", "%s is not a valid URL", Redact(ref))
		}
		if err := c.checkRemote(u); err != nil {
			return source{}, err
		}
		return source{kind: kindURL, url: u}, nil
	case strings.HasPrefix(ref, "file://"), strings.HasPrefix(ref, "/"):
		f, err := c.localSource(ref)
		return source{kind: kindFile, file: f}, err
	case strings.Contains(ref, "://") && !strings.HasPrefix(ref, "oci://"):
		return source{}, host.Invalid("ref", "unsupported scheme (want https, http, file or oci)")
	}
	if Redact(ref) != ref {
		return source{}, host.Invalid("ref", "an OCI reference carries no credentials or query; registry credentials come from the server's keychain")
	}
	repo, _ := splitOCI(ref)
	reg, _, _ := strings.Cut(repo, "/")
	if !strings.Contains(repo, "/") || (!strings.ContainsAny(reg, ".:") && reg != "localhost") {
		// Never fall back to Docker Hub: a relative path must not
		// turn into a network pull.
		return source{}, host.Invalid("ref", "OCI reference must start with a registry host (registry.example.com/repo:tag)")
	}
	if len(c.origins) == 0 {
		return source{}, errRemoteDisabled
	}
	u := &url.URL{Scheme: "https", Host: reg, Path: "/v2/"}
	if c.allowedURL(u) {
		return source{kind: kindOCI}, nil
	}
	u.Scheme = "http"
	if c.allowedURL(u) {
		return source{kind: kindOCI}, nil
	}
	return source{}, host.Invalid("ref", "registry %s is not an allowed image origin (serve --image-origin)", reg)
}

// call is one download that several Fetch callers may wait for.
type call struct {
	done    chan struct{}
	e       Entry
	err     error
	waiters int
	cancel  context.CancelFunc
}

// do runs fn once per key at a time. The download goes on while at least
// one caller still waits; when the last one gives up it is cancelled.
func (c *Cache) do(ctx context.Context, key string, fn func(context.Context) (Entry, error)) (Entry, error) {
	c.mu.Lock()
	if c.inflight == nil {
		c.inflight = make(map[string]*call)
	}
	cl, ok := c.inflight[key]
	if ok {
		cl.waiters++
	} else {
		dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cl = &call{done: make(chan struct{}), waiters: 1, cancel: cancel}
		c.inflight[key] = cl
		go func() {
			cl.e, cl.err = fn(dctx)
			cancel()
			c.mu.Lock()
			if c.inflight[key] == cl {
				delete(c.inflight, key)
			}
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.e, cl.err
	case <-ctx.Done():
		c.mu.Lock()
		cl.waiters--
		if cl.waiters == 0 {
			cl.cancel()
			if c.inflight[key] == cl {
				delete(c.inflight, key)
			}
		}
		c.mu.Unlock()
		return Entry{}, fmt.Errorf("images: fetch: %w", ctx.Err())
	}
}

// fetchURL downloads u through the guarded client: origins are checked on
// every request and redirect, addresses on every dial.
func (c *Cache) fetchURL(ctx context.Context, u *url.URL, want string) (Entry, error) {
	safe := Redact(u.String())
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Entry{}, fmt.Errorf("images: fetch %s: %w", safe, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err // its message repeats the URL, secrets included
		}
		return Entry{}, fmt.Errorf("images: fetch %s: %w", safe, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Entry{}, fmt.Errorf("images: fetch %s: server answered %s", safe, resp.Status)
	}
	e, err := c.store(ctx, resp.Body, resp.ContentLength, want)
	if err != nil {
		return Entry{}, fmt.Errorf("images: fetch %s: %w", safe, err)
	}
	c.Log.Info("image fetched", "url", safe, "digest", e.Digest, "size", e.Size,
		"duration", time.Since(start).Round(time.Millisecond))
	return e, nil
}

// fetchFile copies a file below an import directory.
func (c *Cache) fetchFile(ctx context.Context, lf localFile, want string) (Entry, error) {
	f, fi, err := lf.open()
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	e, err := c.store(ctx, f, fi.Size(), want)
	if err != nil {
		return Entry{}, fmt.Errorf("images: fetch file %s: %w", lf.path, err)
	}
	c.Log.Info("image copied", "path", lf.path, "digest", e.Digest, "size", e.Size)
	return e, nil
}

// splitOCI strips "oci://" and a "#title" suffix.
func splitOCI(ref string) (repo, title string) {
	s := strings.TrimPrefix(ref, "oci://")
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

func (c *Cache) resolvedEntry(ref string) (Entry, bool) {
	c.mu.Lock()
	hx, ok := c.resolved[ref]
	c.mu.Unlock()
	if !ok {
		return Entry{}, false
	}
	e, err := c.Lookup(hx)
	return e, err == nil
}

func (c *Cache) fetchOCI(ctx context.Context, ref, want string) (Entry, error) {
	s, title := splitOCI(ref)
	r, err := name.ParseReference(s)
	if err != nil {
		return Entry{}, host.Invalid("ref", "not an OCI reference: %v", err)
	}
	start := time.Now()
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(c.transport),
		remote.WithAuthFromKeychain(c.Keychain),
	}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return Entry{}, fmt.Errorf("images: resolve %s: %w", s, err)
	}
	img, err := desc.Image()
	if err != nil {
		return Entry{}, fmt.Errorf("images: %s (%s): %w", s, desc.MediaType, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return Entry{}, fmt.Errorf("images: manifest of %s: %w", s, err)
	}
	l, err := pickLayer(m.Layers, title)
	if err != nil {
		return Entry{}, fmt.Errorf("images: %s: %w", ref, err)
	}
	if l.Digest.Algorithm != "sha256" {
		return Entry{}, fmt.Errorf("images: %s: layer digest %s: only sha256 is supported", ref, l.Digest)
	}
	if want != "" && l.Digest.Hex != want {
		return Entry{}, errMismatch
	}
	if l.Size > c.MaxSize {
		return Entry{}, c.tooLarge()
	}
	e, err := c.Lookup(l.Digest.Hex)
	if err != nil {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return Entry{}, fmt.Errorf("images: layer %s of %s: %w", l.Digest, s, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return Entry{}, fmt.Errorf("images: pull %s of %s: %w", l.Digest, s, err)
		}
		cr := &closeOnEOF{rc: rc}
		e, err = c.store(ctx, cr, l.Size, l.Digest.Hex)
		if !cr.closed {
			rc.Close()
		}
		if errors.Is(err, errMismatch) {
			// The registry's own claim was wrong; want (if any) is not
			// what failed, so this is no DigestMismatchError.
			return Entry{}, fmt.Errorf("images: pull %s of %s: the layer does not match its digest", l.Digest, s)
		}
		if err != nil {
			return Entry{}, fmt.Errorf("images: pull %s of %s: %w", l.Digest, s, err)
		}
	}
	if _, byDigest := r.(name.Digest); byDigest {
		c.mu.Lock()
		if c.resolved == nil {
			c.resolved = make(map[string]string)
		}
		c.resolved[ref] = e.Hex()
		c.mu.Unlock()
	}
	c.Log.Info("image pulled", "ref", s, "manifest", desc.Digest.String(), "layer", e.Digest,
		"size", e.Size, "duration", time.Since(start).Round(time.Millisecond))
	return e, nil
}

func pickLayer(layers []v1.Descriptor, title string) (v1.Descriptor, error) {
	if title == "" {
		if len(layers) != 1 {
			return v1.Descriptor{}, host.Invalid("ref", "artifact has %d layers; add #<title> to pick one", len(layers))
		}
		return layers[0], nil
	}
	for _, l := range layers {
		if l.Annotations[TitleAnnotation] == title {
			return l, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("no layer titled %q: %w", title, host.ErrNotFound)
}

// closeOnEOF closes the layer reader when it reaches EOF and reports the
// close error instead of EOF: go-containerregistry verifies the digest there.
type closeOnEOF struct {
	rc     io.ReadCloser
	closed bool
}

func (r *closeOnEOF) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err == io.EOF && !r.closed {
		r.closed = true
		if cerr := r.rc.Close(); cerr != nil {
			return n, fmt.Errorf("verify layer: %w", cerr)
		}
	}
	return n, err
}
