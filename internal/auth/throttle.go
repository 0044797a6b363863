package auth

import (
	"sync"
	"time"
)

// Throttle slows down password guessing: after a few failures under one key
// (a username, a client address) each further attempt must wait, the wait
// doubling per failure up to a cap. A success clears the key. Nothing locks
// for good, so a stranger can delay a user's login by at most the user cap,
// never lock them out.
type Throttle struct {
	Free     int           // failures before waiting starts: 5
	First    time.Duration // the first wait: 1s
	Max      time.Duration // the longest wait: 30s for users, 5m for addresses
	Forget   time.Duration // failures older than this are forgotten: 15m
	MaxKeys  int           // memory bound: 100000 keys
	Now      func() time.Time
	mu       sync.Mutex
	failures map[string]*failure
}

type failure struct {
	n     int
	last  time.Time
	until time.Time
}

// NewThrottle returns a Throttle whose waits cap at max.
func NewThrottle(max time.Duration) *Throttle {
	return &Throttle{Free: 5, First: time.Second, Max: max, Forget: 15 * time.Minute, MaxKeys: 100000, Now: time.Now}
}

// Check returns ErrThrottled and the time left while key must wait.
func (t *Throttle) Check(key string) (time.Duration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.failures[key]
	if f == nil {
		return 0, nil
	}
	if left := f.until.Sub(t.Now()); left > 0 {
		return left, ErrThrottled
	}
	return 0, nil
}

// Fail records a failure under key.
func (t *Throttle) Fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	if t.failures == nil {
		t.failures = map[string]*failure{}
	}
	f := t.failures[key]
	if f == nil || now.Sub(f.last) > t.Forget {
		if len(t.failures) >= t.MaxKeys {
			t.evict(now)
		}
		f = &failure{}
		t.failures[key] = f
	}
	f.n++
	f.last = now
	if over := f.n - t.Free; over > 0 {
		wait := t.First
		for i := 1; i < over && wait < t.Max; i++ {
			wait *= 2
		}
		f.until = now.Add(min(wait, t.Max))
	}
}

// Succeed clears key.
func (t *Throttle) Succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, key)
}

// evict drops forgotten keys, or, when every key is fresh, the oldest half
// (a flood of addresses must not grow memory without bound).
func (t *Throttle) evict(now time.Time) {
	for k, f := range t.failures {
		if now.Sub(f.last) > t.Forget {
			delete(t.failures, k)
		}
	}
	if len(t.failures) < t.MaxKeys {
		return
	}
	n := 0
	for k := range t.failures {
		if n >= t.MaxKeys/2 {
			break
		}
		delete(t.failures, k)
		n++
	}
}
