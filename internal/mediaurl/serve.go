package mediaurl

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Media is one ISO ready to be served. ReaderAt must allow concurrent
// ReadAt calls (an *os.File or a *bytes.Reader does).
type Media struct {
	R       io.ReaderAt // the image bytes
	Size    int64       // 4194304
	ModTime time.Time   // sets Last-Modified; zero omits it
	ETag    string      // `"sha256:…"`; optional, enables If-Range
	Close   func() error
}

// Source opens host name's ISO published as media id. It returns an error
// wrapping host.ErrNotFound when the host has no ISO published under that id
// (none at all, a newer one, or it was unpublished).
type Source func(ctx context.Context, name, id string) (*Media, error)

// Serve writes m for a GET or HEAD request, honouring Range (206 with
// Content-Range), If-Range and conditional headers through http.ServeContent.
// Each call reads through its own section reader, so any number of
// concurrent ranged readers work on one Media.
func Serve(w http.ResponseWriter, r *http.Request, name string, m *Media) {
	w.Header().Set("Content-Type", "application/x-iso9660-image")
	w.Header().Set("Cache-Control", "no-store")
	if m.ETag != "" {
		w.Header().Set("ETag", m.ETag)
	}
	http.ServeContent(w, r, name+".iso", m.ModTime, io.NewSectionReader(m.R, 0, m.Size))
}

// Handler serves signed media URLs: it checks the path, the signature and
// the expiry, then serves the host's ISO published under the URL's media id
// from its Source.
type Handler struct {
	Key    []byte
	Source Source
	Now    func() time.Time // defaults to time.Now
	Log    *slog.Logger     // defaults to slog.Default()
}

// ServeHTTP answers GET and HEAD on /media/v1/<name>.iso?exp=…&id=…&sig=…:
// 404 for an unknown path or host or media that is no longer published,
// 403 for a bad or expired signature, 405 for other methods.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := ParsePath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	q := r.URL.Query()
	id := q.Get("id")
	if err := Verify(h.Key, name, id, q.Get("exp"), q.Get("sig"), now()); err != nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	m, err := h.Source(r.Context(), name, id)
	if err != nil {
		if errors.Is(err, host.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		log := h.Log
		if log == nil {
			log = slog.Default()
		}
		log.Error("media: open iso", "host", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if m.Close != nil {
		defer m.Close()
	}
	Serve(w, r, name, m)
}
