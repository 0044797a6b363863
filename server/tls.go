package server

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTicketPeriod is how long one session-ticket key encrypts new
// tickets; a ticket resumes during its period and the next one.
const DefaultTicketPeriod = 24 * time.Hour

// ticketInfo is the HKDF info prefix of session-ticket keys. Changing it
// invalidates every outstanding ticket once (a full handshake each).
const ticketInfo = "bootpilot tls session ticket key v1\x00"

// SessionTicketKey returns the session-ticket key of rotation period
// index period: HKDF-SHA256 over master (the subkey the secret key derives
// for label "tls-session-tickets") with the period as info. Replicas sharing
// the secret key compute the same keys, so any replica resumes a session
// another one started.
func SessionTicketKey(master []byte, period int64) [32]byte {
	info := binary.BigEndian.AppendUint64([]byte(ticketInfo), uint64(period))
	k, err := hkdf.Key(sha256.New, master, nil, string(info), 32)
	if err != nil {
		panic("server: hkdf: " + err.Error()) // only for lengths > 255*32
	}
	return [32]byte(k)
}

// ticketKeys encrypts and decrypts session tickets under keys derived from
// a shared master key, rotating lazily: the first ticket operation in a new
// period switches to [current, previous] keys. No goroutine, no drift from
// the clock, and an idle replica catches up on its next handshake.
type ticketKeys struct {
	master []byte
	period int64 // seconds
	now    func() time.Time
	cur    atomic.Int64 // period index in use, +1 (0: none yet)
	mu     sync.Mutex   // serialises rotation
	cfg    *tls.Config  // holds the keys; only its Encrypt/DecryptTicket are used
}

func newTicketKeys(master []byte, period time.Duration, now func() time.Time) *ticketKeys {
	if period < time.Second {
		period = DefaultTicketPeriod
	}
	return &ticketKeys{master: master, period: int64(period / time.Second), now: now, cfg: &tls.Config{}}
}

// index returns the rotation period index at t: floor(unix / period).
func (k *ticketKeys) index(t time.Time) int64 {
	u := t.Unix()
	i := u / k.period
	if u < 0 && u%k.period != 0 {
		i--
	}
	return i
}

// rotate installs the keys of the current period if they are not yet.
func (k *ticketKeys) rotate() {
	i := k.index(k.now())
	if k.cur.Load() == i+1 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur.Load() == i+1 {
		return
	}
	// The first key encrypts; both decrypt.
	k.cfg.SetSessionTicketKeys([][32]byte{SessionTicketKey(k.master, i), SessionTicketKey(k.master, i-1)})
	k.cur.Store(i + 1)
}

// install makes cfg issue and accept tickets under k's keys. It uses the
// WrapSession/UnwrapSession hooks, which survive Config.Clone (http.Server
// and httptest clone the config they are given).
func (k *ticketKeys) install(cfg *tls.Config) {
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		k.rotate()
		return k.cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		k.rotate()
		return k.cfg.DecryptTicket(identity, cs) // nil, nil: unknown key, full handshake
	}
}
