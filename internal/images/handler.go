package images

import (
	"net/http"
	"os"
	"strings"
	"time"
)

// Handler serves GET and HEAD /<hex digest>[/<any file name>] from the cache
// with Range (206), ETag ("sha256:<hex>", quoted), If-None-Match, If-Range,
// Content-Length, Accept-Ranges and Content-Type application/octet-stream.
// The file name part is ignored; it only makes URLs readable. An unknown or
// malformed digest is a 404, another method a 405. Mount it under a prefix
// with http.StripPrefix.
func (c *Cache) Handler() http.Handler {
	_ = c.setup() // a broken Dir shows up as 404s and a logged open error
	return http.HandlerFunc(c.serve)
}

func (c *Cache) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	hx, _, _ := strings.Cut(p, "/")
	hx = strings.TrimPrefix(hx, "sha256:")
	if !validHex(hx) {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(c.blobPath(hx))
	if err != nil {
		if !os.IsNotExist(err) {
			c.Log.Error("images: open blob", "digest", hx, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"sha256:`+hx+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	// A zero modtime leaves out Last-Modified: the ETag is the validator.
	http.ServeContent(w, r, "", time.Time{}, f)
}

func (c *Cache) blobPath(hx string) string { return c.blobDir() + "/" + hx }
