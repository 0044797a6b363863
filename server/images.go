package server

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

// imagesPrefix is where cached blobs are served, by digest:
// /images/v1/<sha256 hex>[/<file name>].
const imagesPrefix = "/images/v1"

func (s *Server) imageRoutes(e *gin.Engine, api *gin.RouterGroup) {
	if s.opt.Images == nil {
		return
	}
	h := wrap(http.StripPrefix(imagesPrefix, s.opt.Images.Handler()))
	s.handle(e, "GET", imagesPrefix+"/*path", auth.OpPublic, h)           // kernels, initrds, disk images by digest (Range, ETag)
	s.handle(e, "HEAD", imagesPrefix+"/*path", auth.OpPublic, h)          // size and ETag
	s.handle(api, "POST", "/images", auth.OpImgUpload, s.uploadImage)     // upload a blob; answers its digest and URL
	s.handle(api, "POST", "/images/fetch", auth.OpImgFetch, s.fetchImage) // fetch an https URL or OCI artifact into the cache, verified
}

// uploadImage streams the request body straight into the cache (capped by
// the cache's size limit; nothing is kept unless the whole body arrived).
func (s *Server) uploadImage(c *gin.Context) error {
	img, err := s.core.UploadImage(c.Request.Context(), caller(c), c.Request.Body, c.Request.ContentLength)
	if err != nil {
		c.Header("Connection", "close") // the rest of the body is not read
		return err
	}
	c.JSON(http.StatusCreated, img)
	return nil
}

// maxFetchBody caps the body of POST /api/v1/images/fetch.
const maxFetchBody = 64 << 10

// fetchImage pulls {"ref": "https://…"|"registry/repo@sha256:…", "sha256": "<hex>"}.
func (s *Server) fetchImage(c *gin.Context) error {
	var body struct {
		Ref    string `json:"ref"`
		SHA256 string `json:"sha256"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxFetchBody))
	if err := dec.Decode(&body); err != nil {
		return host.Invalid("body", "want {\"ref\":…,\"sha256\":…} of at most %d bytes: %v", maxFetchBody, err)
	}
	img, err := s.core.FetchImage(c.Request.Context(), caller(c), body.Ref, body.SHA256)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, img)
	return nil
}
