package console

import (
	"net/http"
	"net/url"
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
			{"GET", "/audit", auth.OpAuditRead, c.auditPage}, // the global audit log, newest first, filtered and paged
		}
	})
}

// auditPageSize is how many records one audit page shows.
const auditPageSize = 50

// auditView is the audit page.
type auditView struct {
	Actor, Host, Action string // the filters as typed: "local:alice", "node01", "reimage"
	Since, Until        string // "2026-12-01T10:00" (a datetime-local input) or RFC 3339
	Records             []host.Record
	Next                string // the next (older) page's URL; "" on the last page
	CSV                 string // the REST export's URL with the same filters
	Errors              formErrors
}

// auditPage answers GET /audit?actor=&host=&action=&since=&until=&before=.
func (c *Console) auditPage(g *gin.Context) error {
	v := auditView{Actor: strings.TrimSpace(g.Query("actor")), Host: strings.TrimSpace(g.Query("host")),
		Action: strings.TrimSpace(g.Query("action")), Since: g.Query("since"), Until: g.Query("until"), Errors: formErrors{}}
	f := auth.AuditFilter{Actor: v.Actor, Host: v.Host, Action: v.Action, Limit: auditPageSize}
	q := url.Values{}
	for k, val := range map[string]string{"actor": v.Actor, "host": v.Host, "action": v.Action} {
		if val != "" {
			q.Set(k, val)
		}
	}
	for _, t := range []struct {
		field string
		in    string
		dst   *time.Time
	}{{"since", v.Since, &f.Since}, {"until", v.Until, &f.Until}} {
		if t.in == "" {
			continue
		}
		tm, err := parseFormTime(t.in)
		if err != nil {
			v.Errors[t.field] = "Not a time: use the picker, or 2026-12-01T10:00:00Z."
			continue
		}
		*t.dst = tm
		q.Set(t.field, tm.UTC().Format(time.RFC3339))
	}
	if len(v.Errors) > 0 {
		return c.render(g, http.StatusBadRequest, "audit", "Audit log", "audit", v)
	}
	if b := g.Query("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return host.Invalid("before", "%q is not an event id", b)
		}
		f.Before = n
	}
	recs, err := c.auth.Audit(g.Request.Context(), caller(g).Identity, f)
	if err != nil {
		return err
	}
	v.Records = recs
	csvQ := url.Values{"format": {"csv"}}
	for k, vs := range q {
		csvQ[k] = vs
	}
	v.CSV = "/api/v1/audit?" + csvQ.Encode()
	if len(recs) == auditPageSize {
		nq := url.Values{"before": {strconv.FormatInt(recs[len(recs)-1].ID, 10)}}
		for k, vs := range q {
			nq[k] = vs
		}
		v.Next = "/audit?" + nq.Encode()
	}
	return c.render(g, http.StatusOK, "audit", "Audit log", "audit", v)
}

// parseFormTime reads a datetime-local value ("2026-12-01T10:00", UTC) or
// an RFC 3339 time.
func parseFormTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, host.Invalid("time", "%q is not a time", s)
}
