package provision

import (
	"bytes"
	"context"
	"errors"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

// Preview renders what the next boot of host name would be served, with
// the same planning (host.NextBoot) and rendering as a boot, but stores
// nothing: the callback token is host.PreviewCallbackToken. A host whose
// boot cannot be rendered gets a Preview with Error set; only database
// errors, a busy renderer or a cancelled request return an error.
func (c *Core) Preview(ctx context.Context, cl Caller, name string) (host.Preview, error) {
	h, err := c.authorizeHost(ctx, cl, auth.OpHostPreview, name)
	if err != nil {
		return host.Preview{}, err
	}
	action, attempt := host.NextBoot(h, c.now(), c.opt.Policy)
	p := host.Preview{Host: h.Name, State: h.State, Action: action, Attempt: attempt}
	profiles, err := c.bootProfiles(ctx, h)
	if err != nil {
		return p, err
	}
	h.Attempt = attempt
	cb := ""
	if action == host.ActionInstall || action == host.ActionClean {
		cb = host.PreviewCallbackToken
	}
	script, err := c.renderAction(h, action, cb, profiles)
	if err != nil {
		p.Error = unrenderable(err)
		return p, nil
	}
	p.Script = string(script)
	if action != host.ActionInstall {
		return p, nil
	}
	d, err := c.scriptData(h, action, cb, profiles)
	if err != nil {
		p.Error = unrenderable(err)
		return p, nil
	}
	for _, f := range bootscripts.ConfigFiles(d.Profile.Installer) {
		var buf bytes.Buffer
		err := c.render.ConfigContext(ctx, &buf, f, d)
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
// local disk, as Boot serves on any render failure), and why.
func unrenderable(err error) string {
	return "cannot be rendered, so the host would boot its local disk: " + err.Error()
}
