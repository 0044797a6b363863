package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

// hostForm is the edit and create form's values, as typed.
type hostForm struct {
	Name             string // create only
	MACs             string // "52:54:00:12:34:56, 52:54:00:12:34:57"
	IPv4             string // "10.0.2.15/24"
	Gateway          string
	DNS              string // "10.0.2.3, 10.0.2.4"
	IPv6             string
	Gateway6         string
	VLAN             string // "0"
	Hostname         string
	Domain           string
	Profile          string
	Labels           string // "team=lab;site=dc1"
	CleanThenInstall bool
}

// formOf fills a form from h.
func formOf(h host.Host) hostForm {
	f := hostForm{Name: h.Name, MACs: strings.Join(h.MACs, ", "), IPv4: h.IPv4, Gateway: h.Gateway,
		DNS: strings.Join(h.DNS, ", "), IPv6: h.IPv6, Gateway6: h.Gateway6, Hostname: h.Hostname, Domain: h.Domain,
		Profile: h.Profile, Labels: host.FormatLabels(h.Labels), CleanThenInstall: h.CleanThenInstall}
	if h.VLAN != 0 {
		f.VLAN = strconv.Itoa(h.VLAN)
	}
	return f
}

// readHostForm reads the form of a POST.
func readHostForm(g *gin.Context) hostForm {
	return hostForm{Name: strings.TrimSpace(g.PostForm("name")), MACs: g.PostForm("macs"), IPv4: strings.TrimSpace(g.PostForm("ipv4")),
		Gateway: strings.TrimSpace(g.PostForm("gateway")), DNS: g.PostForm("dns"), IPv6: strings.TrimSpace(g.PostForm("ipv6")),
		Gateway6: strings.TrimSpace(g.PostForm("gateway6")), VLAN: strings.TrimSpace(g.PostForm("vlan")),
		Hostname: strings.TrimSpace(g.PostForm("hostname")), Domain: strings.TrimSpace(g.PostForm("domain")),
		Profile: g.PostForm("profile"), Labels: strings.TrimSpace(g.PostForm("labels")), CleanThenInstall: g.PostForm("clean_then_install") != ""}
}

// list splits a comma- or space-separated list.
func list(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// update turns the form into a full update (the core reports what changed).
func (f hostForm) update() (provision.HostUpdate, error) {
	vlan := 0
	if f.VLAN != "" {
		n, err := strconv.Atoi(f.VLAN)
		if err != nil {
			return provision.HostUpdate{}, host.Invalid("vlan", "must be a number from 0 to 4094")
		}
		vlan = n
	}
	labels, err := host.ParseLabels(f.Labels)
	if err != nil {
		return provision.HostUpdate{}, err
	}
	macs, dns := list(f.MACs), list(f.DNS)
	cti := f.CleanThenInstall
	return provision.HostUpdate{MACs: &macs, IPv4: &f.IPv4, Gateway: &f.Gateway, DNS: &dns, IPv6: &f.IPv6,
		Gateway6: &f.Gateway6, VLAN: &vlan, Hostname: &f.Hostname, Domain: &f.Domain, Profile: &f.Profile,
		Labels: &labels, CleanThenInstall: &cti}, nil
}

// fieldProblem returns the form field err is about and its message, or ok
// false when err is not about the input (then it is the page's error).
func fieldProblem(err error) (field, msg string, ok bool) {
	var ve *host.ValidationError
	var fe interface{ FieldName() string }
	switch {
	case errors.As(err, &ve):
		field, msg = ve.Field, ve.Reason
	case errors.As(err, &fe):
		field, msg = fe.FieldName(), err.Error()
	default:
		return "", "", false
	}
	if i := strings.IndexAny(field, "[."); i > 0 {
		field = field[:i] // "dns[1]" → "dns"
	}
	return field, msg, true
}

// hostView is a host's page.
type hostView struct {
	New      bool // the create form
	Host     host.Host
	Labels   map[string]string // never nil (nil means "any host" to .Can)
	BMC      *host.BMCInfo     // nil: none set, or not readable
	Events   []host.Record
	Form     hostForm
	Errors   map[string]string // form field → problem
	Flash    string
	Problem  string // an action's refusal, shown at the top
	Profiles []string
	Actions  []hostAction
}

// hostAction is one action button on a host page.
type hostAction struct {
	Label    string // "Reimage"
	Op       string // "host.reimage"
	Path     string // "/hosts/node01/reimage"
	Dialog   string // the dialog's id
	Hidden   map[string]string
	Via      bool   // offers "via Redfish"
	EnrollDB bool   // offers "enrol the db certificate first" (reimage via Redfish)
	Danger   bool   // shown in red
	Confirm  string // the dialog's question
}

// actions lists the host page's action buttons (templates show those the
// caller's grants allow).
func actions(name string) []hostAction {
	base := "/hosts/" + url.PathEscape(name)
	ev := func(label string, e host.Event, via, danger bool, q string) hostAction {
		return hostAction{Label: label, Op: string(provision.OpOf(e)), Path: base + "/" + string(e), Dialog: "dlg-" + string(e),
			Via: via, Danger: danger, Confirm: q}
	}
	reimage := ev("Reimage", host.EventReimage, true, true, "Reinstall "+name+" on its next boot? Its disk is overwritten.")
	reimage.EnrollDB = true
	return []hostAction{
		reimage,
		ev("Clean", host.EventClean, true, true, "Wipe "+name+"'s disks on its next boot?"),
		ev("Cancel", host.EventCancel, false, false, "Cancel the pending action on "+name+"? It boots its disk again."),
		ev("Retry", host.EventRetry, false, true, "Retry "+name+"'s failed action?"),
		ev("Hold", host.EventHold, false, false, "Hold "+name+"? It boots its disk until released."),
		ev("Release", host.EventRelease, false, false, "Release "+name+" from hold?"),
		ev("Adopt", host.EventAdopt, false, false, "Adopt discovered host "+name+" as ready?"),
		{Label: "Power on", Op: "bmc.power", Path: base + "/power", Dialog: "dlg-power-on", Hidden: map[string]string{"action": "on"},
			Confirm: "Power on " + name + " through its BMC?"},
		{Label: "Power off", Op: "bmc.power", Path: base + "/power", Dialog: "dlg-power-off", Hidden: map[string]string{"action": "off"},
			Danger: true, Confirm: "Power off " + name + " now (no clean shutdown)?"},
		{Label: "Restart", Op: "bmc.power", Path: base + "/power", Dialog: "dlg-power-restart", Hidden: map[string]string{"action": "restart"},
			Danger: true, Confirm: "Restart " + name + " now?"},
		{Label: "Insert media", Op: "bmc.media-insert", Path: base + "/media/insert", Dialog: "dlg-media-insert",
			Confirm: "Build " + name + "'s ISO (its boot token changes) and insert it as virtual media?"},
		{Label: "Eject media", Op: "bmc.media-eject", Path: base + "/media/eject", Dialog: "dlg-media-eject",
			Confirm: "Eject the virtual media of " + name + "?"},
		{Label: "Enrol db certificate", Op: "bmc.secure-boot-enroll", Path: base + "/secure-boot", Dialog: "dlg-secure-boot-enroll",
			Hidden: map[string]string{"action": "enroll"},
			Confirm: "Add the server's Secure Boot db certificate (the one its ISOs are signed with) to " + name +
				"'s db through its BMC, if missing? It takes effect at the next restart."},
	}
}

// hostData loads a host's page.
func (c *Console) hostData(g *gin.Context, name string) (hostView, error) {
	ctx, cl := g.Request.Context(), caller(g)
	h, err := c.core.GetHost(ctx, cl, name)
	if err != nil {
		return hostView{}, err
	}
	v := hostView{Host: h, Labels: labelsOrEmpty(h.Labels), Form: formOf(h), Errors: map[string]string{}, Actions: actions(h.Name)}
	if b, err := c.core.GetBMC(ctx, cl, name); err == nil {
		v.BMC = &b
	}
	if v.Events, err = c.core.HostEvents(ctx, cl, name, 50); err != nil {
		return v, err
	}
	if ps, err := c.core.ListProfiles(ctx, cl); err == nil {
		for _, p := range ps {
			v.Profiles = append(v.Profiles, p.Name)
		}
	}
	switch d := g.Query("done"); d {
	case "saved":
		v.Flash = "Saved."
	case "":
	default:
		v.Flash = "Done: " + d + "."
	}
	return v, nil
}

func labelsOrEmpty(l host.Labels) map[string]string {
	if l == nil {
		return map[string]string{}
	}
	return l
}

// hostPage answers GET /hosts/{name}.
func (c *Console) hostPage(g *gin.Context) error {
	v, err := c.hostData(g, g.Param("name"))
	if err != nil {
		return err
	}
	return c.render(g, http.StatusOK, "host", v.Host.Name, "hosts", v)
}

// hostLive answers GET /hosts/{name}/live?v=VERSION: 204 while the host
// is at that version (one primary-key read), else the page's live part.
func (c *Console) hostLive(g *gin.Context) error {
	h, err := c.core.GetHost(g.Request.Context(), caller(g), g.Param("name"))
	if err != nil {
		return err
	}
	if g.Query("v") == strconv.FormatInt(h.Version, 10) {
		g.Status(http.StatusNoContent)
		return nil
	}
	v, err := c.hostData(g, h.Name)
	if err != nil {
		return err
	}
	return c.fragment(g, "host", "hostlive", v)
}

// hostEdit answers POST /hosts/{name} (the edit form): a field's problem
// is shown next to it, the form keeping what was typed.
func (c *Console) hostEdit(g *gin.Context) error {
	name := g.Param("name")
	f := readHostForm(g)
	u, err := f.update()
	if err == nil {
		_, err = c.core.UpdateHost(g.Request.Context(), caller(g), name, u)
	}
	if err == nil {
		g.Redirect(http.StatusSeeOther, "/hosts/"+url.PathEscape(name)+"?done=saved")
		return nil
	}
	field, msg, ok := fieldProblem(err)
	if !ok {
		return err
	}
	v, lerr := c.hostData(g, name)
	if lerr != nil {
		return lerr
	}
	f.Name = name
	v.Form, v.Errors[field] = f, msg
	if !isFormField(field) {
		v.Errors[""] = field + ": " + msg
	}
	return c.render(g, http.StatusBadRequest, "host", name, "hosts", v)
}

// isFormField reports whether the form has an input for field.
func isFormField(field string) bool {
	switch field {
	case "name", "macs", "ipv4", "gateway", "dns", "ipv6", "gateway6", "vlan", "hostname", "domain", "profile", "labels":
		return true
	}
	return false
}

// hostAction answers POST /hosts/{name}/{event} (form: reason, via).
func (c *Console) hostAction(e host.Event) func(*gin.Context) error {
	return func(g *gin.Context) error {
		name := g.Param("name")
		_, err := c.core.Act(g.Request.Context(), caller(g), name, e, provision.ActionOptions{
			Reason: g.PostForm("reason"), Via: g.PostForm("via"), EnrollDB: g.PostForm("enroll_db") == "true"})
		return c.afterAction(g, name, string(e), err)
	}
}

// afterAction redirects back to the host page, or shows the page with
// the refusal (a transition the state does not allow, a BMC that failed);
// not found and forbidden are error pages.
func (c *Console) afterAction(g *gin.Context, name, what string, err error) error {
	if err == nil {
		g.Redirect(http.StatusSeeOther, "/hosts/"+url.PathEscape(name)+"?done="+url.QueryEscape(what))
		return nil
	}
	if errors.Is(err, host.ErrNotFound) || errors.Is(err, host.ErrForbidden) || errors.Is(err, host.ErrUnauthorized) {
		return err
	}
	v, lerr := c.hostData(g, name)
	if lerr != nil {
		return err
	}
	v.Problem = what + ": " + err.Error()
	status := http.StatusConflict
	var ve *host.ValidationError
	var nc provision.ErrNotConfigured
	switch {
	case errors.As(err, &ve):
		status = http.StatusBadRequest
	case errors.As(err, &nc):
		status = http.StatusNotImplemented
	case errors.As(err, new(provision.ErrBMCUnsupported)):
		status = http.StatusConflict // the BMC lacks it; the message says what to do instead
	case !errors.Is(err, host.ErrConflict) && !errors.Is(err, host.ErrInvalidTransition):
		status = http.StatusBadGateway
	}
	return c.render(g, status, "host", name, "hosts", v)
}

// hostISO answers GET /hosts/{name}/iso: the host's ISO with a new boot
// token (the old one stops working).
func (c *Console) hostISO(g *gin.Context) error {
	name := g.Param("name")
	b, err := c.core.HostISO(g.Request.Context(), caller(g), name)
	if err != nil {
		return err
	}
	g.Header("Content-Disposition", `attachment; filename="`+name+`.iso"`)
	g.Data(http.StatusOK, "application/octet-stream", b)
	return nil
}

// hostPower answers POST /hosts/{name}/power (form: action on, off or
// restart; reason).
func (c *Console) hostPower(g *gin.Context) error {
	name, action := g.Param("name"), g.PostForm("action")
	_, err := c.core.Power(g.Request.Context(), caller(g), name, provision.PowerRequest{Action: action, Reason: g.PostForm("reason")})
	return c.afterAction(g, name, "power "+action, err)
}

// hostSecureBoot answers POST /hosts/{name}/secure-boot (form: action
// enroll, enable or disable; reason).
func (c *Console) hostSecureBoot(g *gin.Context) error {
	name, action := g.Param("name"), g.PostForm("action")
	res, err := c.core.ChangeSecureBoot(g.Request.Context(), caller(g), name, provision.SecureBootRequest{Action: action, Reason: g.PostForm("reason")})
	what := "secure boot " + action
	switch {
	case err != nil:
	case len(res.Changes) > 0:
		what = strings.Join(res.Changes, ", ") + "; " + provision.PendingRestartMessage
	case action == "enroll":
		what = "db certificate already in db"
	}
	return c.afterAction(g, name, what, err)
}

// hostMediaIn answers POST /hosts/{name}/media/insert.
func (c *Console) hostMediaIn(g *gin.Context) error {
	name := g.Param("name")
	_, err := c.core.InsertMedia(g.Request.Context(), caller(g), name, g.PostForm("reason"))
	return c.afterAction(g, name, "media inserted", err)
}

// hostMediaOut answers POST /hosts/{name}/media/eject.
func (c *Console) hostMediaOut(g *gin.Context) error {
	name := g.Param("name")
	err := c.core.EjectMedia(g.Request.Context(), caller(g), name, g.PostForm("reason"))
	return c.afterAction(g, name, "media ejected", err)
}

// hostNewPage answers GET /hosts/new.
func (c *Console) hostNewPage(g *gin.Context) error {
	v := hostView{New: true, Errors: map[string]string{}, Profiles: c.profileNames(g)}
	return c.render(g, http.StatusOK, "host", "New host", "hosts", v)
}

func (c *Console) profileNames(g *gin.Context) []string {
	var out []string
	if ps, err := c.core.ListProfiles(g.Request.Context(), caller(g)); err == nil {
		for _, p := range ps {
			out = append(out, p.Name)
		}
	}
	return out
}

// hostCreate answers POST /hosts/new.
func (c *Console) hostCreate(g *gin.Context) error {
	f := readHostForm(g)
	u, err := f.update()
	if err == nil {
		_, err = c.core.CreateHost(g.Request.Context(), caller(g), provision.NewHost{Name: f.Name, HostUpdate: u})
	}
	if err == nil {
		g.Redirect(http.StatusSeeOther, "/hosts/"+url.PathEscape(f.Name)+"?done=created")
		return nil
	}
	field, msg, ok := fieldProblem(err)
	if !ok {
		return err
	}
	v := hostView{New: true, Form: f, Errors: map[string]string{field: msg}, Profiles: c.profileNames(g)}
	if !isFormField(field) {
		v.Errors[""] = field + ": " + msg
	}
	return c.render(g, http.StatusBadRequest, "host", "New host", "hosts", v)
}
