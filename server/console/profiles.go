package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

func init() {
	pageRoutes = append(pageRoutes, func(c *Console) []route {
		return []route{
			{"GET", "/profiles", auth.OpProfList, c.profilesPage},                  // every profile; editors: the new-profile form
			{"POST", "/profiles", auth.OpProfCreate, c.createProfile},              // create a profile
			{"GET", "/profiles/:name", auth.OpProfGet, c.profilePage},              // one profile, its preview; editors: the edit form
			{"POST", "/profiles/:name", auth.OpProfUpdate, c.updateProfile},        // change a profile
			{"POST", "/profiles/:name/delete", auth.OpProfDelete, c.deleteProfile}, // delete a profile no host uses
		}
	})
}

// Installers lists the installers a profile form offers.
var installers = []host.Installer{host.InstallerKickstart, host.InstallerPreseed, host.InstallerAutoinstall,
	host.InstallerNone, host.InstallerImage}

// profilesView is the profile list.
type profilesView struct {
	Profiles   []host.Profile
	Form       host.Profile // the new-profile form's values (kept on error)
	Errors     formErrors   // by field
	Installers []host.Installer
	Open       bool // the new-profile form is open (after an error)
}

// profileView is one profile's page.
type profileView struct {
	Profile    host.Profile
	Form       host.Profile // the edit form's values
	Errors     formErrors
	Installers []host.Installer
	Sample     string        // the host whose next boot is previewed: "node01"; "" when the caller sees none
	Preview    *host.Preview // Core.Preview of Sample
	Hosts      int           // hosts using the profile that the caller sees (at most 2 looked up: "1" or "more")
	Saved      bool          // the edit was saved
}

// profilesPage answers GET /profiles.
func (c *Console) profilesPage(g *gin.Context) error {
	return c.renderProfiles(g, http.StatusOK, profilesView{})
}

func (c *Console) renderProfiles(g *gin.Context, status int, v profilesView) error {
	ps, err := c.core.ListProfiles(g.Request.Context(), caller(g))
	if err != nil {
		return err
	}
	v.Profiles, v.Installers = ps, installers
	if v.Form.Installer == "" {
		v.Form.Installer = host.InstallerKickstart
	}
	return c.render(g, status, "profiles", "Profiles", "profiles", v)
}

// profileForm reads a profile form into p (every field: the form shows
// them all).
func profileForm(g *gin.Context, p *host.Profile) {
	p.Kernel = strings.TrimSpace(g.PostForm("kernel"))
	p.Initrds = nil
	for _, l := range strings.Split(g.PostForm("initrds"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			p.Initrds = append(p.Initrds, l)
		}
	}
	p.Cmdline = strings.TrimSpace(g.PostForm("cmdline"))
	p.Installer = host.Installer(g.PostForm("installer"))
	p.Config = strings.ReplaceAll(g.PostForm("config"), "\r\n", "\n")
	p.FlipOnServe = g.PostForm("flip_on_serve") == "on"
	p.Image = strings.TrimSpace(g.PostForm("image"))
	p.ImageSHA256 = strings.TrimSpace(g.PostForm("image_sha256"))
	p.TargetDisk = strings.TrimSpace(g.PostForm("target_disk"))
	p.CleanMethod = strings.TrimSpace(g.PostForm("clean_method"))
}

// createProfile answers POST /profiles (the new-profile form).
func (c *Console) createProfile(g *gin.Context) error {
	p := host.Profile{Name: strings.TrimSpace(g.PostForm("name"))}
	profileForm(g, &p)
	out, err := c.core.CreateProfile(g.Request.Context(), caller(g), p)
	if err != nil {
		fe, err := formError(err)
		if err != nil {
			return err
		}
		return c.renderProfiles(g, http.StatusBadRequest, profilesView{Form: p, Errors: fe, Open: true})
	}
	g.Redirect(http.StatusSeeOther, "/profiles/"+out.Name)
	return nil
}

// profilePage answers GET /profiles/{name}.
func (c *Console) profilePage(g *gin.Context) error {
	return c.renderProfile(g, http.StatusOK, profileView{Saved: g.Query("saved") == "1"}, nil)
}

// renderProfile shows profile name; form, when not nil, is the edit form's
// values after an error.
func (c *Console) renderProfile(g *gin.Context, status int, v profileView, form *host.Profile) error {
	ctx, cl := g.Request.Context(), caller(g)
	p, err := c.core.GetProfile(ctx, cl, g.Param("name"))
	if err != nil {
		return err
	}
	v.Profile, v.Form, v.Installers = p, p, installers
	if form != nil {
		v.Form = *form
	}
	hs, err := c.core.ListHosts(ctx, cl, store.HostFilter{Profile: p.Name, Limit: 2})
	if err != nil && !errors.Is(err, host.ErrForbidden) {
		return err
	}
	v.Hosts = len(hs)
	if len(hs) > 0 {
		v.Sample = hs[0].Name
		pv, err := c.core.Preview(ctx, cl, v.Sample)
		switch {
		case err == nil:
			v.Preview = &pv
		case errors.Is(err, host.ErrForbidden), errors.Is(err, host.ErrNotFound):
			v.Sample = ""
		default:
			return err
		}
	}
	return c.render(g, status, "profile", "Profile "+p.Name, "profiles", v)
}

// updateProfile answers POST /profiles/{name} (the edit form).
func (c *Console) updateProfile(g *gin.Context) error {
	name := g.Param("name")
	var form host.Profile
	_, err := c.core.UpdateProfile(g.Request.Context(), caller(g), name, func(p *host.Profile) error {
		profileForm(g, p)
		form = *p
		return nil
	})
	if err != nil {
		fe, err := formError(err)
		if err != nil {
			return err
		}
		form.Name = name
		return c.renderProfile(g, http.StatusBadRequest, profileView{Errors: fe}, &form)
	}
	g.Redirect(http.StatusSeeOther, "/profiles/"+name+"?saved=1")
	return nil
}

// deleteProfile answers POST /profiles/{name}/delete; a profile a host
// uses is refused (409) by the core.
func (c *Console) deleteProfile(g *gin.Context) error {
	if err := c.core.DeleteProfile(g.Request.Context(), caller(g), g.Param("name")); err != nil {
		return err
	}
	g.Redirect(http.StatusSeeOther, "/profiles")
	return nil
}
