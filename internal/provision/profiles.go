package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
)

// checkProfileFields validates p including its config template, so a broken
// template is refused now rather than when a host boots.
func checkProfileFields(p *host.Profile) error {
	if err := p.Normalize(); err != nil {
		return err
	}
	if p.Config != "" {
		return bootscripts.CheckConfigTemplate(p.Config)
	}
	return nil
}

// profileRecord is the audit record of a change to profile name.
func (c *Core) profileRecord(cl Caller, op auth.Op, name string, fields []string) host.Record {
	rec := cl.record(c.now(), "", auth.RuleFor(op).Audit, "")
	rec.Subject, rec.Fields = "profile:"+name, fields
	return rec
}

// ListProfiles returns every profile (every role reads them).
func (c *Core) ListProfiles(ctx context.Context, cl Caller) ([]host.Profile, error) {
	if err := cl.Authorize(auth.OpProfList, nil); err != nil {
		return nil, err
	}
	return c.store.ListProfiles(ctx)
}

// GetProfile returns profile name.
func (c *Core) GetProfile(ctx context.Context, cl Caller, name string) (host.Profile, error) {
	if err := cl.Authorize(auth.OpProfGet, nil); err != nil {
		return host.Profile{}, err
	}
	return c.store.GetProfile(ctx, name)
}

// CreateProfile defines a profile; an image profile's image is fetched into
// the cache and checked against its digest first.
func (c *Core) CreateProfile(ctx context.Context, cl Caller, p host.Profile) (host.Profile, error) {
	if err := cl.Authorize(auth.OpProfCreate, nil); err != nil {
		return host.Profile{}, err
	}
	if err := checkProfileFields(&p); err != nil {
		return host.Profile{}, err
	}
	if err := c.cacheProfileImage(ctx, cl, p); err != nil {
		return host.Profile{}, err
	}
	redactProfileImage(&p)
	out, err := c.store.CreateProfile(ctx, p)
	if err != nil {
		return out, err
	}
	c.audit(ctx, c.profileRecord(cl, auth.OpProfCreate, p.Name, nil))
	return out, nil
}

// UpdateProfile changes profile name by fn (which overlays the caller's
// fields; a typed partial update lives with the transport's decoding).
func (c *Core) UpdateProfile(ctx context.Context, cl Caller, name string, fn func(p *host.Profile) error) (host.Profile, error) {
	if err := cl.Authorize(auth.OpProfUpdate, nil); err != nil {
		return host.Profile{}, err
	}
	apply := func(p *host.Profile) error {
		if err := fn(p); err != nil {
			return err
		}
		if p.Name != name {
			return host.Invalid("name", "a profile cannot be renamed")
		}
		return checkProfileFields(p)
	}
	// Validate and cache the image first: no network inside the transaction.
	draft, err := c.store.GetProfile(ctx, name)
	if err != nil {
		return draft, err
	}
	old := draft
	if err := apply(&draft); err != nil {
		return host.Profile{}, err
	}
	if err := c.cacheProfileImage(ctx, cl, draft); err != nil {
		return host.Profile{}, err
	}
	p, err := c.store.UpdateProfile(ctx, name, func(p *host.Profile) error {
		if err := apply(p); err != nil {
			return err
		}
		redactProfileImage(p)
		return nil
	})
	if err != nil {
		return p, err
	}
	c.audit(ctx, c.profileRecord(cl, auth.OpProfUpdate, name, profileChanged(old, p)))
	return p, nil
}

// DeleteProfile deletes profile name; host.ErrConflict while a host uses it.
func (c *Core) DeleteProfile(ctx context.Context, cl Caller, name string) error {
	if err := cl.Authorize(auth.OpProfDelete, nil); err != nil {
		return err
	}
	if err := c.store.DeleteProfile(ctx, name); err != nil {
		return err
	}
	c.audit(ctx, c.profileRecord(cl, auth.OpProfDelete, name, nil))
	return nil
}

// cacheProfileImage makes sure an image profile's image is in the cache and
// matches its digest before any host can be sent to deploy it.
func (c *Core) cacheProfileImage(ctx context.Context, cl Caller, p host.Profile) error {
	if p.Installer != host.InstallerImage {
		return nil
	}
	if c.opt.Images == nil {
		return host.Invalid("image", "this server has no image cache")
	}
	_, err := c.cacheImage(ctx, cl, profileFields, p.Image, p.ImageSHA256)
	return err
}

// redactProfileImage drops credentials and a signed query from p's image
// source before it is stored and shown: the blob is cached by digest, so
// the source is only a record of where it came from.
func redactProfileImage(p *host.Profile) {
	if p.Image != "" {
		p.Image = images.Redact(p.Image)
	}
}

// profileChanged names the JSON fields that differ between a and b (names
// only: a config template may be long, an image reference was redacted).
func profileChanged(a, b host.Profile) []string {
	var ma, mb map[string]json.RawMessage
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	json.Unmarshal(ja, &ma)
	json.Unmarshal(jb, &mb)
	var out []string
	for k := range maps.Keys(mb) {
		if k != "updated_at" && !bytes.Equal(ma[k], mb[k]) {
			out = append(out, k)
		}
	}
	for k := range maps.Keys(ma) {
		if _, ok := mb[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
