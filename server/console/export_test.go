package console

import "time"

// SetCountsTTL sets how long the host list reuses state counts (0: never)
// and returns a function restoring the old value.
func SetCountsTTL(d time.Duration) (restore func()) {
	old := countsTTL
	countsTTL = d
	return func() { countsTTL = old }
}
