package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
)

func init() {
	pageRoutes = append(pageRoutes, func(c *Console) []route {
		return []route{
			{"GET", "/admin", auth.OpUserList, c.adminPage},                                     // users with their grants, every token
			{"POST", "/admin/users", auth.OpUserCreate, c.adminCreateUser},                      // create a local user
			{"POST", "/admin/users/:source/:name/disable", auth.OpUserUpdate, c.adminDisable},   // disable a user (sessions and tokens stop)
			{"POST", "/admin/users/:source/:name/enable", auth.OpUserUpdate, c.adminEnable},     // enable a user
			{"POST", "/admin/users/:source/:name/grants", auth.OpUserUpdate, c.adminGrants},     // replace a local user's grants
			{"POST", "/admin/users/:source/:name/delete", auth.OpUserDelete, c.adminDeleteUser}, // delete a user, revoking their tokens
			{"POST", "/admin/tokens", auth.OpServiceMake, c.adminCreateToken},                   // a service token, shown once
			{"POST", "/admin/tokens/:id/revoke", auth.OpTokenOther, c.adminRevokeToken},         // revoke anyone's token
		}
	})
}

// adminView is the admin page.
type adminView struct {
	Users  []auth.User
	Tokens []auth.Token
	Done   string            // what the last action did: "User local:bob created."
	Errors formErrors        // the create-user and create-token forms' problems
	Form   map[string]string // their values, kept on error (never a password)
	Edit   string            // the user whose grants form had the error: "local:bob"
}

// adminDone are the messages an action's redirect may show.
var adminDone = map[string]string{
	"user-created": "User created.", "user-disabled": "User disabled: their sessions and tokens stop working.",
	"user-enabled": "User enabled.", "grants-changed": "Grants changed.", "user-deleted": "User deleted; their tokens are revoked.",
	"token-revoked": "Token revoked.",
}

// adminPage answers GET /admin.
func (c *Console) adminPage(g *gin.Context) error {
	return c.renderAdmin(g, http.StatusOK, adminView{Done: adminDone[g.Query("done")]})
}

func (c *Console) renderAdmin(g *gin.Context, status int, v adminView) error {
	ctx, id := g.Request.Context(), caller(g).Identity
	us, err := c.auth.ListUsers(ctx, id)
	if err != nil {
		return err
	}
	ts, err := c.auth.ListTokens(ctx, id, true)
	if err != nil {
		return err
	}
	v.Users = us
	for _, t := range ts {
		if t.Kind != auth.TokenSession { // sessions are logins, not tokens to manage here
			v.Tokens = append(v.Tokens, t)
		}
	}
	if v.Form == nil {
		v.Form = map[string]string{}
	}
	return c.render(g, status, "admin", "Admin", "admin", v)
}

// parseGrants reads grants, one "ROLE" or "ROLE@SELECTOR" per line.
func parseGrants(field, text string) ([]auth.Grant, error) {
	var out []auth.Grant
	for i, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		gr, err := auth.ParseGrant(l)
		if err != nil {
			var ve *host.ValidationError
			reason := err.Error()
			if errors.As(err, &ve) {
				reason = ve.Reason
			}
			return nil, host.Invalid(field, "line %d (%s): %s", i+1, l, reason)
		}
		out = append(out, gr)
	}
	return out, nil
}

// grantLines renders grants one per line, for a textarea.
func grantLines(gs []auth.Grant) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = g.String()
	}
	return strings.Join(s, "\n")
}

func init() { funcs["grantLines"] = grantLines }

// adminFormError re-renders the admin page with err next to its field, or
// returns err for the error page.
func (c *Console) adminFormError(g *gin.Context, err error, v adminView) error {
	fe, err := formError(err)
	if err != nil {
		return err
	}
	v.Errors = fe
	return c.renderAdmin(g, http.StatusBadRequest, v)
}

// adminCreateUser answers POST /admin/users (form: name, password, grants).
func (c *Console) adminCreateUser(g *gin.Context) error {
	form := map[string]string{"name": strings.TrimSpace(g.PostForm("name")), "grants": g.PostForm("grants")}
	v := adminView{Form: form}
	grants, err := parseGrants("grants", form["grants"])
	if err != nil {
		return c.adminFormError(g, err, v)
	}
	_, err = c.auth.CreateUser(g.Request.Context(), caller(g).Identity,
		auth.NewUser{Name: form["name"], Password: g.PostForm("password"), Grants: grants}, meta(g))
	if err != nil {
		return c.adminFormError(g, err, v)
	}
	g.Redirect(http.StatusSeeOther, "/admin?done=user-created")
	return nil
}

// adminUpdate applies up to the user in the path and redirects with done.
func (c *Console) adminUpdate(g *gin.Context, up auth.UserUpdate, done string) error {
	_, err := c.auth.UpdateUser(g.Request.Context(), caller(g).Identity, auth.Source(g.Param("source")), g.Param("name"), up, meta(g))
	if err != nil {
		return err
	}
	g.Redirect(http.StatusSeeOther, "/admin?done="+done)
	return nil
}

// adminDisable answers POST /admin/users/{source}/{name}/disable.
func (c *Console) adminDisable(g *gin.Context) error {
	t := true
	return c.adminUpdate(g, auth.UserUpdate{Disabled: &t}, "user-disabled")
}

// adminEnable answers POST /admin/users/{source}/{name}/enable.
func (c *Console) adminEnable(g *gin.Context) error {
	f := false
	return c.adminUpdate(g, auth.UserUpdate{Disabled: &f}, "user-enabled")
}

// adminGrants answers POST /admin/users/{source}/{name}/grants (form: grants).
func (c *Console) adminGrants(g *gin.Context) error {
	grants, err := parseGrants("grants", g.PostForm("grants"))
	if err == nil {
		err = c.adminUpdate(g, auth.UserUpdate{Grants: &grants}, "grants-changed")
	}
	if err != nil {
		return c.adminFormError(g, err, adminView{Edit: g.Param("source") + ":" + g.Param("name")})
	}
	return nil
}

// adminDeleteUser answers POST /admin/users/{source}/{name}/delete.
func (c *Console) adminDeleteUser(g *gin.Context) error {
	if err := c.auth.DeleteUser(g.Request.Context(), caller(g).Identity, auth.Source(g.Param("source")), g.Param("name"), meta(g)); err != nil {
		return err
	}
	g.Redirect(http.StatusSeeOther, "/admin?done=user-deleted")
	return nil
}

// tokenView is the page that shows a new token, once.
type tokenView struct {
	Token string     // the secret: on this answer only
	Info  auth.Token // its name, grants, expiry
}

// adminCreateToken answers POST /admin/tokens (form: name, grants,
// expires_in): a service token, shown on this answer only (never stored
// in plain, never rendered again).
func (c *Console) adminCreateToken(g *gin.Context) error {
	form := map[string]string{"token_name": strings.TrimSpace(g.PostForm("name")), "token_grants": g.PostForm("grants"),
		"expires_in": strings.TrimSpace(g.PostForm("expires_in"))}
	v := adminView{Form: form}
	grants, err := parseGrants("token_grants", form["token_grants"])
	if err != nil {
		return c.adminFormError(g, err, v)
	}
	r := auth.TokenRequest{Name: form["token_name"], Grants: grants, Service: true}
	if e := form["expires_in"]; e != "" {
		d, err := time.ParseDuration(e)
		if err != nil || d <= 0 {
			return c.adminFormError(g, host.Invalid("expires_in", "%q is not a positive duration like 720h", e), v)
		}
		r.ExpiresAt = c.now().Add(d).UTC()
	}
	plain, t, err := c.auth.CreateToken(g.Request.Context(), caller(g).Identity, r, meta(g))
	if err != nil {
		fe, ferr := formError(err)
		if ferr == nil {
			for k, msg := range fe { // the service's field names → the form's
				switch k {
				case "name":
					fe = formErrors{"token_name": msg}
				case "grants":
					fe = formErrors{"token_grants": msg}
				}
			}
			v.Errors = fe
			return c.renderAdmin(g, http.StatusBadRequest, v)
		}
		return ferr
	}
	return c.render(g, http.StatusCreated, "token", "New token", "admin", tokenView{Token: plain, Info: t})
}

// adminRevokeToken answers POST /admin/tokens/{id}/revoke.
func (c *Console) adminRevokeToken(g *gin.Context) error {
	id, err := strconv.ParseInt(g.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return host.Invalid("id", "%q is not a token id", g.Param("id"))
	}
	if err := c.auth.RevokeToken(g.Request.Context(), caller(g).Identity, id, meta(g)); err != nil {
		return fmt.Errorf("revoke token %d: %w", id, err)
	}
	g.Redirect(http.StatusSeeOther, "/admin?done=token-revoked")
	return nil
}
