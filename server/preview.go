package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

// hostPreview answers GET /api/v1/hosts/{name}/preview: the script and
// installer configs the host's next boot would be served, rendered read-only.
func (s *Server) hostPreview(c *gin.Context) {
	h, err := s.store.GetHost(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	p, err := s.preview(c.Request.Context(), h)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

// preview renders what the next boot of h would be served, with the same
// planning (host.NextBoot) and rendering (renderAction, scriptData) as a
// boot, but stores nothing: the callback token is host.PreviewCallbackToken.
// A host whose boot cannot be rendered gets a Preview with Error set; only
// database errors, a busy renderer or a cancelled request return an error.
func (s *Server) preview(ctx context.Context, h host.Host) (host.Preview, error) {
	action, attempt := host.NextBoot(h, s.now(), s.opt.Policy)
	p := host.Preview{Host: h.Name, State: h.State, Action: action, Attempt: attempt}
	profiles, err := s.bootProfiles(ctx, h)
	if err != nil {
		return p, err
	}
	h.Attempt = attempt
	cb := ""
	if action == host.ActionInstall || action == host.ActionClean {
		cb = host.PreviewCallbackToken
	}
	script, err := s.renderAction(h, action, cb, profiles)
	if err != nil {
		p.Error = unrenderable(err)
		return p, nil
	}
	p.Script = string(script)
	if action != host.ActionInstall {
		return p, nil
	}
	d, err := s.scriptData(h, action, cb, profiles)
	if err != nil {
		p.Error = unrenderable(err)
		return p, nil
	}
	for _, f := range bootscripts.ConfigFiles(d.Profile.Installer) {
		var buf bytes.Buffer
		err := s.render.ConfigContext(ctx, &buf, f, d)
		switch {
		case errors.Is(err, bootscripts.ErrBusy), errors.Is(err, context.Canceled):
			return p, err
		case err != nil:
			p.Error = unrenderable(err)
			return p, nil
		}
		if p.Configs == nil {
			p.Configs = map[string]string{}
		}
		p.Configs[f] = buf.String()
	}
	return p, nil
}

// unrenderable is a preview's Error: what a boot would do instead (the
// local disk, as bootScript serves on any render failure), and why.
func unrenderable(err error) string {
	return "cannot be rendered, so the host would boot its local disk: " + err.Error()
}
