package provision

import (
	"context"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
)

// HostCounter is what CountHosts needs from the store (implemented by
// *store.DB); a Store without it answers ErrNotConfigured.
type HostCounter interface {
	CountHostStates(ctx context.Context, f store.HostFilter) (map[host.State]int, error)
}

var _ HostCounter = (*store.DB)(nil)

// CountHosts returns how many of the hosts cl may see match f, by state
// (f's state and paging are ignored): the counts at the top of the
// console's host list and its "all N matching".
func (c *Core) CountHosts(ctx context.Context, cl Caller, f store.HostFilter) (map[host.State]int, error) {
	if err := cl.Authorize(auth.OpHostList, nil); err != nil {
		return nil, err
	}
	hc, ok := c.store.(HostCounter)
	if !ok {
		return nil, ErrNotConfigured{"this server's store cannot count hosts"}
	}
	f.Scoped, f.Scopes = false, nil
	scopeHosts(&f, cl.Scopes(auth.PermRead))
	return hc.CountHostStates(ctx, f)
}
