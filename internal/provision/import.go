package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

// The actions of an import plan.
const (
	ImportCreate    = "create"    // the host is new
	ImportUpdate    = "update"    // the host exists; Fields change
	ImportUnchanged = "unchanged" // the host exists as the import describes it
)

// ImportPlan is what importing one host does (or did).
type ImportPlan struct {
	Name    string   // "node01"
	Action  string   // ImportCreate, ImportUpdate or ImportUnchanged
	Fields  []string // update: the fields that change, as host.Changed names them ["ipv4", "labels"]
	Err     error    // why this host cannot be imported: a *host.ValidationError, a *host.ConflictError, host.ErrForbidden…
	Applied bool     // ApplyImport: the change is stored
}

// ErrImportRefused means an import was not applied because at least one
// of its hosts cannot be imported (their plans carry the reasons).
var ErrImportRefused = errors.New("import refused: no host was changed")

// PlanImport says what importing hosts would do, storing nothing. Each
// NewHost is a create when no host of its name exists, else an update of
// the fields its HostUpdate sets (nil fields are left alone). A host whose
// import would fail gets Err: the checks of CreateHost and UpdateHost
// (validation, profile, the caller's grants on the host and on its new
// labels), plus MACs and addresses that belong to another host — also to
// another host of the same import: moving a MAC from one host to another
// takes two imports, so that no order of applying can fail. The error is
// host.ErrForbidden when cl may not import at all.
func (c *Core) PlanImport(ctx context.Context, cl Caller, hosts []NewHost) ([]ImportPlan, error) {
	if err := cl.Authorize(auth.OpHostImport, nil); err != nil {
		return nil, err
	}
	all, err := c.store.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return nil, err
	}
	byName := make(map[string]host.Host, len(all))
	owner := map[string]string{} // MAC or address → host name
	for _, h := range all {
		byName[h.Name] = h
		for _, m := range h.MACs {
			owner[m] = h.Name
		}
		for _, a := range []string{h.IPv4, h.IPv6} {
			if p, err := netip.ParsePrefix(a); err == nil {
				owner[p.Addr().String()] = h.Name
			}
		}
	}
	profiles := map[string]error{}
	plans := make([]ImportPlan, len(hosts))
	for i, n := range hosts {
		p := ImportPlan{Name: n.Name}
		p.Err = c.planHost(ctx, cl, n, byName, owner, profiles, &p)
		plans[i] = p
	}
	return plans, nil
}

// planHost fills p for n and returns why n cannot be imported.
func (c *Core) planHost(ctx context.Context, cl Caller, n NewHost, byName map[string]host.Host, owner map[string]string,
	profiles map[string]error, p *ImportPlan) error {
	old, exists := byName[n.Name]
	if exists && !cl.Sees(labelsOf(old)) {
		return host.Conflict("name", "host %s already exists outside your grants", n.Name)
	}
	h := host.Host{Name: n.Name, State: host.StateReady}
	if exists {
		h = old
		h.MACs, h.DNS, h.Labels = slices.Clone(old.MACs), slices.Clone(old.DNS), maps.Clone(old.Labels)
		if err := cl.Authorize(auth.OpHostUpdate, labelsOf(old)); err != nil {
			return err
		}
	}
	if err := n.HostUpdate.apply(&h); err != nil {
		return err
	}
	if err := h.Normalize(); err != nil {
		return err
	}
	p.Action = ImportCreate
	if exists {
		p.Action, p.Fields = ImportUpdate, host.Changed(old, h)
		if len(p.Fields) == 0 {
			p.Action = ImportUnchanged
			return nil
		}
	}
	if !cl.Can(auth.PermEdit, labelsOf(h)) {
		return fmt.Errorf("%w: labels: your grants do not let you label a host %q", host.ErrForbidden, host.FormatLabels(h.Labels))
	}
	if h.Profile != "" && (!exists || h.Profile != old.Profile) {
		err, seen := profiles[h.Profile]
		if !seen {
			err = c.checkProfile(ctx, h.Profile)
			profiles[h.Profile] = err
		}
		if err != nil {
			return err
		}
	}
	taken := func(field, key, what string) error {
		other, ok := owner[key]
		if !ok || other == h.Name {
			return nil
		}
		if o := byName[other]; cl.Sees(labelsOf(o)) {
			return host.Conflict(field, "%s %s already belongs to host %s", what, key, other)
		}
		return host.Conflict(field, "%s %s already belongs to another host", what, key)
	}
	for _, m := range h.MACs {
		if err := taken("macs", m, "MAC"); err != nil {
			return err
		}
	}
	for _, f := range []struct{ field, value string }{{"ipv4", h.IPv4}, {"ipv6", h.IPv6}} {
		if pfx, err := netip.ParsePrefix(f.value); err == nil {
			if err := taken(f.field, pfx.Addr().String(), "address"); err != nil {
				return err
			}
		}
	}
	return nil
}

// ApplyImport plans hosts as PlanImport does and, only when every host can
// be imported, creates and updates them through CreateHost and UpdateHost
// (each authorized and audited as that call, actor cl). When any plan has
// an Err nothing is changed and the error is ErrImportRefused. A host that
// fails while applying (changed concurrently since the plan) stops the
// import: the hosts before it stay applied (Applied), its plan carries the
// error, and that error is returned.
func (c *Core) ApplyImport(ctx context.Context, cl Caller, hosts []NewHost) ([]ImportPlan, error) {
	plans, err := c.PlanImport(ctx, cl, hosts)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		if p.Err != nil {
			return plans, ErrImportRefused
		}
	}
	for i, n := range hosts {
		p := &plans[i]
		switch p.Action {
		case ImportCreate:
			_, err = c.CreateHost(ctx, cl, n)
		case ImportUpdate:
			_, err = c.UpdateHost(ctx, cl, n.Name, n.HostUpdate)
		default:
			continue
		}
		if err != nil {
			p.Err = err
			return plans, fmt.Errorf("import %s: %w", n.Name, err)
		}
		p.Applied = true
	}
	return plans, nil
}
