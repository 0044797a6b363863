package bmcsim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of QEMU's machine protocol on a Unix socket
// (qemu … -qmp unix:PATH,server=on,wait=off). It lets a simulated BMC
// change a VM's CD medium, reset it and stop it.
type QMP struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

// DialQMP connects to the QMP socket at path, retrying until ctx ends
// while QEMU starts, and negotiates capabilities.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	var err error
	for {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bmcsim: qmp: dial %s: %w", path, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	line, err := q.r.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &greeting) != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("bmcsim: qmp: no greeting from %s: %v", path, err)
	}
	conn.SetDeadline(time.Time{})
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// Execute runs one QMP command and returns its "return" value, skipping
// asynchronous events.
func (q *QMP) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(dl)
		defer q.conn.SetDeadline(time.Time{})
	}
	msg := map[string]any{"execute": cmd}
	if args != nil {
		msg["arguments"] = args
	}
	b, _ := json.Marshal(msg)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("bmcsim: qmp %s: %w", cmd, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("bmcsim: qmp %s: %w", cmd, err)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, fmt.Errorf("bmcsim: qmp %s: %w", cmd, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return nil, fmt.Errorf("bmcsim: qmp %s: %s: %s", cmd, resp.Error.Class, resp.Error.Desc)
		case resp.Return != nil:
			return resp.Return, nil
		}
		return nil, errors.New("bmcsim: qmp " + cmd + ": unexpected answer " + string(line))
	}
}

// ChangeMedium puts the raw image file into the removable drive whose qdev
// id is device (e.g. -device ide-cd,id=cd0,…).
func (q *QMP) ChangeMedium(ctx context.Context, device, file string) error {
	_, err := q.Execute(ctx, "blockdev-change-medium", map[string]any{
		"id": device, "filename": file, "format": "raw", "read-only-mode": "read-only",
	})
	return err
}

// EjectMedium removes the medium from drive device (qdev id).
func (q *QMP) EjectMedium(ctx context.Context, device string) error {
	_, err := q.Execute(ctx, "eject", map[string]any{"id": device, "force": true})
	return err
}

// Medium returns the file in drive device (qdev id), or "" when empty.
func (q *QMP) Medium(ctx context.Context, device string) (string, error) {
	raw, err := q.Execute(ctx, "query-block", nil)
	if err != nil {
		return "", err
	}
	var blocks []struct {
		QdevPath string `json:"qdev"`
		Inserted *struct {
			File string `json:"file"`
		} `json:"inserted"`
	}
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return "", fmt.Errorf("bmcsim: qmp query-block: %w", err)
	}
	for _, b := range blocks {
		if b.QdevPath == device || b.QdevPath == "/machine/peripheral/"+device {
			if b.Inserted == nil {
				return "", nil
			}
			return b.Inserted.File, nil
		}
	}
	return "", fmt.Errorf("bmcsim: qmp: no drive %s", device)
}

// SystemReset resets the VM, like pressing its reset button.
func (q *QMP) SystemReset(ctx context.Context) error {
	_, err := q.Execute(ctx, "system_reset", nil)
	return err
}

// Cont starts a VM created with -S.
func (q *QMP) Cont(ctx context.Context) error {
	_, err := q.Execute(ctx, "cont", nil)
	return err
}

// Status returns the VM run state ("running", "prelaunch", "paused", …).
func (q *QMP) Status(ctx context.Context) (string, error) {
	raw, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var s struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("bmcsim: qmp query-status: %w", err)
	}
	return s.Status, nil
}

// Quit stops QEMU (power off). The connection is closed by QEMU.
func (q *QMP) Quit(ctx context.Context) error {
	_, err := q.Execute(ctx, "quit", nil)
	return err
}
