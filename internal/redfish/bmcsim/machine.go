package bmcsim

import (
	"context"
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
type Machine struct {
	QMP      *QMP
	Device   string                          // qdev id of the CD drive: "cd0"
	Dir      string                          // where fetched images are written
	HTTP     *http.Client                    // for fetching images; nil: http.DefaultClient
	Chunk    int64                           // range size; 0: 64 KiB
	PowerOn  func(ctx context.Context) error // nil: QMP cont (a VM started with -S)
	PowerOff func(ctx context.Context) error // nil: QMP quit
	Log      *slog.Logger                    // nil: slog.Default()

	mu  sync.Mutex
	n   int
	err []error
}

// Attach sets cfg's hooks to drive the machine.
func (m *Machine) Attach(cfg *Config) {
	cfg.OnInsert = func(u string) error { return m.with(func(ctx context.Context) error { return m.insert(ctx, u) }) }
	cfg.OnEject = func() {
		m.record("eject", m.with(func(ctx context.Context) error { return m.QMP.EjectMedium(ctx, m.Device) }))
	}
	cfg.OnReset = func(string) { m.record("reset", m.with(m.QMP.SystemReset)) }
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
