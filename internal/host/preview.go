package host

import "time"

// PreviewCallbackToken stands in for the one-time callback token in a
// preview. It is clearly not a token (tokens are hex), yet a valid URL path
// segment and iPXE word, so the renderer's checks pass as for a real boot.
const PreviewCallbackToken = "<callback-token>"

// Preview is what a host's next boot would be served, rendered without
// changing the host: no transition, no attempt counted, no token rotated
// (GET /api/v1/hosts/{name}/preview). Secrets never appear: the callback
// token is PreviewCallbackToken, and scripts carry no boot token or BMC
// password.
type Preview struct {
	Host    string            `json:"host"`              // "node01"
	State   State             `json:"state"`             // "reimage": the state now
	Action  Action            `json:"action"`            // "install", "clean", "localboot" or "hold"
	Attempt int               `json:"attempt"`           // 1: the attempt the next boot would be
	Script  string            `json:"script"`            // "#!ipxe\n…": the stage-1 script
	Configs map[string]string `json:"configs,omitempty"` // {"ks.cfg": "…"}: installer configs of an install
	Error   string            `json:"error,omitempty"`   // why the boot cannot be rendered (it then boots the disk), "" when it can
}

// NextBoot returns what the next boot of h at now would be served and the
// attempt number it would carry, from PlanBoot, without changing h.
func NextBoot(h Host, now time.Time, p Policy) (Action, int) {
	plan := PlanBoot(h, now, p)
	if plan.Event == "" {
		return plan.Action, h.Attempt
	}
	return plan.Action, plan.Attempt
}
