package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

// Image is what the image calls return.
type Image struct {
	Digest string `json:"digest"` // "sha256:…"
	Size   int64  `json:"size"`
	URL    string `json:"url"` // where hosts fetch it
}

func (c *Core) image(e images.Entry) Image {
	return Image{Digest: e.Digest, Size: e.Size, URL: c.imageURL(e.Hex())}
}

func (c *Core) imageURL(hex string) string {
	return c.opt.ExternalURL + c.opt.ImagesPrefix + "/" + hex
}

// errNoImages: the server was started without an image cache.
var errNoImages = ErrNotConfigured{"this server has no image cache"}

// UploadImage streams r into the cache (capped by the cache's size limit;
// nothing is kept unless all of it arrived). The caller sent the bytes, so
// the answer tells their digest.
func (c *Core) UploadImage(ctx context.Context, cl Caller, r io.Reader, size int64) (Image, error) {
	if err := cl.Authorize(auth.OpImgUpload, nil); err != nil {
		return Image{}, err
	}
	if c.opt.Images == nil {
		return Image{}, errNoImages
	}
	e, err := c.opt.Images.Put(ctx, r, size)
	if err != nil {
		return Image{}, err
	}
	rec := cl.record(c.now(), "", auth.RuleFor(auth.OpImgUpload).Audit, fmt.Sprintf("%d bytes", e.Size))
	rec.Subject = "image:" + e.Digest
	c.audit(ctx, rec)
	return c.image(e), nil
}

// FetchImage pulls ref (an https URL or an OCI artifact) into the cache,
// verified against the sha256 hex digest want.
func (c *Core) FetchImage(ctx context.Context, cl Caller, ref, want string) (Image, error) {
	if err := cl.Authorize(auth.OpImgFetch, nil); err != nil {
		return Image{}, err
	}
	if c.opt.Images == nil {
		return Image{}, errNoImages
	}
	e, err := c.cacheImage(ctx, cl, fetchFields, ref, want)
	if err != nil {
		return Image{}, err
	}
	return c.image(e), nil
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
func (c *Core) cacheImage(ctx context.Context, cl Caller, f imageFields, ref, want string) (images.Entry, error) {
	if hex, ok := strings.CutPrefix(ref, c.opt.ExternalURL+c.opt.ImagesPrefix+"/"); ok {
		hex, _, _ = strings.Cut(hex, "/")
		if want != "" && hex != want {
			return images.Entry{}, host.Invalid(f.sha256, "does not match the digest in the image URL")
		}
		e, err := c.opt.Images.Lookup(hex)
		if errors.Is(err, host.ErrNotFound) {
			return e, host.Invalid(f.ref, "no image %s in this server's cache", hex)
		}
		return e, err
	}
	e, err := c.opt.Images.Fetch(ctx, ref, want)
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
	c.log.Info("image cached", "ref", images.Redact(ref), "digest", e.Digest, "size", e.Size, "actor", cl.Actor(), "request_id", cl.RequestID)
	rec := cl.record(c.now(), "", auth.RuleFor(auth.OpImgFetch).Audit, "fetched "+images.Redact(ref))
	rec.Subject = "image:" + e.Digest
	c.audit(ctx, rec)
	return e, nil
}

// servedImage returns the URL hosts deploy p's image from: always this
// server's cache, so the agent needs to trust nothing but our CA.
func (c *Core) servedImage(p host.Profile) (string, error) {
	if c.opt.Images == nil {
		return "", fmt.Errorf("image profile %s: this server has no image cache", p.Name)
	}
	if _, err := c.opt.Images.Lookup(p.ImageSHA256); err != nil {
		return "", fmt.Errorf("image profile %s: image %s not cached: %w", p.Name, p.ImageSHA256, err)
	}
	return c.imageURL(p.ImageSHA256), nil
}
