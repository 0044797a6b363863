package redfish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/stmcginnis/gofish"
)

// send POSTs or PATCHes payload to path and, when the BMC answers 202 with
// a task monitor, follows it to the end.
func (c *Client) send(ctx context.Context, step, method, path string, payload any) error {
	var resp *http.Response
	err := c.call(ctx, func(api *gofish.APIClient) (err error) {
		switch method {
		case http.MethodPost:
			resp, err = api.Post(path, payload)
		case http.MethodPatch:
			resp, err = api.Patch(path, payload)
		default:
			err = fmt.Errorf("redfish: unsupported method %s", method)
		}
		return err
	})
	if err != nil {
		return c.fail(step, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil
	}
	monitor := resp.Header.Get("Location")
	if monitor == "" {
		var t struct {
			TaskMonitor string
			ID          string `json:"@odata.id"`
		}
		json.Unmarshal(body, &t)
		monitor = t.TaskMonitor
		if monitor == "" {
			monitor = t.ID
		}
	}
	if monitor == "" {
		c.log.Warn("redfish: 202 without task monitor; relying on read back", "bmc", c.bmc, "step", step)
		return nil
	}
	return c.followTask(ctx, step, monitor, retryAfter(resp, c.ep.TaskPoll))
}

// retryAfter returns the Retry-After delay of resp, or def.
func retryAfter(resp *http.Response, def time.Duration) time.Duration {
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, 30*time.Second)
	}
	return def
}

var taskRunning = []string{"New", "Starting", "Running", "Pending", "Suspended", "Interrupted", "Stopping", "Service", "Cancelling"}

// followTask polls a task monitor (or task resource) until the operation
// ends: the monitor answers 202 while it runs, then the operation's own
// answer; a Task resource answers 200 with TaskState.
func (c *Client) followTask(ctx context.Context, step, monitor string, wait time.Duration) error {
	step += ": task"
	if u, err := url.Parse(monitor); err == nil && u.IsAbs() {
		monitor = u.RequestURI()
	}
	ctx, cancel := context.WithTimeout(ctx, c.ep.TaskTimeout)
	defer cancel()
	for {
		if err := sleep(ctx, wait); err != nil {
			return &Error{BMC: c.bmc, Step: step, Message: "monitor " + monitor + " did not finish", Err: fmt.Errorf("%w: %w", ErrTask, err)}
		}
		var resp *http.Response
		err := c.call(ctx, func(api *gofish.APIClient) (err error) {
			resp, err = api.Get(monitor)
			return err
		})
		if err != nil {
			e := c.fail(step, err)
			var re *Error
			if errors.As(e, &re) && re.Status != 0 && !errors.Is(re.Err, ErrAuth) {
				re.Err = ErrTask
			}
			return e
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		wait = retryAfter(resp, c.ep.TaskPoll)
		if resp.StatusCode == http.StatusAccepted {
			continue
		}
		var t struct {
			TaskState  string
			TaskStatus string
			Messages   []struct{ MessageId, Message string }
		}
		if json.Unmarshal(body, &t) != nil || t.TaskState == "" {
			return nil // the operation's own answer
		}
		if slices.Contains(taskRunning, t.TaskState) {
			continue
		}
		if t.TaskState == "Completed" && t.TaskStatus != "Critical" {
			return nil
		}
		msg := "TaskState " + t.TaskState
		for _, m := range t.Messages {
			msg += "; " + m.MessageId + " (" + m.Message + ")"
		}
		return &Error{BMC: c.bmc, Step: step, Status: resp.StatusCode, Message: scrub(msg), Err: ErrTask}
	}
}
