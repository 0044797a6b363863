package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
	"github.com/bootpilot/bootpilot/internal/store"
)

func init() {
	pageRoutes = append(pageRoutes, func(c *Console) []route {
		return []route{
			{"GET", "/hosts", auth.OpHostList, c.hostList},            // the host list: search, filters, counts, paging
			{"GET", "/hosts/changes", auth.OpHostList, c.hostChanges}, // live updates: the listed rows changed since a cursor
			{"POST", "/hosts/bulk", auth.OpBulk, c.bulkReview},        // resolve a selection once; the confirmation page
			{"POST", "/hosts/bulk/start", auth.OpBulk, c.bulkStart},   // start a bulk job on the confirmed, frozen list
			{"GET", "/jobs", auth.OpJobList, c.jobList},               // bulk jobs
			{"GET", "/jobs/:id", auth.OpJobGet, c.jobPage},            // one job, per-host progress
			{"GET", "/hosts/:name/live", auth.OpHostGet, c.hostLive},  // live updates of a host page
			{"GET", "/hosts/:name", auth.OpHostGet, c.hostPage},       // details, edit form, actions, timeline
			{"POST", "/hosts/:name", auth.OpHostUpdate, c.hostEdit},   // save the edit form
			{"GET", "/hosts/:name/iso", auth.OpHostISO, c.hostISO},    // download the ISO (rotates the boot token)
			{"POST", "/hosts/:name/power", auth.OpPower, c.hostPower}, // power on, off, restart through the BMC
			{"POST", "/hosts/:name/media/insert", auth.OpMediaIn, c.hostMediaIn},
			{"POST", "/hosts/:name/media/eject", auth.OpMediaOut, c.hostMediaOut},
			{"POST", "/hosts/:name/secure-boot", auth.OpSecureBootEnroll, c.hostSecureBoot}, // enrol the db certificate (or enable, disable: their own ops)
			{"GET", "/hosts/new", auth.OpHostList, c.hostNewPage},                           // the create form (the POST checks the permission)
			{"POST", "/hosts/new", auth.OpHostCreate, c.hostCreate},                         // register a host
		}
	})
	pageRoutes = append(pageRoutes, func(c *Console) []route {
		var out []route
		for _, e := range provision.AdminEvents() {
			out = append(out, route{"POST", "/hosts/:name/" + string(e), provision.OpOf(e), c.hostAction(e)}) // lifecycle actions
		}
		return out
	})
	funcs["stateClass"] = func(s host.State) string { return "state state-" + string(s) }
	funcs["active"] = func(s host.State) bool { return s == host.StateInstalling || s == host.StateCleaning }
	funcs["pathEscape"] = url.PathEscape
	funcs["row"] = newHostRow
}

// hostRow is one row of the host list, its text prepared in Go (a page
// has 100: fewer template calls), swapped in place by live updates (OOB),
// with a selection box when the caller may start bulk jobs.
type hostRow struct {
	Name       string // "node01"
	ID         string // "host-node01"
	Href       string // "/hosts/node01"
	State      string // "installing"
	StateClass string // "state state-installing"
	Detail     string // "attempt 1, until 14:05:00" while installing or cleaning
	Profile    string
	Labels     string // "site=dc1;team=lab"
	IPv4       string
	SeenAt     string // RFC 3339, "" when never booted
	Seen       string // "5m0s ago"
	UpdatedAt  string
	Updated    string
	OOB        bool
	Bulk       bool
}

func newHostRow(h host.Host, oob, bulk bool) hostRow {
	r := hostRow{Name: h.Name, ID: "host-" + h.Name, Href: "/hosts/" + url.PathEscape(h.Name), State: string(h.State),
		StateClass: "state state-" + string(h.State), Profile: h.Profile, Labels: host.FormatLabels(h.Labels), IPv4: h.IPv4,
		OOB: oob, Bulk: bulk}
	if h.State == host.StateInstalling || h.State == host.StateCleaning {
		r.Detail = "attempt " + strconv.Itoa(h.Attempt)
		if !h.Deadline.IsZero() {
			r.Detail += ", until " + h.Deadline.UTC().Format("15:04:05")
		}
	}
	since := funcs["since"].(func(time.Time) string)
	if !h.Inventory.SeenAt.IsZero() {
		r.SeenAt, r.Seen = h.Inventory.SeenAt.UTC().Format(time.RFC3339), since(h.Inventory.SeenAt)
	}
	r.UpdatedAt, r.Updated = h.UpdatedAt.UTC().Format(time.RFC3339), since(h.UpdatedAt)
	return r
}

// pageSize is the host list's page.
const pageSize = 100

// bulkMax is the most hosts one bulk confirmation lists.
const bulkMax = 10000

// hostQuery is the host list's query: search, filters, order and page. It
// round-trips through the URL (q, state, profile, label, sort, page).
type hostQuery struct {
	Q       string // "node1 team=lab": words search name/IPv4/MAC, k=v words filter by label
	State   string // "failed"
	Profile string // "rocky9"
	Label   string // "team=lab,site=dc1"
	Sort    string // "name", "state", "updated"
	Page    int    // from 0
}

// parseHostQuery reads a hostQuery from a request's query or form.
func parseHostQuery(get func(string) string) (hostQuery, error) {
	q := hostQuery{Q: strings.TrimSpace(get("q")), State: get("state"), Profile: get("profile"),
		Label: strings.TrimSpace(get("label")), Sort: get("sort")}
	if p := get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1_000_000 {
			return q, host.Invalid("page", "must be a page number")
		}
		q.Page = n
	}
	return q, nil
}

// filter turns q into a store filter (without paging).
func (q hostQuery) filter() (store.HostFilter, error) {
	f := store.HostFilter{State: host.State(q.State), Profile: q.Profile, Sort: q.Sort}
	labels := map[string]string{}
	var words []string
	for w := range strings.FieldsSeq(q.Q) {
		if k, v, ok := strings.Cut(w, "="); ok {
			labels[k] = v
			continue
		}
		words = append(words, w)
	}
	f.Search = strings.Join(words, " ")
	for _, kv := range strings.FieldsFunc(q.Label, func(r rune) bool { return r == ',' || r == ';' }) {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return f, host.Invalid("label", "%q is not key=value", kv)
		}
		labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if len(labels) > 0 {
		f.Labels = labels
	}
	return f, nil
}

// url returns the list's URL with q changed by set ("key", "value" pairs;
// "" removes a key); the page is reset unless set names it.
func (q hostQuery) url(set ...string) string {
	v := url.Values{}
	add := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	add("q", q.Q)
	add("state", q.State)
	add("profile", q.Profile)
	add("label", q.Label)
	add("sort", q.Sort)
	for i := 0; i+1 < len(set); i += 2 {
		v.Del(set[i])
		add(set[i], set[i+1])
	}
	if len(v) == 0 {
		return "/hosts"
	}
	return "/hosts?" + v.Encode()
}

// URL is q's own URL (for templates), keeping its page.
func (q hostQuery) URL() string { return q.url("page", pageParam(q.Page)) }

// With is q's URL with one key changed (for templates).
func (q hostQuery) With(k, v string) string { return q.url(k, v) }

func pageParam(p int) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(p)
}

// stateCount is one state's count at the top of the list.
type stateCount struct {
	State host.State
	N     int
	URL   string
}

// hostListView is the host list page. Example: 100 rows of 1,234 matching.
type hostListView struct {
	Query    hostQuery
	Hosts    []host.Host
	Counts   []stateCount
	Matching int // hosts matching the filter in any state (the "all N matching")
	Total    int // hosts matching the filter in its state
	First    int // 1-based index of the first row
	Last     int // … and of the last
	Prev     string
	Next     string
	Since    string // the live-update cursor
	Names    string // the listed names, space-separated, for the live updates
	Profiles []string
	States   []host.State
	Error    string
}

// hostList answers GET /hosts.
func (c *Console) hostList(g *gin.Context) error {
	v, err := c.hostListData(g)
	if err != nil {
		return err
	}
	return c.render(g, http.StatusOK, "hosts", "Hosts", "hosts", v)
}

func (c *Console) hostListData(g *gin.Context) (hostListView, error) {
	q, err := parseHostQuery(g.Query)
	if err != nil {
		return hostListView{}, err
	}
	v := hostListView{Query: q, States: allStates, Since: cursor(time.Now())}
	f, err := q.filter()
	if err != nil {
		return v, err
	}
	ctx, cl := g.Request.Context(), caller(g)
	// The counts and the page are independent reads: run them at once.
	type countsResult struct {
		m   map[host.State]int
		err error
	}
	countsc := make(chan countsResult, 1)
	go func() {
		m, err := c.countHosts(ctx, cl, f)
		countsc <- countsResult{m, err}
	}()
	page := f
	page.Limit, page.Offset = pageSize, q.Page*pageSize
	v.Hosts, err = c.core.ListHosts(ctx, cl, page)
	cr := <-countsc
	if err != nil {
		return v, err
	}
	if cr.err != nil {
		return v, cr.err
	}
	counts := cr.m
	for _, s := range allStates {
		if n := counts[s]; n > 0 || s == host.State(q.State) {
			v.Counts = append(v.Counts, stateCount{State: s, N: n, URL: q.url("state", string(s))})
		}
		v.Matching += counts[s]
	}
	v.Total = v.Matching
	if q.State != "" {
		v.Total = counts[host.State(q.State)]
	}
	names := make([]string, len(v.Hosts))
	for i, h := range v.Hosts {
		names[i] = h.Name
	}
	v.Names = strings.Join(names, " ")
	v.First, v.Last = page.Offset+1, page.Offset+len(v.Hosts)
	if q.Page > 0 {
		v.Prev = q.url("page", pageParam(q.Page-1))
	}
	if page.Offset+len(v.Hosts) < v.Total {
		v.Next = q.url("page", pageParam(q.Page+1))
	}
	if ps, err := c.core.ListProfiles(ctx, cl); err == nil {
		for _, p := range ps {
			v.Profiles = append(v.Profiles, p.Name)
		}
	}
	return v, nil
}

// countsTTL is how long state counts are reused for the same filter and
// grants: counting is a scan of every matching host (≈20 ms at 100,000
// hosts in SQLite), while the counts only inform; a bulk job's "all N
// matching" is resolved exactly, once, by BulkNames.
var countsTTL = 5 * time.Second

// countCache keeps recent state counts by console, filter and grants.
type countCache struct {
	mu sync.Mutex
	m  map[string]countEntry
}

type countEntry struct {
	at     time.Time
	counts map[host.State]int
}

var counts = countCache{m: map[string]countEntry{}}

// countHosts is Core.CountHosts, reused for countsTTL per filter and
// caller grants.
func (c *Console) countHosts(ctx context.Context, cl provision.Caller, f store.HostFilter) (map[host.State]int, error) {
	if countsTTL <= 0 {
		return c.core.CountHosts(ctx, cl, f)
	}
	key, err := json.Marshal(struct {
		Console string
		F       store.HostFilter
		Grants  []auth.Grant
	}{fmt.Sprintf("%p", c), f, cl.Grants})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	counts.mu.Lock()
	e, ok := counts.m[string(key)]
	counts.mu.Unlock()
	if ok && now.Sub(e.at) < countsTTL {
		return e.counts, nil
	}
	m, err := c.core.CountHosts(ctx, cl, f)
	if err != nil {
		return nil, err
	}
	counts.mu.Lock()
	defer counts.mu.Unlock()
	if len(counts.m) >= 1000 {
		for k, e := range counts.m {
			if now.Sub(e.at) >= countsTTL {
				delete(counts.m, k)
			}
		}
		if len(counts.m) >= 1000 {
			clear(counts.m)
		}
	}
	counts.m[string(key)] = countEntry{at: now, counts: m}
	return m, nil
}

// allStates are the states in the order the counts show them.
var allStates = []host.State{host.StateReady, host.StateReimage, host.StateInstalling, host.StateClean,
	host.StateCleaning, host.StateFailed, host.StateHold, host.StateDiscovered}

// cursorSlack re-sends rows changed this long before a cursor: a change
// stamped just before a look but committed just after it is not lost.
const cursorSlack = 2 * time.Second

// cursor is the live-update cursor for a look at t. The store stamps
// updated_at with the wall clock, so the cursor does too.
func cursor(t time.Time) string { return t.Add(-cursorSlack).UTC().Format(time.RFC3339Nano) }

// hostChanges answers GET /hosts/changes?since=CURSOR&names=a+b+c: the
// rows among names changed after since, each swapped in place (htmx
// out-of-band), with a new cursor; 204 when nothing changed. The list
// polls every 10 s: an idle console costs one small request and one
// indexed lookup per 10 s.
func (c *Console) hostChanges(g *gin.Context) error {
	since, err := time.Parse(time.RFC3339Nano, g.Query("since"))
	if err != nil {
		return host.Invalid("since", "must be a cursor from the page")
	}
	names := strings.Fields(g.Query("names"))
	if len(names) > pageSize {
		names = names[:pageSize]
	}
	now := time.Now()
	hs, err := c.core.ListHosts(g.Request.Context(), caller(g), store.HostFilter{Names: names, UpdatedAfter: since})
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		g.Status(http.StatusNoContent)
		return nil
	}
	return c.fragment(g, "hosts", "hostchanges", struct {
		Hosts []host.Host
		Since string
	}{hs, cursor(now)})
}

// fragment renders template name of page's set alone (an htmx answer).
func (c *Console) fragment(g *gin.Context, page, name string, data any) error {
	t, ok := c.pages[page]
	if !ok {
		return fmt.Errorf("console: no page %s", page)
	}
	p := pageData(g, data)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, p); err != nil {
		return err
	}
	g.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
	return nil
}

// pageData is the page struct for a fragment.
func pageData(g *gin.Context, data any) page {
	p := page{Data: data}
	if id, ok := g.Get("identity"); ok {
		p.Caller, _ = id.(auth.Identity)
	}
	return p
}

// bulkView is the bulk confirmation page: the frozen list of names.
type bulkView struct {
	Action string   // "reimage"
	Via    string   // "redfish" or ""
	Names  []string // exactly the hosts the job will run on
	Reason string
	Back   string // the list it came from
	All    bool   // resolved from "all matching"
}

// bulkReview answers POST /hosts/bulk (form: action, via, scope=selected
// with host=NAME… or scope=all with the list's filter): the selection is
// resolved here, once, into an explicit list of names, shown for
// confirmation. Nothing runs until that list is posted to
// /hosts/bulk/start.
func (c *Console) bulkReview(g *gin.Context) error {
	v := bulkView{Action: g.PostForm("action"), Via: g.PostForm("via"), Reason: g.PostForm("reason")}
	if !slices.Contains(provision.BulkEvents(), host.Event(v.Action)) {
		return host.Invalid("action", "choose reimage, clean or cancel")
	}
	if v.Via != "" && v.Via != "redfish" {
		return host.Invalid("via", "%q is not a delivery method", v.Via)
	}
	if v.Via != "" && v.Action == string(host.EventCancel) {
		return host.Invalid("via", "only reimage and clean go via Redfish; cancel just flags")
	}
	q, err := parseHostQuery(g.PostForm)
	if err != nil {
		return err
	}
	v.Back = q.URL()
	switch g.PostForm("scope") {
	case "all":
		f, err := q.filter()
		if err != nil {
			return err
		}
		v.All = true
		if v.Names, err = c.core.BulkNames(g.Request.Context(), caller(g), f, bulkMax); err != nil {
			return err
		}
	default:
		for _, n := range g.PostFormArray("host") {
			if n != "" && !slices.Contains(v.Names, n) {
				v.Names = append(v.Names, n)
			}
		}
		if len(v.Names) > bulkMax {
			return host.Invalid("host", "more than %d hosts selected", bulkMax)
		}
	}
	if len(v.Names) == 0 {
		return host.Invalid("host", "no host selected: tick some rows, or choose all matching")
	}
	return c.render(g, http.StatusOK, "bulk", "Confirm bulk "+v.Action, "hosts", v)
}

// bulkStart answers POST /hosts/bulk/start (form: action, via, reason,
// host=NAME… — the confirmed list): one job on exactly those names.
func (c *Console) bulkStart(g *gin.Context) error {
	names := g.PostFormArray("host")
	if len(names) == 0 {
		return host.Invalid("host", "no host to run on")
	}
	if len(names) > bulkMax {
		return host.Invalid("host", "more than %d hosts", bulkMax)
	}
	job, err := c.core.StartBulk(g.Request.Context(), caller(g), host.Event(g.PostForm("action")), provision.BulkRequest{
		Selector: provision.BulkSelector{Names: names}, Via: g.PostForm("via"), Reason: g.PostForm("reason")})
	if err != nil {
		return err
	}
	g.Redirect(http.StatusSeeOther, "/jobs/"+url.PathEscape(job.ID))
	return nil
}

// jobList answers GET /jobs.
func (c *Console) jobList(g *gin.Context) error {
	jobs, err := c.core.ListJobs(g.Request.Context(), caller(g))
	if err != nil {
		return err
	}
	slices.Reverse(jobs) // newest first
	return c.render(g, http.StatusOK, "jobs", "Jobs", "jobs", jobs)
}

// jobView is one job's page.
type jobView struct {
	Job    provision.Job
	States []string // the status columns, in order
}

// jobPage answers GET /jobs/{id}; while the job runs, the page polls its
// own table.
func (c *Console) jobPage(g *gin.Context) error {
	j, err := c.core.GetJob(g.Request.Context(), caller(g), g.Param("id"))
	if err != nil {
		return err
	}
	return c.render(g, http.StatusOK, "job", "Job "+j.ID, "jobs", jobView{Job: j,
		States: []string{provision.JobQueued, provision.JobRunning, provision.JobDone, provision.JobFailed}})
}
