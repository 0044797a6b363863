package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/mediaurl"
)

// mediaRegistry keeps each host's published ISO in memory for its media
// URL's lifetime: built once per insert, read by any number of ranged
// readers. It is per replica: the BMC must reach the replica that inserted.
type mediaRegistry struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*mediaEntry
}

type mediaEntry struct {
	data []byte
	etag string
	mod  time.Time
	exp  time.Time
}

func newMediaRegistry(now func() time.Time) *mediaRegistry {
	return &mediaRegistry{now: now, m: map[string]*mediaEntry{}}
}

// put publishes data as name's media until exp, replacing an older one, and
// forgets expired entries.
func (r *mediaRegistry) put(name string, data []byte, exp time.Time) {
	sum := sha256.Sum256(data)
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for n, e := range r.m {
		if now.After(e.exp) {
			delete(r.m, n)
		}
	}
	r.m[name] = &mediaEntry{data: data, etag: `"sha256:` + hex.EncodeToString(sum[:]) + `"`, mod: now.UTC().Truncate(time.Second), exp: exp}
}

func (r *mediaRegistry) drop(name string) {
	r.mu.Lock()
	delete(r.m, name)
	r.mu.Unlock()
}

// source is the mediaurl.Source of published media.
func (r *mediaRegistry) source(_ context.Context, name string) (*mediaurl.Media, error) {
	r.mu.Lock()
	e, ok := r.m[name]
	r.mu.Unlock()
	if !ok || r.now().After(e.exp) {
		return nil, fmt.Errorf("media of %s: %w", name, host.ErrNotFound)
	}
	return &mediaurl.Media{R: bytes.NewReader(e.data), Size: int64(len(e.data)), ModTime: e.mod, ETag: e.etag}, nil
}

// MediaHandler serves /media/v1/<name>.iso?exp=…&sig=… (GET, HEAD, Range):
// mounted on the HTTPS server, and by `bootpilot serve --media-listen` on a
// plain-HTTP listener for BMCs that cannot verify a private CA (the ISO is
// Secure Boot signed; the URL is HMAC-signed, expiring and single-host).
// Without a media key it answers 404.
func (s *Server) MediaHandler() http.Handler {
	if len(s.opt.MediaKey) < mediaurl.MinKeyLen || s.rf == nil {
		return http.NotFoundHandler()
	}
	return &mediaurl.Handler{Key: s.opt.MediaKey, Source: s.rf.media.source, Now: s.now, Log: s.log}
}

func signMediaURL(key []byte, base, name string, exp time.Time) string {
	return mediaurl.Sign(key, base, name, exp)
}
