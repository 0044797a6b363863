package console

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

func init() {
	pageRoutes = append(pageRoutes, func(c *Console) []route {
		return []route{
			{"GET", "/images", auth.OpProfList, c.imagesPage},            // the images the profiles deploy; editors: upload and fetch
			{"POST", "/images", auth.OpImgUpload, c.uploadImage},         // upload a blob (multipart, streamed into the cache)
			{"POST", "/images/fetch", auth.OpImgFetch, c.fetchImageForm}, // fetch an https URL or OCI artifact, verified by SHA-256
		}
	})
}

// imagesView is the images page.
type imagesView struct {
	Profiles []host.Profile   // the image profiles: name, image, digest
	Result   *provision.Image // what the last upload or fetch cached
	Action   string           // "uploaded" or "fetched"
	Ref      string           // the fetch form's values, kept on error
	SHA256   string
	Errors   formErrors
}

// imagesPage answers GET /images.
func (c *Console) imagesPage(g *gin.Context) error {
	return c.renderImages(g, http.StatusOK, imagesView{})
}

func (c *Console) renderImages(g *gin.Context, status int, v imagesView) error {
	ps, err := c.core.ListProfiles(g.Request.Context(), caller(g))
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Installer == host.InstallerImage || p.ImageSHA256 != "" {
			v.Profiles = append(v.Profiles, p)
		}
	}
	return c.render(g, status, "images", "Images", "images", v)
}

// uploadImage answers POST /images (multipart: file): the file's part is
// streamed into the cache, never held in memory or on disk first.
func (c *Console) uploadImage(g *gin.Context) error {
	mr, err := g.Request.MultipartReader()
	if err != nil {
		return c.renderImages(g, http.StatusBadRequest, imagesView{Errors: formErrors{"file": "Choose a file to upload."}})
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return c.renderImages(g, http.StatusBadRequest, imagesView{Errors: formErrors{"file": "Choose a file to upload."}})
		}
		if err != nil {
			return host.Invalid("file", "cannot read the upload: %v", err)
		}
		if part.FormName() != "file" {
			continue
		}
		img, err := c.core.UploadImage(g.Request.Context(), caller(g), part, -1)
		if err != nil {
			g.Header("Connection", "close") // the rest of the body is not read
			fe, err := formError(err)
			if err != nil {
				return err
			}
			if msg, ok := fe["body"]; ok {
				fe = formErrors{"file": msg}
			}
			return c.renderImages(g, http.StatusBadRequest, imagesView{Errors: fe})
		}
		return c.renderImages(g, http.StatusCreated, imagesView{Result: &img, Action: "uploaded"})
	}
}

// fetchImageForm answers POST /images/fetch (form: ref, sha256).
func (c *Console) fetchImageForm(g *gin.Context) error {
	v := imagesView{Ref: strings.TrimSpace(g.PostForm("ref")), SHA256: strings.TrimSpace(g.PostForm("sha256"))}
	img, err := c.core.FetchImage(g.Request.Context(), caller(g), v.Ref, v.SHA256)
	if err != nil {
		fe, err := formError(err)
		if err != nil {
			return err
		}
		v.Errors = fe
		return c.renderImages(g, http.StatusBadRequest, v)
	}
	v.Result, v.Action = &img, "fetched"
	return c.renderImages(g, http.StatusOK, v)
}
