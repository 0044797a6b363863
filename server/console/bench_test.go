package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/auth"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/server/console"
)

// benchHostCount is how many hosts BenchmarkHostList seeds
// (BOOTPILOT_BENCH_HOSTS overrides 100,000).
func benchHostCount(b *testing.B) int {
	if s := os.Getenv("BOOTPILOT_BENCH_HOSTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("BOOTPILOT_BENCH_HOSTS=%q: want a number", s)
		}
		return n
	}
	return 100_000
}

// seedBench stores n hosts b000000… straight through the store: every
// third team=lab (else team=ops), every tenth failed, profile rocky9.
func seedBench(b *testing.B, db *store.DB, n int) {
	b.Helper()
	ctx := context.Background()
	if _, err := db.CreateProfile(ctx, host.Profile{Name: "rocky9", Kernel: "https://mirror.example/rocky9/vmlinuz",
		Initrds: []string{"https://mirror.example/rocky9/initrd.img"}, Installer: host.InstallerKickstart}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				h := host.Host{Name: fmt.Sprintf("b%06d", i), MACs: []string{fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", i>>24&255, i>>16&255, i>>8&255, i&255)},
					IPv4: fmt.Sprintf("10.%d.%d.%d/8", i>>16&255, i>>8&255, i&255), Gateway: "10.0.0.1", DNS: []string{"10.0.0.2"},
					Profile: "rocky9", State: host.StateReady, Labels: host.Labels{"team": "ops"}, TokenHash: "x"}
				if i%3 == 0 {
					h.Labels["team"] = "lab"
				}
				if i%10 == 0 {
					h.State = host.StateFailed
				}
				if _, err := db.CreateHost(ctx, h, host.Record{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d hosts in %v", n, time.Since(start).Round(time.Millisecond))
}

// BenchmarkHostList measures, side by side on one server with 100,000
// hosts in SQLite, the console's host list against the JSON API for the
// same page (the first 100 hosts, and the first 100 failed rocky9 hosts),
// and a console search by name and label the API cannot do. It reports
// the page size in bytes. The console reuses its state counts for a few
// seconds; the -uncounted cases count on every request (the cold cost).
// Run it alone:
//
//	go test -run '^$' -bench BenchmarkHostList -benchtime 50x ./server/console/
func BenchmarkHostList(b *testing.B) {
	db := storetest.Open(b, "sqlite")
	seedBench(b, db, benchHostCount(b))
	e := newConsoleEnvDB(b, db)
	e.addUser("ada", auth.Grant{Role: auth.RoleViewer})
	s := e.httpLogin("ada", testPassword)
	get := func(b *testing.B, path string, api bool) int {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		c := s.c
		if api {
			req.Header.Set("Authorization", "Bearer "+e.admin)
			c = e.client
		}
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		return int(n)
	}
	for _, bc := range []struct {
		name, path string
		api        bool
	}{
		{"first-page/console", "/hosts", false},
		{"first-page/api", "/api/v1/hosts?limit=100", true},
		{"filtered/console", "/hosts?state=failed&profile=rocky9", false},
		{"filtered/api", "/api/v1/hosts?state=failed&profile=rocky9&limit=100", true},
		{"search/console", "/hosts?q=b0123+team%3Dlab", false},
		{"first-page/console-uncounted", "/hosts", false},
		{"filtered/console-uncounted", "/hosts?state=failed&profile=rocky9", false},
		{"search/console-uncounted", "/hosts?q=b0123+team%3Dlab", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if strings.HasSuffix(bc.name, "-uncounted") {
				defer console.SetCountsTTL(0)() // count on every request
			}
			size := 0
			for b.Loop() {
				size = get(b, bc.path, bc.api)
			}
			b.ReportMetric(float64(size), "B/page")
		})
	}
}
