package redfish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// vmJSON is the part of a VirtualMedia resource the adapter reads.
type vmJSON struct {
	ID                   string `json:"@odata.id"`
	MediaTypes           []string
	Image                *string
	Inserted             *bool
	WriteProtected       *bool
	TransferProtocolType *string
	ConnectedVia         string
	Actions              struct {
		Insert struct {
			Target  string   `json:"target"`
			Allowed []string `json:"TransferProtocolType@Redfish.AllowableValues"`
		} `json:"#VirtualMedia.InsertMedia"`
		Eject struct {
			Target string `json:"target"`
		} `json:"#VirtualMedia.EjectMedia"`
	}
}

func (v *vmJSON) image() string {
	if v.Image == nil {
		return ""
	}
	return *v.Image
}

// inserted reports Inserted, or whether an image is set when the BMC does
// not report Inserted.
func (v *vmJSON) inserted() bool {
	if v.Inserted == nil {
		return v.image() != ""
	}
	return *v.Inserted
}

func (v *vmJSON) status() MediaStatus {
	s := MediaStatus{Slot: v.ID, MediaTypes: v.MediaTypes, Image: v.image(), Inserted: v.inserted(),
		ConnectedVia: v.ConnectedVia, InsertAction: v.Actions.Insert.Target != ""}
	if v.WriteProtected != nil {
		s.WriteProtected = *v.WriteProtected
	}
	if v.TransferProtocolType != nil {
		s.TransferProtocol = *v.TransferProtocolType
	}
	return s
}

// readMedia GETs one VirtualMedia resource.
func (c *Client) readMedia(ctx context.Context, step, id string) (*vmJSON, error) {
	b, err := c.getJSON(ctx, step, id)
	if err != nil {
		return nil, err
	}
	var v vmJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, c.fail(step, fmt.Errorf("decode %s: %w", id, err))
	}
	if v.ID == "" {
		v.ID = id
	}
	return &v, nil
}

// findSlot finds the CD/DVD virtual media slot: under the system first,
// then under the managers that manage it (or all managers).
func (c *Client) findSlot(ctx context.Context) (*vmJSON, error) {
	const step = "find virtual media"
	if c.slot != "" {
		return c.readMedia(ctx, step, c.slot)
	}
	b, err := c.getJSON(ctx, step, c.sys)
	if err != nil {
		return nil, err
	}
	var sys struct {
		VirtualMedia odataID
		Links        struct{ ManagedBy []odataID }
	}
	json.Unmarshal(b, &sys)
	var cols []string
	if sys.VirtualMedia.ID != "" {
		cols = append(cols, sys.VirtualMedia.ID)
	}
	managers := make([]string, 0, 1)
	for _, m := range sys.Links.ManagedBy {
		managers = append(managers, m.ID)
	}
	if len(managers) == 0 {
		if managers, err = c.members(ctx, step, "/redfish/v1/Managers"); err != nil {
			return nil, err
		}
	}
	for _, m := range managers {
		b, err := c.getJSON(ctx, step, m)
		if err != nil {
			return nil, err
		}
		var mgr struct{ VirtualMedia odataID }
		json.Unmarshal(b, &mgr)
		if mgr.VirtualMedia.ID != "" {
			cols = append(cols, mgr.VirtualMedia.ID)
		}
	}
	var all []*vmJSON
	for _, col := range cols {
		ids, err := c.members(ctx, step, col)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			v, err := c.readMedia(ctx, step, id)
			if err != nil {
				return nil, err
			}
			all = append(all, v)
		}
	}
	pick := func(match func(*vmJSON) bool) *vmJSON {
		for _, v := range all {
			if match(v) {
				return v
			}
		}
		return nil
	}
	v := pick(func(v *vmJSON) bool { return slices.Contains(v.MediaTypes, "CD") })
	if v == nil {
		v = pick(func(v *vmJSON) bool { return slices.Contains(v.MediaTypes, "DVD") })
	}
	if v == nil {
		v = pick(func(v *vmJSON) bool {
			id := strings.ToLower(v.ID[strings.LastIndex(v.ID, "/")+1:])
			return len(v.MediaTypes) == 0 && (strings.Contains(id, "cd") || strings.Contains(id, "dvd"))
		})
	}
	if v == nil {
		return nil, &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: no CD/DVD virtual media slot among %d slots", ErrUnsupported, len(all))}
	}
	c.slot = v.ID
	return v, nil
}

// MediaStatus returns the state of the CD/DVD virtual media slot.
func (c *Client) MediaStatus(ctx context.Context) (MediaStatus, error) {
	v, err := c.findSlot(ctx)
	if err != nil {
		return MediaStatus{}, err
	}
	return v.status(), nil
}

// mentions reports whether a BMC's error message names a property.
func mentions(err error, property string) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusBadRequest && strings.Contains(e.Message, property)
}

// InsertMedia inserts imageURL (http or https) into the CD/DVD slot and
// verifies it by reading the slot back. A different image is ejected first;
// the same image already inserted is left alone. It uses the InsertMedia
// action, or a PATCH of Image where the BMC has no action; it sends
// TransferProtocolType when the BMC advertises or demands it and drops
// WriteProtected when the BMC refuses it.
func (c *Client) InsertMedia(ctx context.Context, imageURL string) error {
	const step = "insert media"
	u, err := url.Parse(imageURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: image url must be http(s)://…", ErrInvalid)}
	}
	v, err := c.findSlot(ctx)
	if err != nil {
		return err
	}
	if v.image() == imageURL && v.inserted() {
		return nil
	}
	if v.image() != "" || v.inserted() {
		c.log.Info("redfish: ejecting other media first", "bmc", c.bmc, "slot", v.ID, "image", redact(v.image()))
		if err := c.eject(ctx, v); err != nil {
			return err
		}
	}
	proto := strings.ToUpper(u.Scheme)
	allowed := v.Actions.Insert.Allowed
	if len(allowed) > 0 && !slices.Contains(allowed, proto) {
		return &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: bmc accepts transfer protocols %v, not %s", ErrUnsupported, allowed, proto)}
	}
	withProto, withWP := len(allowed) > 0, true
	for range 3 {
		payload := map[string]any{"Image": imageURL, "Inserted": true}
		if withWP {
			payload["WriteProtected"] = true
		}
		if withProto {
			payload["TransferProtocolType"] = proto
		}
		if v.Actions.Insert.Target != "" {
			err = c.send(ctx, step, http.MethodPost, v.Actions.Insert.Target, payload)
		} else {
			err = c.send(ctx, step+" (PATCH Image)", http.MethodPatch, v.ID, payload)
		}
		switch {
		case err == nil:
		case !withProto && mentions(err, "TransferProtocolType"):
			withProto = true
			continue
		case withWP && mentions(err, "WriteProtected"):
			withWP = false
			continue
		}
		break
	}
	if err != nil {
		// A retried POST may fail although its first attempt took effect
		// (e.g. 409 ResourceInUse after a 5xx): trust the slot's state.
		if !errors.Is(err, ErrAuth) {
			if v2, rerr := c.readMedia(ctx, step+": read back", c.slot); rerr == nil && v2.image() == imageURL && v2.inserted() {
				return nil
			}
		}
		return err
	}
	return c.verifyMedia(ctx, step, func(v *vmJSON) bool { return v.image() == imageURL && v.inserted() },
		"image "+redact(imageURL)+" inserted")
}

// EjectMedia empties the CD/DVD slot and verifies it. An empty slot is left
// alone.
func (c *Client) EjectMedia(ctx context.Context) error {
	v, err := c.findSlot(ctx)
	if err != nil {
		return err
	}
	if v.image() == "" && !v.inserted() {
		return nil
	}
	return c.eject(ctx, v)
}

// eject ejects slot v (EjectMedia action, else PATCH) and verifies it.
func (c *Client) eject(ctx context.Context, v *vmJSON) error {
	const step = "eject media"
	var err error
	if v.Actions.Eject.Target != "" {
		err = c.send(ctx, step, http.MethodPost, v.Actions.Eject.Target, map[string]any{})
	} else {
		err = c.send(ctx, step+" (PATCH Image)", http.MethodPatch, v.ID, map[string]any{"Image": nil, "Inserted": false})
		if mentions(err, "Inserted") {
			err = c.send(ctx, step+" (PATCH Image)", http.MethodPatch, v.ID, map[string]any{"Image": nil})
		}
	}
	if err != nil {
		return err
	}
	return c.verifyMedia(ctx, step, func(v *vmJSON) bool { return v.image() == "" && !v.inserted() }, "slot empty")
}

// verifyMedia reads the slot back until ok holds, a few times with
// back-off, as some BMCs update the resource a moment after answering.
func (c *Client) verifyMedia(ctx context.Context, step string, ok func(*vmJSON) bool, want string) error {
	var v *vmJSON
	var err error
	wait := c.ep.RetryBackoff
	for i := 0; ; i++ {
		v, err = c.readMedia(ctx, step+": read back", c.slot)
		if err != nil {
			return err
		}
		if ok(v) {
			return nil
		}
		if i == 4 {
			break
		}
		if err := sleep(ctx, wait); err != nil {
			return c.fail(step+": read back", err)
		}
		wait = min(2*wait, c.ep.MaxBackoff)
	}
	return &Error{BMC: c.bmc, Step: step + ": read back", Err: ErrVerify,
		Message: fmt.Sprintf("want %s; slot %s has image %q, inserted %v", want, v.ID, redact(v.image()), v.inserted())}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var sigParam = regexp.MustCompile(`([?&](?:sig|signature|token|X-Amz-Signature)=)[^&\s"']+`)

// scrub removes signatures from URLs a BMC echoes in its messages.
func scrub(s string) string {
	return sigParam.ReplaceAllString(s, "${1}REDACTED")
}
