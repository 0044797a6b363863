package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// uploadImage streams the request body straight into the cache (capped by
// the cache's size limit; nothing is kept unless the whole body arrived).
// The caller sent the bytes, so the answer tells their digest.
func (s *Server) uploadImage(c *gin.Context) {
	e, err := s.opt.Images.Put(c.Request.Context(), c.Request.Body, c.Request.ContentLength)
	if err != nil {
		c.Header("Connection", "close") // the rest of the body is not read
		s.fail(c, err)
		return
	}
	s.log.Info("image uploaded", "digest", e.Digest, "size", e.Size, "actor", actor(c), "request_id", requestID(c))
	c.JSON(http.StatusCreated, s.imageAnswer(e))
}

// maxFetchBody caps the body of POST /api/v1/images/fetch.
const maxFetchBody = 64 << 10

// fetchImage pulls {"ref": "https://…"|"registry/repo@sha256:…", "sha256": "<hex>"}.
func (s *Server) fetchImage(c *gin.Context) {
	var body struct {
		Ref    string `json:"ref"`
		SHA256 string `json:"sha256"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxFetchBody))
	if err := dec.Decode(&body); err != nil {
		s.fail(c, host.Invalid("body", "want {\"ref\":…,\"sha256\":…} of at most %d bytes: %v", maxFetchBody, err))
		return
	}
	e, err := s.cacheImage(c, fetchFields, body.Ref, body.SHA256)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, s.imageAnswer(e))
}

// imageFields names the request fields an image error is about.
type imageFields struct{ ref, sha256 string }

var (
	fetchFields   = imageFields{ref: "ref", sha256: "sha256"}
	profileFields = imageFields{ref: "image", sha256: "image_sha256"}
)

// cacheImage fetches ref into the cache, verified against want; a digest
// mismatch, a refused or unreachable source is the caller's problem (400),
// never a deploy. ref reaches logs and answers only through images.Redact,
// and a mismatch never tells the actual digest.
func (s *Server) cacheImage(c *gin.Context, f imageFields, ref, want string) (images.Entry, error) {
	if hex, ok := strings.CutPrefix(ref, s.opt.ExternalURL+imagesPrefix+"/"); ok {
		hex, _, _ = strings.Cut(hex, "/")
		if want != "" && hex != want {
			return images.Entry{}, host.Invalid(f.sha256, "does not match the digest in the image URL")
		}
		e, err := s.opt.Images.Lookup(hex)
		if errors.Is(err, host.ErrNotFound) {
			return e, host.Invalid(f.ref, "no image %s in this server's cache", hex)
		}
		return e, err
	}
	e, err := s.opt.Images.Fetch(c.Request.Context(), ref, want)
	var dm *images.DigestMismatchError
	var ve *host.ValidationError
	switch {
	case errors.As(err, &dm):
		return e, host.Invalid(f.sha256, "%s", dm.Error())
	case errors.As(err, &ve):
		field := ve.Field
		switch field {
		case "ref":
			field = f.ref
		case "sha256":
			field = f.sha256
		}
		return e, host.Invalid(field, "%s", ve.Reason)
	case err != nil:
		return e, host.Invalid(f.ref, "cannot fetch %s: %s", images.Redact(ref), images.RedactText(err.Error()))
	}
	s.log.Info("image cached", "ref", images.Redact(ref), "digest", e.Digest, "size", e.Size, "actor", actor(c), "request_id", requestID(c))
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
