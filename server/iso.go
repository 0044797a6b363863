package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// isoBuffer holds a built ISO in memory (they are ~1-3 MiB) and serves it
// with Content-Length, a content ETag and Range support.
type isoBuffer struct{ bytes.Buffer }

func (b *isoBuffer) serve(c *gin.Context, filename string) {
	sum := sha256.Sum256(b.Bytes())
	c.Header("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	c.Header("Content-Type", "application/octet-stream")
	c.Header("Content-Disposition", `attachment; filename="`+filename+`"`)
	c.Header("Cache-Control", "no-store")
	http.ServeContent(c.Writer, c.Request, filename, time.Time{}, bytes.NewReader(b.Bytes()))
}
