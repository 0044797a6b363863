package main

import (
	"fmt"
	"io"
	"time"
)

// cliBMCRetryNotice is what a command that reaches a BMC prints while it
// waits: the server retries a BMC that answers 5xx or does not answer, with
// internal/redfish's default back-off (0.5 + 1 + 2 + 4 s).
const cliBMCRetryNotice = "waiting for the BMC (retrying for up to 7.5 s)…"

// cliBMCNoticeAfter is how long a BMC call runs before the notice shows; a
// BMC that answers at once prints nothing. Zero prints it before the call
// (tests).
var cliBMCNoticeAfter = 1500 * time.Millisecond

// cliBMCWait runs call, a request through the server to a host's BMC, and
// prints cliBMCRetryNotice on stderr if it is still running after
// cliBMCNoticeAfter.
func cliBMCWait[T any](stderr io.Writer, call func() (T, error)) (T, error) {
	if cliBMCNoticeAfter <= 0 {
		fmt.Fprintln(stderr, cliBMCRetryNotice)
		return call()
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(cliBMCNoticeAfter)
		defer t.Stop()
		select {
		case <-t.C:
			fmt.Fprintln(stderr, cliBMCRetryNotice)
		case <-stop:
		}
	}()
	v, err := call()
	close(stop)
	<-done
	return v, err
}
