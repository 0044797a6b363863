package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/internal/token"
)

// BenchmarkBootScript measures GET /boot/v1/script through the real HTTPS
// stack with a new TLS connection per request (what every booting host
// does), against a plain Go HTTPS server with the same certificate chain
// returning a fixed 300-byte body, in the same run. Run with `make bench`.
func BenchmarkBootScript(b *testing.B) {
	b.Run("baseline-fixed-300B", func(b *testing.B) {
		body := []byte(strings.Repeat("x", 299) + "\n")
		ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		}))
		ts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{testPKI().TLS}}
		ts.StartTLS()
		defer ts.Close()
		runLoad(b, func(int) string { return "https://" + ts.Listener.Addr().String() + "/" }, func(int) (string, string) { return "", "" })
	})
	for _, tc := range []struct {
		driver string
		hosts  int
	}{
		{store.DriverSQLite, 100}, {store.DriverSQLite, 10_000}, {store.DriverSQLite, 100_000},
		{store.DriverMySQL, 100}, {store.DriverMySQL, 10_000},
	} {
		b.Run(fmt.Sprintf("%s-%dhosts", tc.driver, tc.hosts), func(b *testing.B) {
			db := storetest.Open(b, tc.driver)
			seedHosts(b, db, tc.hosts)
			e := newEnvDB(b, db)
			runLoad(b, func(i int) string {
				n := i % tc.hosts // stage 0 always sends the MAC it booted from
				return fmt.Sprintf("%s/boot/v1/script?mac=52-54-01-%02x-%02x-%02x", e.url, n>>16&0xff, n>>8&0xff, n&0xff)
			}, func(i int) (string, string) {
				n := i % tc.hosts
				return fmt.Sprintf("h%06d", n), fmt.Sprintf("%032x", n)
			})
		})
	}
}

// seedHosts inserts n ready hosts h000000… with token fmt("%032x", i).
func seedHosts(b *testing.B, db *store.DB, n int) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				h := host.Host{Name: fmt.Sprintf("h%06d", i), MACs: []string{fmt.Sprintf("52:54:01:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)},
					IPv4: fmt.Sprintf("10.%d.%d.%d/8", (i+256)>>16&0xff, (i+256)>>8&0xff, (i+256)&0xff), Gateway: "10.255.255.254", DNS: []string{"10.0.0.53"},
					State: host.StateReady, TokenHash: token.Hash(fmt.Sprintf("%032x", i))}
				if err := h.Normalize(); err != nil {
					failed.Store(err)
					continue
				}
				if _, err := db.CreateHost(ctx, h, host.Record{Actor: "bench", Action: "create"}); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d hosts in %s", n, time.Since(start).Round(time.Millisecond))
}

// runLoad drives b.N requests, each on a new TLS connection, from 8
// goroutines, and reports req/s, p50/p99 latency and process CPU per request.
func runLoad(b *testing.B, url func(i int) string, creds func(i int) (user, pass string)) {
	pool := x509.NewCertPool()
	pool.AddCert(testPKI().CA)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12, ClientSessionCache: nil},
		DisableKeepAlives: true, // a new TLS handshake per request, as iPXE does
	}, Timeout: 30 * time.Second}
	const workers = 8
	lat := make([][]time.Duration, workers)
	var next atomic.Int64
	var errs atomic.Int64
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				req, _ := http.NewRequest("GET", url(i), nil)
				if u, p := creds(i); u != "" {
					req.SetBasicAuth(u, p)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs.Add(1)
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := errs.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
}

// cpuTime is the process's user + system CPU time (client and server: both
// run in this process, for the baseline as for bootpilot).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
