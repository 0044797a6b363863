package server_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/server"
)

var attemptRE = regexp.MustCompile(`attempt (\d+)`)

// TestConcurrentBootsAndCallbacks: 50 simultaneous boots of one host serve
// each attempt number at most once, and 50 simultaneous callbacks flip it once.
func TestConcurrentBootsAndCallbacks(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		e := newEnv(t, driver, func(o *server.Options) { o.Policy.MaxAttempts = 100 })
		tok := e.addHost("node01", mac1, "10.0.2.15/24")
		e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", nil, nil)

		const n = 50
		var mu sync.Mutex
		served := map[int]string{} // attempt → callback URL
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body := e.boot("node01", tok, mac1)
				if code != 200 {
					t.Errorf("boot: %d %s", code, body)
					return
				}
				m := attemptRE.FindStringSubmatch(body)
				if m == nil {
					t.Errorf("boot %d: not an install script:\n%s", i, body)
					return
				}
				a, _ := strconv.Atoi(m[1])
				mu.Lock()
				defer mu.Unlock()
				if _, dup := served[a]; dup {
					t.Errorf("attempt %d served twice", a)
				}
				served[a] = callbackURL(t, body)
			}()
		}
		wg.Wait()
		h := e.host("node01")
		if len(served) != n || h.Attempt != n || h.State != host.StateInstalling {
			t.Fatalf("served %d distinct attempts, host at %s/%d; want %d, installing/%d", len(served), h.State, h.Attempt, n, n)
		}
		for a := 1; a <= n; a++ {
			if _, ok := served[a]; !ok {
				t.Errorf("attempt %d never served", a)
			}
		}

		// Callbacks race: the last attempt's token 25 times, stale ones 25 times.
		results := make(chan string, n)
		for i := 0; i < n; i++ {
			u := served[n]
			if i%2 == 1 {
				u = served[1+i%(n-1)]
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body := e.callback(u, `{"event":"installed"}`)
				switch {
				case code == 200 && strings.Contains(body, `"recorded"`):
					results <- "recorded"
				case code == 200 && strings.Contains(body, "already"):
					results <- "noop"
				case code == 403:
					results <- "stale"
				default:
					results <- "unexpected " + strconv.Itoa(code) + " " + body
				}
			}()
		}
		wg.Wait()
		close(results)
		count := map[string]int{}
		for r := range results {
			count[r]++
		}
		if count["recorded"] != 1 || count["noop"] != n/2-1 || count["stale"] != n/2 || len(count) != 3 {
			t.Errorf("callback outcomes = %v, want 1 recorded, %d no-ops, %d stale", count, n/2-1, n/2)
		}
		evs, err := e.db.Events(context.Background(), "node01", 1000)
		if err != nil {
			t.Fatal(err)
		}
		installed := 0
		for _, r := range evs {
			if r.Event == host.EventInstalled {
				installed++
			}
		}
		if h := e.host("node01"); h.State != host.StateReady || installed != 1 {
			t.Errorf("after callbacks: %s with %d installed events, want ready with 1", h.State, installed)
		}
	})
}
