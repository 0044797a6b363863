package redfish

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

var (
	bootTargets = []string{"None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "UefiShell", "UefiHttp", "UefiTarget"}
	bootModes   = []string{"Once", "Continuous", "Disabled"}
	resetKinds  = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle"}
	restarts    = []string{"GracefulRestart", "ForceRestart", "PowerCycle"}
)

// SetBootOverride sets the UEFI boot source override: target is a Redfish
// BootSourceOverrideTarget ("Cd", "None", "Hdd", …) and mode "Once",
// "Continuous" or "Disabled". Disabling sends target None. The change is
// read back; BootSourceOverrideMode is dropped for BMCs that refuse it.
func (c *Client) SetBootOverride(ctx context.Context, target, mode string) error {
	const step = "set boot override"
	if !slices.Contains(bootTargets, target) || !slices.Contains(bootModes, mode) {
		return &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: target %q must be one of %v and mode %q one of %v", ErrInvalid, target, bootTargets, mode, bootModes)}
	}
	if mode == "Disabled" {
		target = "None"
	}
	boot := map[string]any{"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": mode}
	if mode != "Disabled" {
		boot["BootSourceOverrideMode"] = "UEFI"
	}
	err := c.send(ctx, step, http.MethodPatch, c.sys, map[string]any{"Boot": boot})
	if mentions(err, "BootSourceOverrideMode") {
		delete(boot, "BootSourceOverrideMode")
		err = c.send(ctx, step, http.MethodPatch, c.sys, map[string]any{"Boot": boot})
	}
	if err != nil {
		return err
	}
	got, err := c.Boot(ctx)
	if err != nil {
		return err
	}
	if got.Enabled != mode || (mode != "Disabled" && got.Target != target) {
		return &Error{BMC: c.bmc, Step: step + ": read back", Err: ErrVerify,
			Message: fmt.Sprintf("want %s %s; bmc reports target %s, enabled %s", target, mode, got.Target, got.Enabled)}
	}
	return nil
}

// Reset powers the system on ("On"), off ("ForceOff", "GracefulShutdown")
// or restarts it ("GracefulRestart", "ForceRestart", "PowerCycle"). Turning
// on a system that is on, or off one that is off, does nothing; restarting a
// system that is off powers it on.
func (c *Client) Reset(ctx context.Context, kind string) error {
	step := "reset " + kind
	if !slices.Contains(resetKinds, kind) {
		return &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: reset type must be one of %v", ErrInvalid, resetKinds)}
	}
	b, err := c.getJSON(ctx, step, c.sys)
	if err != nil {
		return err
	}
	var sys struct {
		PowerState string
		Actions    struct {
			Reset struct {
				Target  string   `json:"target"`
				Allowed []string `json:"ResetType@Redfish.AllowableValues"`
			} `json:"#ComputerSystem.Reset"`
		}
	}
	if err := json.Unmarshal(b, &sys); err != nil {
		return c.fail(step, fmt.Errorf("decode system: %w", err))
	}
	off := sys.PowerState == "Off"
	switch {
	case kind == "On" && sys.PowerState == "On",
		(kind == "ForceOff" || kind == "GracefulShutdown") && off:
		return nil
	case slices.Contains(restarts, kind) && off:
		kind = "On"
	}
	target := sys.Actions.Reset.Target
	if target == "" {
		target = c.sys + "/Actions/ComputerSystem.Reset"
	}
	if allowed := sys.Actions.Reset.Allowed; len(allowed) > 0 && !slices.Contains(allowed, kind) {
		return &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: bmc allows reset types %v", ErrUnsupported, allowed)}
	}
	return c.send(ctx, step, http.MethodPost, target, map[string]any{"ResetType": kind})
}
