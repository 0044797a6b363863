// Package console is bootpilot's web console: server-rendered pages
// (html/template, every value escaped by the template engine) with htmx
// 2.x vendored and embedded, on the server's own HTTPS listener. It calls
// the core (internal/provision) and the operator service (internal/auth)
// exactly like the REST API — it holds no business rule of its own: what
// a caller may do is decided there, and the console only hides what the
// same checks would refuse.
//
// Security: the session cookie (HttpOnly, Secure, SameSite=Strict) is the
// only credential; state-changing requests pass Go's cross-origin
// protection (Sec-Fetch-Site / Origin); the Content-Security-Policy allows
// scripts and styles from this origin only (no inline script or style).
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Auth is what the console needs from the operator service (implemented by
// *auth.Service).
type Auth interface {
	Authenticate(ctx context.Context, bearer string) (auth.Identity, error)
	Login(ctx context.Context, username, password string, m auth.Meta) (auth.Session, error)
	Logout(ctx context.Context, bearer string, m auth.Meta) error
	CreateToken(ctx context.Context, caller auth.Identity, r auth.TokenRequest, m auth.Meta) (string, auth.Token, error)
	ListTokens(ctx context.Context, caller auth.Identity, all bool) ([]auth.Token, error)
	RevokeToken(ctx context.Context, caller auth.Identity, id int64, m auth.Meta) error
	CreateUser(ctx context.Context, caller auth.Identity, u auth.NewUser, m auth.Meta) (auth.User, error)
	ListUsers(ctx context.Context, caller auth.Identity) ([]auth.User, error)
	UpdateUser(ctx context.Context, caller auth.Identity, source auth.Source, name string, up auth.UserUpdate, m auth.Meta) (auth.User, error)
	DeleteUser(ctx context.Context, caller auth.Identity, source auth.Source, name string, m auth.Meta) error
	Audit(ctx context.Context, caller auth.Identity, f auth.AuditFilter) ([]host.Record, error)
}

// Handle registers one console route with its op (the server's route
// table: the same policy table and pre-check as the API).
type Handle func(g gin.IRoutes, method, path string, op auth.Op, h func(*gin.Context) error)

// Options configure a Console.
type Options struct {
	Core   *provision.Core
	Auth   Auth
	Logger *slog.Logger
	Now    func() time.Time
}

// Console serves the web console.
type Console struct {
	core  *provision.Core
	auth  Auth
	log   *slog.Logger
	now   func() time.Time
	pages map[string]*template.Template // page name → layout + page
	csrf  *http.CrossOriginProtection
}

// SessionCookie is the cookie holding the session token (shared with the
// API's authentication).
const SessionCookie = "bootpilot_session"

// CSP is the console's Content-Security-Policy.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// New parses the templates, once.
func New(o Options) (*Console, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{core: o.Core, auth: o.Auth, log: o.Logger, now: o.Now, pages: map[string]*template.Template{},
		csrf: http.NewCrossOriginProtection()}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		c.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t.Option("missingkey=error")
	}
	return c, nil
}

// Register adds the console's routes: static files and the login page
// without a session, every other page behind c.session.
func (c *Console) Register(e *gin.Engine, handle Handle) {
	static, _ := fs.Sub(staticFS, "static")
	fsrv := http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	handle(e, "GET", "/static/*file", auth.OpPublic, func(g *gin.Context) error {
		g.Header("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(g.Writer, g.Request)
		return nil
	}) // htmx, CSS, console.js
	handle(e, "GET", "/login", auth.OpPublic, c.loginPage) // the login form
	handle(e, "POST", "/login", auth.OpLogin, c.login)     // check credentials, set the session cookie
	ui := e.Group("", c.session)
	handle(ui, "POST", "/logout", auth.OpLogout, c.logout) // end the session
	for _, r := range c.routes() {
		handle(ui, r.method, r.path, r.op, r.h)
	}
}

// route is one console page or action.
type route struct {
	method, path string
	op           auth.Op
	h            func(*gin.Context) error
}

// routes lists the console's pages and actions; each screen's file adds
// its own through pageRoutes.
func (c *Console) routes() []route {
	var out []route
	for _, fn := range pageRoutes {
		out = append(out, fn(c)...)
	}
	return out
}

// pageRoutes is filled by each screen's file in an init function, so
// screens are added without touching a shared list.
var pageRoutes []func(c *Console) []route

// session authenticates the console's requests from the session cookie:
// without a valid one a page redirects to /login (an htmx request gets a
// HX-Redirect); a state-changing request must come from this origin.
func (c *Console) session(g *gin.Context) {
	g.Set("html", true)
	ck, err := g.Cookie(SessionCookie)
	if err == nil && ck != "" {
		if err := c.csrf.Check(g.Request); err != nil {
			c.fail(g, http.StatusForbidden, "cross-origin request refused")
			g.Abort()
			return
		}
		id, err := c.auth.Authenticate(g.Request.Context(), ck)
		if err == nil {
			g.Set("identity", id)
			g.Set("bearer", ck)
			g.Next()
			return
		}
		if !errors.Is(err, host.ErrUnauthorized) {
			c.log.Error("console: authenticate", "err", err)
			c.fail(g, http.StatusServiceUnavailable, "cannot check your session; try again")
			g.Abort()
			return
		}
	}
	next := "/login?next=" + url.QueryEscape(g.Request.URL.RequestURI())
	if g.GetHeader("HX-Request") == "true" {
		g.Header("HX-Redirect", next)
		g.Status(http.StatusUnauthorized)
	} else {
		g.Redirect(http.StatusSeeOther, next)
	}
	g.Abort()
}

// caller is who makes this request, for the core.
func caller(g *gin.Context) provision.Caller {
	id, _ := g.Get("identity")
	ident, _ := id.(auth.Identity)
	return provision.Caller{Identity: ident, RequestID: g.GetString("request_id"), ClientAddr: g.ClientIP()}
}

// meta is the request's audit context for the operator service.
func meta(g *gin.Context) auth.Meta {
	return auth.Meta{ClientAddr: g.ClientIP(), RequestID: g.GetString("request_id")}
}

// page is what every page template gets: the caller, the page's own data,
// and a flash message.
type page struct {
	Title  string
	Caller auth.Identity
	Nav    string // the active menu entry: "hosts", "profiles"…
	Flash  string
	Data   any
}

// can reports whether the caller may use op on a host with labels (nil:
// any host) — for showing buttons only; the core decides.
func (p page) Can(op string, labels map[string]string) bool {
	return p.Caller.Authorize(auth.Op(op), labels) == nil
}

// render writes page name with data; a template error is a 500 with the
// details logged once.
func (c *Console) render(g *gin.Context, status int, name, title, nav string, data any) error {
	t, ok := c.pages[name]
	if !ok {
		return errors.New("console: no page " + name)
	}
	p := page{Title: title, Nav: nav, Data: data}
	if id, ok := g.Get("identity"); ok {
		p.Caller, _ = id.(auth.Identity)
	}
	var buf bytes.Buffer
	tmpl := "layout"
	if g.GetHeader("HX-Request") == "true" && g.GetHeader("HX-Boosted") != "true" {
		tmpl = "content" // an htmx fragment: the page's content block only
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		return err
	}
	g.Data(status, "text/html; charset=utf-8", buf.Bytes())
	return nil
}

// fail renders an error page (or, for htmx, an error fragment).
func (c *Console) fail(g *gin.Context, status int, msg string) {
	t := c.pages["error"]
	var buf bytes.Buffer
	p := page{Title: http.StatusText(status), Data: struct {
		Status  int
		Message string
	}{status, msg}}
	if id, ok := g.Get("identity"); ok {
		p.Caller, _ = id.(auth.Identity)
	}
	name := "layout"
	if g.GetHeader("HX-Request") == "true" {
		name = "content"
	}
	if t == nil || t.ExecuteTemplate(&buf, name, p) != nil {
		g.String(status, "%s\n", msg)
		return
	}
	g.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// RenderError renders err as the console's error page with the server's
// status for it: the server's one error table calls this for console
// routes.
func (c *Console) RenderError(g *gin.Context, status int, msg string) { c.fail(g, status, msg) }

// funcs are the template helpers.
var funcs = template.FuncMap{
	"since": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return d.String() + " ago"
		case d < time.Hour:
			return d.Round(time.Minute).String() + " ago"
		case d < 48*time.Hour:
			return d.Round(time.Hour).String() + " ago"
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
	"rfc3339": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"labels": host.FormatLabels,
	"grant":  func(g auth.Grant) string { return g.String() },
}
