package client

import (
	"context"
	"net/http"

	"github.com/bootpilot/bootpilot/internal/host"
)

// Preview returns what the host's next boot would be served (script,
// installer configs, action and attempt), rendered without changing the
// host; Preview.Error says why it cannot be rendered.
func (c *Client) Preview(ctx context.Context, name string) (host.Preview, error) {
	var out host.Preview
	err := c.do(ctx, http.MethodGet, hostPath(name, "preview"), nil, nil, &out)
	return out, err
}
