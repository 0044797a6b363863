package imagebuilder

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
)

// RowError is one problem in a hosts CSV file.
type RowError struct {
	File   string // "hosts.csv"
	Line   int    // 1-based; 1 is the header
	Column string // "mac", "header", "row"
	Reason string
}

// Error renders e as "FILE:LINE: column: reason", or "FILE:LINE: reason"
// when the problem is the line itself.
func (e RowError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Column, e.Reason)
}

// RowErrors lists every problem found in a file, one per line when printed.
type RowErrors []RowError

func (e RowErrors) Error() string {
	s := make([]string, len(e))
	for i, r := range e {
		s[i] = r.Error()
	}
	return strings.Join(s, "\n")
}

// Row is one host read from a CSV file with the line it came from.
type Row struct {
	Line int
	Host host.Host
}

// Limits of a hosts CSV file. They are checked while reading, so a huge line
// costs neither memory nor a huge error message.
const (
	MaxCSVField = 4096  // bytes in one field
	MaxCSVLine  = 65536 // bytes in one line (a record, with quoted newlines)
)

// CSV columns. The first five are required.
var (
	requiredColumns = []string{"name", "mac", "ipv4", "gateway", "dns"}
	optionalColumns = []string{"ipv6", "gateway6", "vlan", "profile", "hostname", "domain", "labels"}
)

// ReadCSV reads hosts from a CSV file with a header row. Columns: name, mac,
// ipv4 (CIDR), gateway, dns, and optionally ipv6 (CIDR), gateway6, vlan,
// profile, hostname, domain, labels; several MACs or DNS servers are
// separated by ';', labels are key=value pairs separated by ';'
// ("team=lab;site=dc1", host.ParseLabels). Lines starting with '#' are comments. A field may hold at most
// MaxCSVField bytes and a line MaxCSVLine. Every host is normalized; when
// any row is bad the error is a RowErrors listing all of them, as
// "hosts.csv:LINE: column: reason", and no hosts are returned. A line that
// is too long ends the scan. A reason quotes at most the first bytes of a
// long value, with control characters escaped.
func ReadCSV(r io.Reader, filename string) ([]host.Host, error) {
	rows, err := ReadCSVRows(r, filename)
	if err != nil {
		return nil, err
	}
	hosts := make([]host.Host, len(rows))
	for i, row := range rows {
		hosts[i] = row.Host
	}
	return hosts, nil
}

// ReadCSVRows is ReadCSV keeping each host's line number.
func ReadCSVRows(r io.Reader, filename string) ([]Row, error) {
	var rows []Row
	err := ScanCSV(r, filename, func(row Row) error {
		rows = append(rows, row)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// ScanCSV checks every row of a hosts CSV file as ReadCSV does and calls fn
// with each good row, in file order, without keeping the rows: only the
// names, MACs and addresses seen so far are held, to find duplicates. When
// any row is bad the error is a RowErrors listing all of them (fn has then
// seen the good rows, so callers must not act on them before ScanCSV
// returns nil). An error from fn stops the scan and is returned.
func ScanCSV(r io.Reader, filename string, fn func(Row) error) error {
	return scanCSV(r, filename, true, fn)
}

// RescanCSV reads a file ScanCSV has accepted again, calling fn with each
// row in file order. It skips the checks across rows (duplicates), so its
// memory does not grow with the file; rows that fail their own checks are
// still reported as RowErrors at the end, as by ScanCSV.
func RescanCSV(r io.Reader, filename string, fn func(Row) error) error {
	return scanCSV(r, filename, false, fn)
}

func scanCSV(r io.Reader, filename string, dups bool, fn func(Row) error) error {
	cr := csv.NewReader(&lineGuard{r: r, max: MaxCSVLine})
	cr.ReuseRecord = true
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var errs RowErrors
	bad := func(line int, col, format string, args ...any) {
		errs = append(errs, RowError{File: filename, Line: line, Column: col, Reason: clipQuoted(fmt.Sprintf(format, args...))})
	}
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		bad(1, "header", "empty file; want a header row with %s", strings.Join(requiredColumns, ","))
		return errs
	}
	if line, ok := lineTooLongAt(err); ok {
		bad(line, "", "line longer than %d bytes", MaxCSVLine)
		return errs
	}
	if err != nil {
		return fmt.Errorf("%s: %w", filename, err)
	}
	headerLine, _ := cr.FieldPos(0)
	if longField(header) >= 0 {
		bad(headerLine, "header", "field longer than %d bytes", MaxCSVField)
		return errs
	}
	names := make([]string, len(header)) // header is reused by the next Read
	col := map[string]int{}
	known := map[string]bool{}
	for _, c := range append(append([]string(nil), requiredColumns...), optionalColumns...) {
		known[c] = true
	}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "macs" {
			h = "mac"
		}
		names[i] = h
		switch {
		case !known[h]:
			bad(headerLine, "header", "unknown column %q (known: %s)", h, strings.Join(append(append([]string(nil), requiredColumns...), optionalColumns...), ","))
		case col[h] != 0:
			bad(headerLine, "header", "column %q appears twice", h)
		default:
			col[h] = i + 1
		}
	}
	for _, c := range requiredColumns {
		if col[c] == 0 {
			bad(headerLine, "header", "missing column %q", c)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	seenName, seenMAC, seenIP := map[string]int{}, map[string]int{}, map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if l, ok := lineTooLongAt(err); ok {
			bad(l, "", "line longer than %d bytes", MaxCSVLine)
			break // the rest of the line is not read
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			bad(pe.Line, "row", "%v", pe.Err)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", filename, err)
		}
		line, _ := cr.FieldPos(0) // only after a good Read: FieldPos panics when no field was read
		if i := longField(rec); i >= 0 {
			fl, _ := cr.FieldPos(i)
			column := "row"
			if i < len(names) {
				column = names[i]
			}
			bad(fl, column, "field longer than %d bytes", MaxCSVField)
			continue
		}
		if len(rec) != len(header) {
			bad(line, "row", "has %d fields, the header has %d", len(rec), len(header))
			continue
		}
		get := func(c string) string {
			if col[c] == 0 {
				return ""
			}
			return strings.TrimSpace(rec[col[c]-1])
		}
		h := host.Host{
			Name: get("name"), MACs: splitList(get("mac")), IPv4: get("ipv4"), Gateway: get("gateway"),
			DNS: splitList(get("dns")), IPv6: get("ipv6"), Gateway6: get("gateway6"),
			Profile: get("profile"), Hostname: get("hostname"), Domain: get("domain"),
		}
		if v := get("vlan"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				bad(line, "vlan", "%q is not a number", v)
				continue
			}
			h.VLAN = n
		}
		if v := get("labels"); v != "" {
			l, err := host.ParseLabels(v)
			if err != nil {
				var ve *host.ValidationError
				if errors.As(err, &ve) {
					err = errors.New(ve.Reason)
				}
				bad(line, "labels", "%v", err)
				continue
			}
			h.Labels = l
		}
		if err := h.Normalize(); err != nil {
			var ve *host.ValidationError
			if errors.As(err, &ve) {
				bad(line, csvColumn(ve.Field), "%s", ve.Reason)
			} else {
				bad(line, "row", "%v", err)
			}
			continue
		}
		if !dups {
			if err := fn(Row{Line: line, Host: h}); err != nil {
				return err
			}
			continue
		}
		dup := false
		check := func(seen map[string]int, key, column, what string) {
			if prev, ok := seen[key]; ok {
				bad(line, column, "%s %s is also on line %d", what, key, prev)
				dup = true
			}
		}
		check(seenName, h.Name, "name", "name")
		for _, m := range h.MACs {
			check(seenMAC, m, "mac", "MAC")
		}
		ip4 := netip.MustParsePrefix(h.IPv4).Addr().String()
		check(seenIP, ip4, "ipv4", "address")
		var ip6 string
		if h.IPv6 != "" {
			ip6 = netip.MustParsePrefix(h.IPv6).Addr().String()
			check(seenIP, ip6, "ipv6", "address")
		}
		if dup {
			continue
		}
		seenName[h.Name] = line
		for _, m := range h.MACs {
			seenMAC[m] = line
		}
		seenIP[ip4] = line
		if ip6 != "" {
			seenIP[ip6] = line
		}
		if err := fn(Row{Line: line, Host: h}); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// csvColumn maps a host field name to its CSV column.
func csvColumn(field string) string {
	switch field {
	case "macs":
		return "mac"
	}
	return field
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ";") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// CheckRows renders every row's stage-0 script with a placeholder token as
// long as the ones internal/token makes (32 hex digits) and reports the rows
// whose script does not fit, as RowErrors.
func (b *Builder) CheckRows(rows []Row, filename string) error {
	var errs RowErrors
	for _, r := range rows {
		if e, bad := b.CheckRow(r, filename); bad {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// CheckRow is CheckRows for one row: it reports whether r's stage-0 script
// does not fit, and why.
func (b *Builder) CheckRow(r Row, filename string) (RowError, bool) {
	_, err := b.Script(r.Host, placeholderToken)
	if err == nil {
		return RowError{}, false
	}
	var ve *host.ValidationError
	if errors.As(err, &ve) {
		return RowError{File: filename, Line: r.Line, Column: csvColumn(ve.Field), Reason: clipQuoted(ve.Reason)}, true
	}
	return RowError{File: filename, Line: r.Line, Column: "row", Reason: clipQuoted(err.Error())}, true
}

// placeholderToken is as long as the tokens internal/token makes.
var placeholderToken = strings.Repeat("0", 32)
