package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/mediaurl"
	"github.com/bootpilot/bootpilot/internal/store"
)

// SharedStore is what replicas share besides hosts and BMC records: bulk
// jobs with their per-host progress, and published media (implemented by
// *store.DB). Get methods return host.ErrNotFound for what does not exist.
type SharedStore interface {
	CreateJob(ctx context.Context, j store.Job) error
	GetJob(ctx context.Context, id string) (store.Job, error)
	ListJobs(ctx context.Context, since time.Time) ([]store.Job, error)
	UpdateJobHost(ctx context.Context, id string, seq int, fn func(h *store.JobHost)) (bool, error)
	HeartbeatJobs(ctx context.Context, replica string, t time.Time) error
	FailAbandonedJobs(ctx context.Context, before, t time.Time, reason, except string) (int, error)
	DeleteJobsFinishedBefore(ctx context.Context, t time.Time) error
	PutMedia(ctx context.Context, m store.Media) error
	GetMedia(ctx context.Context, name, id string) (store.Media, error)
	DeleteMedia(ctx context.Context, name string) error
	DeleteExpiredMedia(ctx context.Context, t time.Time) (int, error)
}

var _ SharedStore = (*store.DB)(nil)

// errNoSharedStore: jobs and media need the shared tables.
var errNoSharedStore = ErrNotConfigured{"this server's store cannot keep bulk jobs and published media"}

// Published media live in the database (SharedStore): each host's current
// publication is one row with the ISO's bytes, keyed by the host and a
// random media id its URL is signed with, so that whichever replica the
// BMC reaches serves it. Only the host's current publication is served: the
// URL of an earlier or an unpublished (ejected) ISO answers 404. Expired
// rows are deleted by the sweep.

// publishMedia keeps data as host name's media until exp, replacing an
// older publication, and returns the publication's media id.
func (c *Core) publishMedia(ctx context.Context, name string, data []byte, exp time.Time) (string, error) {
	sum := sha256.Sum256(data)
	m := store.Media{Host: name, ID: mediaurl.NewID(), Data: data, ETag: `"sha256:` + hex.EncodeToString(sum[:]) + `"`,
		ModTime: c.now().UTC().Truncate(time.Second), Expires: exp}
	if err := c.bmc.shared.PutMedia(ctx, m); err != nil {
		return "", err
	}
	return m.ID, nil
}

// unpublish deletes host name's media: its URLs answer 404 from then on, on
// every replica. A failure is logged (the row expires anyway).
func (c *Core) unpublish(ctx context.Context, name string) {
	if c.bmc == nil || c.bmc.shared == nil {
		return
	}
	if err := c.bmc.shared.DeleteMedia(context.WithoutCancel(ctx), name); err != nil {
		c.log.Error("media: unpublish", "host", name, "err", err)
	}
}

// mediaSource is the mediaurl.Source of published media: host name's
// current publication, if its media id is id and it has not expired.
func (c *Core) mediaSource(ctx context.Context, name, id string) (*mediaurl.Media, error) {
	m, err := c.bmc.shared.GetMedia(ctx, name, id)
	if err != nil {
		return nil, err
	}
	if c.now().After(m.Expires) {
		return nil, fmt.Errorf("media of %s: %w", name, host.ErrNotFound)
	}
	return &mediaurl.Media{R: bytes.NewReader(m.Data), Size: int64(len(m.Data)), ModTime: m.ModTime, ETag: m.ETag}, nil
}

// MediaHandler serves /media/v1/<name>.iso?exp=…&id=…&sig=… (GET, HEAD,
// Range): mounted on the HTTPS server, and by `bootpilot serve
// --media-listen` on a plain-HTTP listener for BMCs that cannot verify a
// private CA. Over plain HTTP the ISO, and the host's boot token inside it,
// can be read by anyone on the path (see PlainMediaWarning). The URL is
// HMAC-signed, expiring and bound to one publication of one host's ISO;
// any replica serves it from the database. Without BMC operations
// (EnableBMC), a media key or a SharedStore it answers 404.
func (c *Core) MediaHandler() http.Handler {
	o := c.bmc
	if o == nil || len(o.opt.MediaKey) < mediaurl.MinKeyLen || o.shared == nil {
		return http.NotFoundHandler()
	}
	return &mediaurl.Handler{Key: o.opt.MediaKey, Source: c.mediaSource, Now: c.now, Log: c.log}
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
