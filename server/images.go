package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

// imagesPrefix is where cached blobs are served, by digest:
// /images/v1/<sha256 hex>[/<file name>].
const imagesPrefix = "/images/v1"

func (s *Server) imageRoutes(e *gin.Engine, api *gin.RouterGroup) {
	if s.opt.Images == nil {
		return
	}
	h := http.StripPrefix(imagesPrefix, s.opt.Images.Handler())
	e.GET(imagesPrefix+"/*path", gin.WrapH(h))  // kernels, initrds, disk images by digest (Range, ETag)
	e.HEAD(imagesPrefix+"/*path", gin.WrapH(h)) // size and ETag
	api.POST("/images", s.uploadImage)          // upload a blob; answers its digest and URL
	api.POST("/images/fetch", s.fetchImage)     // fetch an https URL or OCI artifact into the cache, verified
}

// imageAnswer is what the image calls return.
type imageAnswer struct {
	Digest string `json:"digest"` // "sha256:…"
	Size   int64  `json:"size"`
	URL    string `json:"url"` // where hosts fetch it
}

func (s *Server) imageAnswer(e images.Entry) imageAnswer {
	return imageAnswer{Digest: e.Digest, Size: e.Size, URL: s.imageURL(e.Hex())}
}

func (s *Server) imageURL(hex string) string {
	return s.opt.ExternalURL + imagesPrefix + "/" + hex
}

// uploadImage stores the request body in the cache (streamed to a temp file,
// then imported by digest).
func (s *Server) uploadImage(c *gin.Context) {
	tmp, err := os.CreateTemp("", "bootpilot-upload-*")
	if err != nil {
		s.fail(c, err)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, c.Request.Body); err != nil {
		s.fail(c, host.Invalid("body", "upload interrupted: %v", err))
		return
	}
	e, err := s.opt.Images.Import(c.Request.Context(), tmp.Name())
	if err != nil {
		s.fail(c, err)
		return
	}
	s.log.Info("image uploaded", "digest", e.Digest, "size", e.Size, "actor", actor(c), "request_id", requestID(c))
	c.JSON(http.StatusCreated, s.imageAnswer(e))
}

// fetchImage pulls {"ref": "https://…"|"registry/repo@sha256:…", "sha256": "<hex>"}.
func (s *Server) fetchImage(c *gin.Context) {
	var body struct {
		Ref    string `json:"ref"`
		SHA256 string `json:"sha256"`
	}
	if err := c.ShouldBindJSON(&body); err != nil {
		s.fail(c, host.Invalid("body", "want {\"ref\":…,\"sha256\":…}: %v", err))
		return
	}
	e, err := s.cacheImage(c, body.Ref, body.SHA256)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, s.imageAnswer(e))
}

// cacheImage fetches ref into the cache, verified against want; a digest
// mismatch or an unreachable source is the caller's problem (400), never a
// deploy.
func (s *Server) cacheImage(c *gin.Context, ref, want string) (images.Entry, error) {
	if hex, ok := strings.CutPrefix(ref, s.opt.ExternalURL+imagesPrefix+"/"); ok {
		hex, _, _ = strings.Cut(hex, "/")
		if want != "" && hex != want {
			return images.Entry{}, host.Invalid("image_sha256", "does not match the digest in the image URL")
		}
		e, err := s.opt.Images.Lookup(hex)
		if errors.Is(err, host.ErrNotFound) {
			return e, host.Invalid("image", "no image %s in this server's cache", hex)
		}
		return e, err
	}
	e, err := s.opt.Images.Fetch(c.Request.Context(), ref, want)
	var dm *images.DigestMismatchError
	var ve *host.ValidationError
	switch {
	case errors.As(err, &dm):
		return e, host.Invalid("image_sha256", "%v", err)
	case errors.As(err, &ve):
		return e, err
	case err != nil:
		return e, host.Invalid("image", "cannot fetch %s: %v", ref, err)
	}
	s.log.Info("image cached", "ref", ref, "digest", e.Digest, "size", e.Size, "actor", actor(c), "request_id", requestID(c))
	return e, nil
}

// servedImage returns the URL hosts deploy p's image from: always this
// server's cache, so the agent needs to trust nothing but our CA.
func (s *Server) servedImage(p host.Profile) (string, error) {
	if s.opt.Images == nil {
		return "", fmt.Errorf("image profile %s: this server has no image cache", p.Name)
	}
	if _, err := s.opt.Images.Lookup(p.ImageSHA256); err != nil {
		return "", fmt.Errorf("image profile %s: image %s not cached: %w", p.Name, p.ImageSHA256, err)
	}
	return s.imageURL(p.ImageSHA256), nil
}
