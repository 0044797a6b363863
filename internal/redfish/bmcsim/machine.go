package bmcsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"
)

// Machine drives a QEMU VM on a simulated BMC's behalf: insert fetches the
// image from its URL in small ranges (FetchISO) and puts it into the VM's CD
// drive, eject empties the drive, a restart is a system_reset, and power
// on/off call PowerOn/PowerOff. Give the CD drive a lower bootindex than the
// disk: OVMF then boots the inserted ISO and falls through to the disk when
// the drive is empty.
//
// Secure Boot changes need ApplySecureBoot, PowerOn and PowerOff: QEMU reads
// the UEFI variables (the pflash VARS file) only when it starts, so a power
// cycle with a change stops the VM (PowerOff), writes the change
// (ApplySecureBoot) and starts it again (PowerOn) instead of a system_reset.
type Machine struct {
	QMP      *QMP
	Device   string                          // qdev id of the CD drive: "cd0"
	Dir      string                          // where fetched images are written
	HTTP     *http.Client                    // for fetching images; nil: http.DefaultClient
	Chunk    int64                           // range size; 0: 64 KiB
	PowerOn  func(ctx context.Context) error // nil: QMP cont (a VM started with -S)
	PowerOff func(ctx context.Context) error // nil: QMP quit
	Log      *slog.Logger                    // nil: slog.Default()
	// ApplySecureBoot writes a change into the VARS file the next PowerOn
	// starts QEMU with (see qemutest.EnrollDB); nil: changes fail.
	ApplySecureBoot func(ctx context.Context, c SecureBootChange) error

	mu      sync.Mutex
	n       int
	err     []error
	stopped bool // a Secure Boot change stopped the VM: the restart starts it
}

// Attach sets cfg's hooks to drive the machine.
func (m *Machine) Attach(cfg *Config) {
	cfg.OnInsert = func(u string) error { return m.with(func(ctx context.Context) error { return m.insert(ctx, u) }) }
	cfg.OnEject = func() {
		m.record("eject", m.with(func(ctx context.Context) error { return m.QMP.EjectMedium(ctx, m.Device) }))
	}
	cfg.OnSecureBoot = func(c SecureBootChange) error {
		err := m.with(func(ctx context.Context) error { return m.secureBoot(ctx, c) })
		m.record("secure boot", err)
		return err
	}
	cfg.OnReset = func(string) {
		m.mu.Lock()
		stopped := m.stopped
		m.stopped = false
		m.mu.Unlock()
		if stopped {
			m.record("reset", m.with(m.PowerOn))
			return
		}
		m.record("reset", m.with(m.QMP.SystemReset))
	}
	cfg.OnPower = func(on bool) {
		switch {
		case on && m.PowerOn != nil:
			m.record("power on", m.with(m.PowerOn))
		case on:
			m.record("power on", m.with(m.QMP.Cont))
		case m.PowerOff != nil:
			m.record("power off", m.with(m.PowerOff))
		default:
			m.record("power off", m.with(m.QMP.Quit))
		}
	}
}

// with runs fn with a bounded context.
func (m *Machine) with(fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return fn(ctx)
}

// Errors returns the errors the hooks met (they cannot return them to the
// BMC), in order.
func (m *Machine) Errors() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]error(nil), m.err...)
}

func (m *Machine) record(what string, err error) {
	if err == nil {
		return
	}
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	log.Error("bmcsim: machine", "op", what, "err", err)
	m.mu.Lock()
	m.err = append(m.err, fmt.Errorf("%s: %w", what, err))
	m.mu.Unlock()
}

// insert fetches the image and changes the CD medium.
func (m *Machine) insert(ctx context.Context, imageURL string) error {
	m.mu.Lock()
	m.n++
	dst := filepath.Join(m.Dir, fmt.Sprintf("media-%d.iso", m.n))
	m.mu.Unlock()
	if _, err := FetchISO(ctx, m.HTTP, imageURL, dst, m.Chunk); err != nil {
		return err
	}
	return m.QMP.ChangeMedium(ctx, m.Device, dst)
}

// secureBoot stops the VM and writes the change to its variables.
func (m *Machine) secureBoot(ctx context.Context, c SecureBootChange) error {
	if m.ApplySecureBoot == nil || m.PowerOn == nil || m.PowerOff == nil {
		return errors.New("bmcsim: the machine cannot change Secure Boot variables (set ApplySecureBoot, PowerOn and PowerOff)")
	}
	if err := m.PowerOff(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	m.stopped = c.Restart
	m.mu.Unlock()
	return m.ApplySecureBoot(ctx, c)
}
