package provision

import (
	"context"

	"github.com/bootpilot/bootpilot/internal/host"
)

// MediaResult is what a virtual-media insert did. (Placeholder: the BMC
// operations move here from server/bmc.go.)
type MediaResult struct {
	Image string `json:"image,omitempty"`
}

func (c *Core) checkVia(ctx context.Context, name, via string) error {
	return ErrNotConfigured{"BMC operations are not available"}
}

func (c *Core) viaRedfish(ctx context.Context, cl Caller, h host.Host, reason string) (MediaResult, error) {
	return MediaResult{}, ErrNotConfigured{"BMC operations are not available"}
}
