package bootscripts

import "time"

// SetClock makes r's user-template deadlines read now.
func SetClock(r *Renderer, now func() time.Time) { r.now = now }

// HoldRenderSlots takes every user-template render slot until release is
// called, and makes a render give up waiting for one at once.
func HoldRenderSlots() (release func()) {
	for range cap(renders) {
		renders <- struct{}{}
	}
	wait := renderWait
	renderWait = 0
	return func() {
		renderWait = wait
		for range cap(renders) {
			<-renders
		}
	}
}
