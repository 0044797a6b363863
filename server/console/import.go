package console

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/provision"
)

func init() {
	pageRoutes = append(pageRoutes, func(c *Console) []route {
		return []route{
			{"GET", "/import", auth.OpImportPlan, c.importPage},          // the CSV upload form
			{"POST", "/import", auth.OpImportPlan, c.importDryRun},       // upload: the dry-run diff, nothing applied
			{"POST", "/import/apply", auth.OpHostImport, c.importApply},  // apply the dry-run's file: all hosts or none
			{"POST", "/import/isos", auth.OpHostISO, c.importISOArchive}, // one zip of the imported hosts' ISOs (rotates their boot tokens)
		}
	})
}

// MaxImportCSV caps an imported CSV file: the apply form carries it back
// (base64) within the server's 1 MiB request body limit.
const MaxImportCSV = 700 << 10

// importView is the import page's state.
type importView struct {
	FileName  string          // "hosts.csv"
	Encoded   string          // the file, base64, carried to the apply
	Digest    string          // SHA-256 hex of the file: the apply refuses another file
	Error     string          // a problem with the upload itself
	RowErrors []importRowErr  // problems by line and column: nothing can be applied
	Rows      []importRow     // the dry-run (or applied) diff, in file order
	Create    int             // how many hosts are created
	Update    int             // … updated
	Unchanged int             // … left as they are
	Applied   bool            // the result of an apply
	Names     []string        // applied: the hosts created or updated (for the ISO archive)
	Columns   map[string]bool // the file's columns
}

// importRowErr is one problem: "hosts.csv line 3, column mac: …".
type importRowErr struct {
	Line   int    // 3
	Column string // "mac"
	Reason string // `"zz" is not a 48-bit MAC address`
}

// importRow is one host of the diff.
type importRow struct {
	Line    int      // 2
	Name    string   // "node01"
	Action  string   // "create", "update", "unchanged"
	Fields  []string // update: ["ipv4", "labels"]
	Applied bool
}

// importPage answers GET /import.
func (c *Console) importPage(g *gin.Context) error {
	return c.render(g, http.StatusOK, "import", "Import hosts", "import", importView{})
}

// importDryRun answers POST /import (multipart: csv): the diff of what
// applying the file would do; nothing is stored.
func (c *Console) importDryRun(g *gin.Context) error {
	v := importView{}
	fh, err := g.FormFile("csv")
	if err != nil {
		v.Error = "Choose a CSV file to upload."
		return c.render(g, http.StatusBadRequest, "import", "Import hosts", "import", v)
	}
	if fh.Size > MaxImportCSV {
		v.Error = fmt.Sprintf("The file has %d bytes; at most %d are accepted. Split it.", fh.Size, MaxImportCSV)
		return c.render(g, http.StatusBadRequest, "import", "Import hosts", "import", v)
	}
	f, err := fh.Open()
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxImportCSV+1))
	if err != nil {
		return err
	}
	v.FileName = path.Base(strings.ReplaceAll(fh.Filename, `\`, "/"))
	if v.FileName == "" || v.FileName == "." || v.FileName == "/" {
		v.FileName = "hosts.csv"
	}
	return c.importRun(g, v, data, false)
}

// importApply answers POST /import/apply (form: file, csv as base64,
// digest): the same file as the dry run, checked again and applied only
// when every host can be.
func (c *Console) importApply(g *gin.Context) error {
	v := importView{FileName: g.PostForm("file")}
	if v.FileName == "" {
		v.FileName = "hosts.csv"
	}
	data, err := base64.StdEncoding.DecodeString(g.PostForm("csv"))
	if err != nil || len(data) > MaxImportCSV || digest(data) != g.PostForm("digest") {
		v.Error = "The file to apply is not the one of the dry run. Upload it again."
		return c.render(g, http.StatusBadRequest, "import", "Import hosts", "import", v)
	}
	return c.importRun(g, v, data, true)
}

// importRun reads data as a hosts CSV file and plans (or applies) it.
func (c *Console) importRun(g *gin.Context, v importView, data []byte, apply bool) error {
	v.Encoded, v.Digest = base64.StdEncoding.EncodeToString(data), digest(data)
	v.Columns = csvColumns(data)
	rows, err := imagebuilder.ReadCSVRows(bytes.NewReader(data), v.FileName)
	var re imagebuilder.RowErrors
	switch {
	case errors.As(err, &re):
		for _, e := range re {
			v.RowErrors = append(v.RowErrors, importRowErr{Line: e.Line, Column: e.Column, Reason: e.Reason})
		}
		return c.render(g, http.StatusBadRequest, "import", "Import hosts", "import", v)
	case err != nil:
		v.Error = "Cannot read the file as CSV: " + err.Error()
		return c.render(g, http.StatusBadRequest, "import", "Import hosts", "import", v)
	case len(rows) == 0:
		v.Error = "The file has no hosts."
		return c.render(g, http.StatusBadRequest, "import", "Import hosts", "import", v)
	}
	hosts := make([]provision.NewHost, len(rows))
	for i, r := range rows {
		hosts[i] = newHost(r.Host, v.Columns)
	}
	var plans []provision.ImportPlan
	var applyErr error
	if apply {
		plans, applyErr = c.core.ApplyImport(g.Request.Context(), caller(g), hosts)
		if plans == nil {
			return applyErr
		}
	} else {
		plans, err = c.core.PlanImport(g.Request.Context(), caller(g), hosts)
		if err != nil {
			return err
		}
	}
	for i, p := range plans {
		if p.Err != nil {
			col, reason, err := rowProblem(p.Err)
			if err != nil {
				return err
			}
			v.RowErrors = append(v.RowErrors, importRowErr{Line: rows[i].Line, Column: col, Reason: reason})
			continue
		}
		v.Rows = append(v.Rows, importRow{Line: rows[i].Line, Name: p.Name, Action: p.Action, Fields: p.Fields, Applied: p.Applied})
		switch p.Action {
		case provision.ImportCreate:
			v.Create++
		case provision.ImportUpdate:
			v.Update++
		default:
			v.Unchanged++
		}
		if p.Applied {
			v.Names = append(v.Names, p.Name)
		}
	}
	status := http.StatusOK
	switch {
	case len(v.RowErrors) > 0:
		status = http.StatusBadRequest
		if apply && !errors.Is(applyErr, provision.ErrImportRefused) {
			status = http.StatusConflict // stopped part-way: v.Rows say what was applied
			v.Applied = true
		}
	case apply:
		v.Applied = true
	}
	return c.render(g, status, "import", "Import hosts", "import", v)
}

// rowProblem renders a plan's error as a column and a reason; an error no
// row can explain (the database) is returned.
func rowProblem(err error) (column, reason string, _ error) {
	var ve *host.ValidationError
	var fe interface{ FieldName() string }
	switch {
	case errors.As(err, &ve):
		return csvColumn(ve.Field), ve.Reason, nil
	case errors.As(err, &fe):
		return csvColumn(fe.FieldName()), err.Error(), nil
	case errors.Is(err, host.ErrForbidden):
		col := "name"
		if strings.Contains(err.Error(), "labels:") {
			col = "labels"
		}
		return col, "not allowed: " + strings.TrimPrefix(err.Error(), host.ErrForbidden.Error()+": "), nil
	case errors.Is(err, host.ErrNotFound):
		return "name", "not found", nil
	}
	return "", "", err
}

// csvColumn names the CSV column of a host field.
func csvColumn(field string) string {
	if field == "macs" {
		return "mac"
	}
	if field == "" {
		return "row"
	}
	return field
}

// newHost is the import of h: every column the file has is set (an empty
// cell clears an optional field), a column it lacks is left alone.
func newHost(h host.Host, cols map[string]bool) provision.NewHost {
	n := provision.NewHost{Name: h.Name}
	u := &n.HostUpdate
	u.MACs, u.IPv4, u.Gateway, u.DNS = &h.MACs, &h.IPv4, &h.Gateway, &h.DNS
	if u.DNS == nil || *u.DNS == nil {
		u.DNS = &[]string{}
	}
	opt := []struct {
		col string
		dst **string
		src *string
	}{
		{"ipv6", &u.IPv6, &h.IPv6}, {"gateway6", &u.Gateway6, &h.Gateway6}, {"profile", &u.Profile, &h.Profile},
		{"hostname", &u.Hostname, &h.Hostname}, {"domain", &u.Domain, &h.Domain},
	}
	for _, o := range opt {
		if cols[o.col] {
			*o.dst = o.src
		}
	}
	if cols["vlan"] {
		u.VLAN = &h.VLAN
	}
	if cols["labels"] {
		l := h.Labels
		if l == nil {
			l = host.Labels{}
		}
		u.Labels = &l
	}
	return n
}

// csvColumns returns the columns named by data's header row (lower case,
// "macs" as "mac"), as imagebuilder reads them.
func csvColumns(data []byte) map[string]bool {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	out := map[string]bool{}
	header, err := r.Read()
	if err != nil {
		return out
	}
	for _, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "macs" {
			h = "mac"
		}
		out[h] = true
	}
	return out
}

// digest is the SHA-256 of data in hex.
func digest(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// importISOArchive answers POST /import/isos (form: host, repeated): a
// zip of each host's ISO, built by Core.HostISO — which rotates each
// host's boot token, so ISOs built before stop working. A host whose ISO
// cannot be built is listed in ERRORS.txt inside the archive.
func (c *Console) importISOArchive(g *gin.Context) error {
	names := g.PostFormArray("host")
	if len(names) == 0 {
		return host.Invalid("host", "no hosts to build ISOs for")
	}
	var zw *zip.Writer
	var failed []string
	var first error
	for _, n := range names {
		iso, err := c.core.HostISO(g.Request.Context(), caller(g), n)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("%s: %w", n, err)
			}
			failed = append(failed, fmt.Sprintf("%s: %v", n, err))
			continue
		}
		if zw == nil {
			g.Header("Content-Type", "application/zip")
			g.Header("Content-Disposition", `attachment; filename="bootpilot-isos.zip"`)
			g.Status(http.StatusOK)
			zw = zip.NewWriter(g.Writer)
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n + ".iso", Method: zip.Store, Modified: c.now()})
		if err != nil {
			return nil // the client went away; the answer has started
		}
		if _, err := w.Write(iso); err != nil {
			return nil
		}
	}
	if zw == nil {
		return first // nothing was sent yet: the error page says why
	}
	if len(failed) > 0 {
		if w, err := zw.Create("ERRORS.txt"); err == nil {
			io.WriteString(w, strings.Join(failed, "\n")+"\n")
		}
	}
	zw.Close()
	return nil
}
