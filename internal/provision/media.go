package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/mediaurl"
)

// mediaRegistry keeps each host's published ISO for its media URL's
// lifetime: built once per insert, read by any number of ranged readers.
// Each publication has a random media id that its URL is signed with; only
// the host's current publication is served, so the URL of an earlier or an
// unpublished (ejected) ISO answers 404.
// With a directory the ISOs live there as files (<dir>/<name>.iso),
// otherwise in memory. It is per replica: the BMC must reach the replica
// that inserted.
type mediaRegistry struct {
	now func() time.Time
	dir string // "" keeps ISOs in memory
	mu  sync.Mutex
	m   map[string]*mediaEntry
}

type mediaEntry struct {
	id   string // mediaurl.NewID of this publication
	data []byte // in memory, or
	path string // on disk
	size int64
	etag string
	mod  time.Time
	exp  time.Time
}

func newMediaRegistry(now func() time.Time, dir string) *mediaRegistry {
	return &mediaRegistry{now: now, dir: dir, m: map[string]*mediaEntry{}}
}

// put publishes data as name's media until exp, replacing an older one, and
// forgets expired entries. It returns the publication's media id.
func (r *mediaRegistry) put(name string, data []byte, exp time.Time) (string, error) {
	sum := sha256.Sum256(data)
	now := r.now()
	e := &mediaEntry{id: mediaurl.NewID(), data: data, size: int64(len(data)), etag: `"sha256:` + hex.EncodeToString(sum[:]) + `"`,
		mod: now.UTC().Truncate(time.Second), exp: exp}
	tmp := ""
	if r.dir != "" {
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return "", fmt.Errorf("media dir: %w", err)
		}
		f, err := os.CreateTemp(r.dir, name+".iso.*")
		if err != nil {
			return "", fmt.Errorf("media of %s: %w", name, err)
		}
		tmp = f.Name()
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("media of %s: %w", name, err)
		}
		e.path, e.data = filepath.Join(r.dir, name+".iso"), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The new file is renamed over the old one under the lock, so source
	// never opens the new file for the old entry; readers that opened the
	// old ISO keep reading it until they close it.
	if tmp != "" {
		if err := os.Rename(tmp, e.path); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("media of %s: %w", name, err)
		}
	}
	for n, old := range r.m {
		if now.After(old.exp) && n != name {
			delete(r.m, n)
			if old.path != "" {
				os.Remove(old.path)
			}
		}
	}
	r.m[name] = e
	return e.id, nil
}

// drop unpublishes name's media: its URLs answer 404 from now on. Readers
// that already opened the file finish reading it.
func (r *mediaRegistry) drop(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[name]; ok && e.path != "" {
		os.Remove(e.path)
	}
	delete(r.m, name)
}

// source is the mediaurl.Source of published media: host name's current
// publication, if its media id is id.
func (r *mediaRegistry) source(_ context.Context, name, id string) (*mediaurl.Media, error) {
	r.mu.Lock()
	e, ok := r.m[name]
	ok = ok && subtle.ConstantTimeCompare([]byte(e.id), []byte(id)) == 1
	var f *os.File
	var err error
	if ok && e.path != "" {
		f, err = os.Open(e.path) // under the lock: no rename in between
	}
	r.mu.Unlock()
	if !ok || r.now().After(e.exp) {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("media of %s: %w", name, host.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("media of %s: %w", name, err)
	}
	if f != nil {
		return &mediaurl.Media{R: f, Size: e.size, ModTime: e.mod, ETag: e.etag, Close: f.Close}, nil
	}
	return &mediaurl.Media{R: bytes.NewReader(e.data), Size: e.size, ModTime: e.mod, ETag: e.etag}, nil
}

// MediaHandler serves /media/v1/<name>.iso?exp=…&id=…&sig=… (GET, HEAD,
// Range): mounted on the HTTPS server, and by `bootpilot serve
// --media-listen` on a plain-HTTP listener for BMCs that cannot verify a
// private CA. Over plain HTTP the ISO, and the host's boot token inside it,
// can be read by anyone on the path (see PlainMediaWarning). The URL is
// HMAC-signed, expiring and bound to one publication of one host's ISO.
// Without BMC operations (EnableBMC) or a media key it answers 404.
func (c *Core) MediaHandler() http.Handler {
	o := c.bmc
	if o == nil || len(o.opt.MediaKey) < mediaurl.MinKeyLen {
		return http.NotFoundHandler()
	}
	return &mediaurl.Handler{Key: o.opt.MediaKey, Source: o.media.source, Now: c.now, Log: c.log}
}

// PlainMediaWarning is logged as a warning by EnableBMC when media URLs are
// plain http:// (--media-listen, or an http:// --media-url).
const PlainMediaWarning = "media URLs are plain HTTP: anyone on the network path between the BMCs and this server " +
	"can read each host's ISO, including the boot token inside it, and with that token boot the host's script " +
	"as that host until the host's next ISO build rotates it; prefer HTTPS media (no --media-listen, an https:// " +
	"--media-url whose CA the BMCs trust), keep --media-ttl short and the management network isolated"

// warnPlainMedia logs PlainMediaWarning when media URLs are plain HTTP.
func (c *Core) warnPlainMedia(o BMCOptions) {
	if len(o.MediaKey) < mediaurl.MinKeyLen || !strings.HasPrefix(strings.ToLower(o.MediaURL), "http://") {
		return
	}
	c.log.Warn(PlainMediaWarning, "media_url", o.MediaURL)
}
