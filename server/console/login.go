package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
)

// loginData is the login form's state.
type loginData struct {
	Next     string // where to go after login: a local path
	Username string // kept on error, never the password
	Error    string
}

// safeNext keeps a post-login redirect on this site: a local absolute path
// only (no scheme, no host, no "//evil").
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") ||
		strings.ContainsAny(s, "\r\n") || strings.HasPrefix(s, "/login") {
		return "/hosts"
	}
	return s
}

// loginPage answers GET /login.
func (c *Console) loginPage(g *gin.Context) error {
	g.Set("html", true)
	return c.render(g, http.StatusOK, "login", "Log in", "", loginData{Next: safeNext(g.Query("next"))})
}

// login answers POST /login (form: username, password, next): a session
// cookie and a redirect on success; the form again with one message for
// every kind of bad credentials.
func (c *Console) login(g *gin.Context) error {
	g.Set("html", true)
	if err := c.csrf.Check(g.Request); err != nil {
		c.fail(g, http.StatusForbidden, "cross-origin request refused")
		return nil
	}
	d := loginData{Next: safeNext(g.PostForm("next")), Username: g.PostForm("username")}
	sess, err := c.auth.Login(g.Request.Context(), d.Username, g.PostForm("password"), meta(g))
	if err != nil {
		status := http.StatusUnauthorized
		var te *auth.ThrottledError
		switch {
		case errors.As(err, &te):
			status, d.Error = http.StatusTooManyRequests, "Too many failed logins. Wait "+te.Wait.Round(1e9).String()+" and try again."
		case errors.Is(err, auth.ErrDirectoryDown):
			status, d.Error = http.StatusServiceUnavailable, "The directory cannot be reached. Try again later."
		case errors.Is(err, auth.ErrInvalidCredentials):
			d.Error = "Invalid username or password."
		default:
			return err
		}
		return c.render(g, status, "login", "Log in", "", d)
	}
	http.SetCookie(g.Writer, &http.Cookie{Name: SessionCookie, Value: sess.Token, Path: "/", Expires: sess.ExpiresAt,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	g.Redirect(http.StatusSeeOther, d.Next)
	return nil
}

// logout answers POST /logout.
func (c *Console) logout(g *gin.Context) error {
	if err := c.auth.Logout(g.Request.Context(), g.GetString("bearer"), meta(g)); err != nil {
		c.log.Warn("console: logout", "err", err)
	}
	http.SetCookie(g.Writer, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	g.Redirect(http.StatusSeeOther, "/login")
	return nil
}
