package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// HostFilter selects hosts for ListHosts. Zero fields match everything.
type HostFilter struct {
	State   host.State // only hosts in this state
	Profile string     // only hosts using this profile
	After   string     // only hosts whose name sorts after this (a page cursor; name order only)
	Limit   int        // at most this many; 0: no limit
	Offset  int        // skip this many first (page by offset, any order)

	// Search keeps the hosts whose name contains it, whose IPv4 address
	// starts with it, or one of whose MACs starts with it (lower-cased):
	// "node1", "10.0.2.", "52:54:00:12" (see searchWhere).
	Search string
	// Names keeps the hosts with these names (nil: any name; empty but
	// not nil: none).
	Names []string
	// Labels keeps the hosts that have every key=value of it.
	Labels map[string]string // {"team": "lab"}
	// UpdatedAfter keeps the hosts changed (updated_at) after it: the
	// console's live-update deltas.
	UpdatedAfter time.Time
	// Sort orders the list: SortName (the default), SortState (then name)
	// or SortUpdated (most recently changed first, then name).
	Sort string

	// Scoped restricts the list to the hosts matching at least one of
	// Scopes, a host matching a scope when it has every key=value of it
	// (the caller's grant selectors). An empty scope matches every host;
	// Scoped with no scopes matches none. Unscoped lists ignore Scopes.
	Scoped bool
	Scopes []map[string]string // [{"team":"lab"}, {"site":"dc1","team":"ops"}]
}

// The orders of a host list (HostFilter.Sort).
const (
	SortName    = "name"
	SortState   = "state"
	SortUpdated = "updated"
)

// likeEscape escapes s for a LIKE pattern with ESCAPE '!' (the same on
// SQLite and MySQL, whose default escape differs).
func likeEscape(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// Search shapes: only what can be (the start of) a MAC or an IPv4 address
// is looked up as one, by an index range.
var (
	macPrefixRE  = regexp.MustCompile(`^[0-9a-f]{1,2}(:[0-9a-f]{0,2}){1,5}$`)
	ipv4PrefixRE = regexp.MustCompile(`^[0-9]{1,3}(\.[0-9]{0,3}){0,3}$`)
)

// searchWhere keeps the rows of table t whose name contains s, or (when s
// looks like one) whose IPv4 address or one of whose MACs starts with s.
// Prefixes are index ranges [s, s+"~"): '~' sorts after every character
// of a MAC or an address, on SQLite and MySQL alike.
func searchWhere(q *gorm.DB, t, s string) *gorm.DB {
	s = strings.ToLower(strings.TrimSpace(s))
	ors := []string{t + ".name LIKE ? ESCAPE '!'"}
	args := []any{"%" + likeEscape(s) + "%"}
	if macPrefixRE.MatchString(s) {
		ors = append(ors, t+".name IN (SELECT hm.host_name FROM host_macs hm WHERE hm.mac >= ? AND hm.mac < ?)")
		args = append(args, s, s+"~")
	}
	if ipv4PrefixRE.MatchString(s) {
		ors = append(ors, "("+t+".ipv4 >= ? AND "+t+".ipv4 < ?)")
		args = append(args, s, s+"~")
	}
	return q.Where("("+strings.Join(ors, " OR ")+")", args...)
}

// normalizeMACs lower-cases macs and drops duplicates, keeping the order.
func normalizeMACs(macs []string) []string {
	out := make([]string, 0, len(macs))
	for _, m := range macs {
		m = strings.ToLower(strings.TrimSpace(m))
		if m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func insertMACs(tx *gorm.DB, name string, macs []string) error {
	if len(macs) == 0 {
		return nil
	}
	rows := make([]hostMACRow, len(macs))
	for i, m := range macs {
		rows[i] = hostMACRow{MAC: m, HostName: name, Position: i}
	}
	if err := dbErr(tx.Create(&rows).Error); err != nil {
		if errors.Is(err, host.ErrConflict) {
			return host.Conflict("macs", "a MAC of host %s already belongs to another host", name)
		}
		return fmt.Errorf("store: host %s: add MACs: %w", name, err)
	}
	return nil
}

// insertRecords stores recs as name's events; zero records are skipped.
func insertRecords(tx *gorm.DB, name string, at time.Time, recs []host.Record) error {
	rows := make([]eventRow, 0, len(recs))
	for _, r := range recs {
		if r.IsZero() {
			continue
		}
		if r.Host == "" {
			r.Host = name
		}
		if r.Time.IsZero() {
			r.Time = at
		}
		rows = append(rows, toEventRow(r))
	}
	if len(rows) == 0 {
		return nil
	}
	if err := dbErr(tx.Create(&rows).Error); err != nil {
		return fmt.Errorf("store: host %s: add events: %w", name, err)
	}
	return nil
}

// The checks below are plain reads, not locking ones: on MySQL, locking
// reads of absent keys take gap locks that make concurrent creates deadlock.
// SQLite runs one write transaction at a time, so there they are exact; on
// MySQL two replicas creating the same address at the same instant could
// both pass, while names and MACs are still kept unique by their keys.

// checkName returns a *host.ConflictError when a host called name exists.
func checkName(tx *gorm.DB, name string) error {
	var n []string
	err := tx.Model(&hostRow{}).Where("name = ?", name).Limit(1).Pluck("name", &n).Error
	if err != nil {
		return fmt.Errorf("store: check host name %s: %w", name, dbErr(err))
	}
	if len(n) > 0 {
		return host.Conflict("name", "host %s already exists", name)
	}
	return nil
}

// checkMACs returns a *host.ConflictError naming the owner when one of macs
// belongs to a host other than name.
func checkMACs(tx *gorm.DB, name string, macs []string) error {
	if len(macs) == 0 {
		return nil
	}
	var rows []hostMACRow
	err := tx.Where("mac IN ? AND host_name <> ?", macs, name).
		Order("mac").Find(&rows).Error
	if err != nil {
		return fmt.Errorf("store: check MACs of %s: %w", name, dbErr(err))
	}
	if len(rows) > 0 {
		return host.Conflict("macs", "MAC %s already belongs to host %s", rows[0].MAC, rows[0].HostName)
	}
	return nil
}

// checkAddr returns a *host.ConflictError naming the owner when the address
// of prefix (an "ipv4" or "ipv6" column value like "10.0.2.15/24") is
// another host's, whatever its prefix length. Values are stored as
// netip.Prefix strings, so the rows holding address A are exactly those in
// ["A/", "A0"): '0' follows '/' in ASCII, and the range uses the index.
func checkAddr(tx *gorm.DB, name, column, prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return nil // not an address (Normalize refuses these before the store)
	}
	a := p.Addr().String()
	var rows []hostRow
	err = tx.Select("name").
		Where(column+" >= ? AND "+column+" < ? AND name <> ?", a+"/", a+"0", name).
		Order("name").Limit(1).Find(&rows).Error
	if err != nil {
		return fmt.Errorf("store: check %s of %s: %w", column, name, dbErr(err))
	}
	if len(rows) > 0 {
		what := "IPv4"
		if column == "ipv6" {
			what = "IPv6"
		}
		return host.Conflict(column, "%s address %s is already used by host %s", what, a, rows[0].Name)
	}
	return nil
}

// checkTaken refuses h's MACs and addresses that other hosts have; only
// those that differ from old are looked up (old is zero on create).
func checkTaken(tx *gorm.DB, h, old host.Host) error {
	if !slices.Equal(h.MACs, old.MACs) {
		if err := checkMACs(tx, h.Name, h.MACs); err != nil {
			return err
		}
	}
	if h.IPv4 != old.IPv4 {
		if err := checkAddr(tx, h.Name, "ipv4", h.IPv4); err != nil {
			return err
		}
	}
	if h.IPv6 != old.IPv6 {
		if err := checkAddr(tx, h.Name, "ipv6", h.IPv6); err != nil {
			return err
		}
	}
	return nil
}

func toHosts(rows []hostRow) []host.Host {
	out := make([]host.Host, len(rows))
	for i, r := range rows {
		out[i] = r.toHost()
	}
	return out
}

// CreateHost stores a new host with version 1 and rec as its audit event
// (Host and Time filled in when empty; a zero rec is not stored), in one
// transaction. It stores h.TokenHash and the rest of h as given, MACs
// lower-cased. It returns a *host.ConflictError (an ErrConflict) naming what
// is taken and by whom when the name, one of the MACs, the IPv4 or the IPv6
// address (whatever its prefix length) belongs to another host.
func (db *DB) CreateHost(ctx context.Context, h host.Host, rec host.Record) (host.Host, error) {
	t := now()
	h.MACs = normalizeMACs(h.MACs)
	h.Labels = cloneLabels(h.Labels)
	if err := host.CheckLabels(h.Labels); err != nil {
		return host.Host{}, err
	}
	h.Version = 1
	h.CreatedAt, h.UpdatedAt = t, t
	h.Deadline = timeVal(timePtr(h.Deadline))
	h.Inventory.SeenAt = timeVal(timePtr(h.Inventory.SeenAt))
	row := toHostRow(h)
	err := db.write(ctx, func(tx *gorm.DB) error {
		if err := checkName(tx, h.Name); err != nil {
			return err
		}
		if err := checkTaken(tx, h, host.Host{}); err != nil {
			return err
		}
		if err := dbErr(tx.Create(&row).Error); err != nil {
			if errors.Is(err, host.ErrConflict) {
				return host.Conflict("name", "host %s already exists", h.Name)
			}
			return fmt.Errorf("store: create host %s: %w", h.Name, err)
		}
		if err := insertMACs(tx, h.Name, h.MACs); err != nil {
			return err
		}
		if err := insertLabels(tx, h.Name, h.Labels); err != nil {
			return err
		}
		return insertRecords(tx, h.Name, t, []host.Record{rec})
	})
	if err != nil {
		return host.Host{}, err
	}
	return h, nil
}

// GetHost returns the named host, or host.ErrNotFound.
func (db *DB) GetHost(ctx context.Context, name string) (host.Host, error) {
	tx := db.read(ctx)
	var row hostRow
	if err := dbErr(tx.Where("name = ?", name).Take(&row).Error); err != nil {
		return host.Host{}, fmt.Errorf("store: get host %s: %w", name, err)
	}
	return row.toHost(), nil
}

// GetHostByMAC returns the host that has mac, or host.ErrNotFound.
func (db *DB) GetHostByMAC(ctx context.Context, mac string) (host.Host, error) {
	mac = strings.ToLower(strings.TrimSpace(mac))
	tx := db.read(ctx)
	var row hostRow
	err := tx.Joins("JOIN host_macs ON host_macs.host_name = hosts.name").
		Where("host_macs.mac = ?", mac).Take(&row).Error
	if err := dbErr(err); err != nil {
		return host.Host{}, fmt.Errorf("store: find host by MAC %s: %w", mac, err)
	}
	return row.toHost(), nil
}

// where applies f's conditions (not its limit) to q, on table t.
func (f HostFilter) where(q *gorm.DB, t string) *gorm.DB {
	if f.State != "" {
		q = q.Where(t+".state = ?", string(f.State))
	}
	if f.Profile != "" {
		q = q.Where(t+".profile = ?", f.Profile)
	}
	if f.After != "" {
		q = q.Where(t+".name > ?", f.After)
	}
	if f.Names != nil {
		if len(f.Names) == 0 {
			q = q.Where("1 = 0")
		} else {
			q = q.Where(t+".name IN ?", f.Names)
		}
	}
	if f.Search != "" {
		q = searchWhere(q, t, f.Search)
	}
	if len(f.Labels) > 0 {
		q = scopeWhere(q, t, []map[string]string{f.Labels})
	}
	if !f.UpdatedAfter.IsZero() {
		q = q.Where(t+".updated_at > ?", utc(f.UpdatedAfter))
	}
	if f.Scoped {
		q = scopeWhere(q, t, f.Scopes)
	}
	return q
}

// order returns f's ORDER BY clause, or an error for an unknown Sort.
func (f HostFilter) order() (string, error) {
	switch f.Sort {
	case "", SortName:
		return "name", nil
	case SortState:
		if f.After != "" {
			return "", host.Invalid("after", "the name cursor pages lists sorted by name only")
		}
		return "state, name", nil
	case SortUpdated:
		if f.After != "" {
			return "", host.Invalid("after", "the name cursor pages lists sorted by name only")
		}
		return "updated_at DESC, name", nil
	}
	return "", host.Invalid("sort", "%q is not an order (want name, state or updated)", f.Sort)
}

// ListHosts returns the hosts f selects, in f's order (by name by
// default); an unknown Sort, or After with another order than name, is a
// *host.ValidationError. Labels are
// filtered in SQL (see HostFilter.Scoped), so pages are full and the After
// cursor works on scoped lists too.
func (db *DB) ListHosts(ctx context.Context, f HostFilter) ([]host.Host, error) {
	if f.Scoped && len(f.Scopes) == 0 {
		return nil, nil
	}
	order, err := f.order()
	if err != nil {
		return nil, err
	}
	tx := db.read(ctx)
	q := f.where(tx.Model(&hostRow{}), "hosts").Order(order)
	if f.Limit > 0 {
		q = q.Limit(f.Limit)
	}
	if f.Offset > 0 {
		if f.Limit <= 0 {
			q = q.Limit(1 << 31) // MySQL needs a LIMIT with an OFFSET
		}
		q = q.Offset(f.Offset)
	}
	var rows []hostRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list hosts: %w", dbErr(err))
	}
	return toHosts(rows), nil
}

// UpdateHost is the one write path for every change to a host. In one
// transaction it reads the host locked, calls fn with a copy, and, when fn
// returns no error, writes every field back with the version bumped
// (compare-and-set on the old version), replaces the MACs if they changed
// and inserts the records fn returned (Host and Time filled in when empty).
//
// fn's error is returned unchanged and nothing is written. fn may run more
// than once when the database resolves a deadlock by aborting the
// transaction, so it must only change h and its own results. fn cannot
// rename the host. UpdateHost returns host.ErrNotFound for an unknown host
// and a *host.ConflictError (an ErrConflict) naming the owner when a new MAC,
// IPv4 or IPv6 address belongs to another host.
func (db *DB) UpdateHost(ctx context.Context, name string, fn func(h *host.Host) ([]host.Record, error)) (host.Host, error) {
	var out host.Host
	err := db.write(ctx, func(tx *gorm.DB) error {
		var row hostRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", name).Take(&row).Error
		if err := dbErr(err); err != nil {
			return fmt.Errorf("store: update host %s: %w", name, err)
		}
		old := row.toHost()
		h := old
		h.MACs = slices.Clone(old.MACs)
		h.DNS = slices.Clone(old.DNS)
		h.Labels = maps.Clone(old.Labels)
		recs, err := fn(&h)
		if err != nil {
			return err
		}
		if h.Name != name {
			return host.Invalid("name", "a host cannot be renamed (%q to %q)", name, h.Name)
		}
		t := now()
		h.MACs = normalizeMACs(h.MACs)
		h.Labels = cloneLabels(h.Labels)
		labelsChanged := !maps.Equal(h.Labels, old.Labels)
		if labelsChanged {
			if err := host.CheckLabels(h.Labels); err != nil {
				return err
			}
		}
		if err := checkTaken(tx, h, old); err != nil {
			return err
		}
		h.Version = old.Version + 1
		h.CreatedAt, h.UpdatedAt = old.CreatedAt, t
		h.Deadline = timeVal(timePtr(h.Deadline))
		h.Inventory.SeenAt = timeVal(timePtr(h.Inventory.SeenAt))
		res := tx.Model(&hostRow{}).Where("name = ? AND version = ?", name, old.Version).
			Updates(toHostRow(h).columns())
		if err := dbErr(res.Error); err != nil {
			return fmt.Errorf("store: update host %s: %w", name, err)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("store: update host %s: version %d: %w", name, old.Version, host.ErrConflict)
		}
		if !slices.Equal(h.MACs, old.MACs) {
			if err := tx.Where("host_name = ?", name).Delete(&hostMACRow{}).Error; err != nil {
				return fmt.Errorf("store: update host %s: %w", name, dbErr(err))
			}
			if err := insertMACs(tx, name, h.MACs); err != nil {
				return err
			}
		}
		if labelsChanged {
			if err := tx.Where("host_name = ?", name).Delete(&hostLabelRow{}).Error; err != nil {
				return fmt.Errorf("store: update host %s: %w", name, dbErr(err))
			}
			if err := insertLabels(tx, name, h.Labels); err != nil {
				return err
			}
		}
		if err := insertRecords(tx, name, t, recs); err != nil {
			return err
		}
		out = h
		return nil
	})
	if err != nil {
		return host.Host{}, err
	}
	return out, nil
}

// DeleteHost deletes the host, its MACs and labels and stores rec; the host's
// earlier events are kept. It returns host.ErrNotFound for an unknown host.
func (db *DB) DeleteHost(ctx context.Context, name string, rec host.Record) error {
	return db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("name = ?", name).Delete(&hostRow{})
		if err := dbErr(res.Error); err != nil {
			return fmt.Errorf("store: delete host %s: %w", name, err)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("store: delete host %s: %w", name, host.ErrNotFound)
		}
		if err := tx.Where("host_name = ?", name).Delete(&hostMACRow{}).Error; err != nil {
			return fmt.Errorf("store: delete host %s: %w", name, dbErr(err))
		}
		if err := tx.Where("host_name = ?", name).Delete(&hostLabelRow{}).Error; err != nil {
			return fmt.Errorf("store: delete host %s: %w", name, dbErr(err))
		}
		return insertRecords(tx, name, now(), []host.Record{rec})
	})
}

// SetInventory records what the host reported at boot. It neither bumps the
// version nor writes an event. It returns host.ErrNotFound for an unknown
// host.
func (db *DB) SetInventory(ctx context.Context, name string, inv host.Inventory) error {
	return db.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&hostRow{}).Where("name = ?", name).Updates(map[string]any{
			"inv_mac":      strings.ToLower(inv.MAC),
			"inv_uuid":     inv.UUID,
			"inv_serial":   inv.Serial,
			"inv_asset":    inv.Asset,
			"inv_arch":     inv.Arch,
			"inv_platform": inv.Platform,
			"inv_seen_at":  timePtr(inv.SeenAt),
		})
		if err := dbErr(res.Error); err != nil {
			return fmt.Errorf("store: set inventory of %s: %w", name, err)
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("store: set inventory of %s: %w", name, host.ErrNotFound)
		}
		return nil
	})
}

// Events returns the host's audit events, newest first; limit <= 0 returns
// all of them. A host without events (or an unknown one) has none.
func (db *DB) Events(ctx context.Context, name string, limit int) ([]host.Record, error) {
	q := db.read(ctx).Where("host_name = ?", name).Order("id DESC")
	if limit > 0 {
		q = q.Limit(limit)
	}
	var rows []eventRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: events of %s: %w", name, dbErr(err))
	}
	out := make([]host.Record, len(rows))
	for i, r := range rows {
		out[i] = r.toRecord()
	}
	return out, nil
}

// ExpiredHosts returns the hosts installing or cleaning whose deadline is
// before now, ordered by name.
func (db *DB) ExpiredHosts(ctx context.Context, now time.Time) ([]host.Host, error) {
	tx := db.read(ctx)
	var rows []hostRow
	err := tx.Where("state IN ? AND deadline IS NOT NULL AND deadline < ?",
		[]string{string(host.StateInstalling), string(host.StateCleaning)}, utc(now)).
		Order("name").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store: expired hosts: %w", dbErr(err))
	}
	return toHosts(rows), nil
}

// CountHosts returns the number of hosts in each state that has any.
func (db *DB) CountHosts(ctx context.Context) (map[host.State]int, error) {
	var rows []struct {
		State string
		N     int
	}
	err := db.read(ctx).Model(&hostRow{}).Select("state, COUNT(*) AS n").Group("state").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store: count hosts: %w", dbErr(err))
	}
	out := make(map[host.State]int, len(rows))
	for _, r := range rows {
		out[host.State(r.State)] = r.N
	}
	return out, nil
}

// CountHostStates returns the number of hosts f selects in each state that
// has any; f's State, After, Limit, Offset and Sort are ignored (the counts
// at the top of a filtered list, and "all N matching").
func (db *DB) CountHostStates(ctx context.Context, f HostFilter) (map[host.State]int, error) {
	out := map[host.State]int{}
	if f.Scoped && len(f.Scopes) == 0 {
		return out, nil
	}
	f.State, f.After = "", ""
	var rows []struct {
		State string
		N     int
	}
	q := f.where(db.read(ctx).Model(&hostRow{}), "hosts")
	if err := q.Select("hosts.state AS state, COUNT(*) AS n").Group("hosts.state").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: count hosts: %w", dbErr(err))
	}
	for _, r := range rows {
		out[host.State(r.State)] = r.N
	}
	return out, nil
}
