package replica_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

const (
	hostsEnv     = "BOOTPILOT_FAULT_HOSTS"
	controlHosts = 20              // ready hosts, never flagged, booting during the storm
	workers      = 32              // concurrent iPXE-like clients
	dbCut        = 2 * time.Second // how long the database stays unreachable
	bootTries    = 40              // a host's boot requests before the test gives up on it
	callTries    = 40              // a callback's requests before it counts as lost
	backoff      = 50 * time.Millisecond
)

// hostCount is the number of flagged hosts: BOOTPILOT_FAULT_HOSTS, else
// 1,000 in CI and 200 elsewhere.
func hostCount(t *testing.T) int {
	t.Helper()
	if s := os.Getenv(hostsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("%s=%q: want a number of at least 10", hostsEnv, s)
		}
		return n
	}
	if testenv.InCI() {
		return 1000
	}
	return 200
}

// TestReplicaFaults boots N flagged hosts and a few unflagged ones through
// three replicas on one database while one replica is killed with SIGKILL
// and the database connection is cut, then checks the outcome through the
// API and the audit trail. On MariaDB, storms without faults on one and on
// three replicas first give the throughput side by side; not on PostgreSQL,
// to keep the CI run under 3 minutes on 2 cores (the figures were alike).
func TestReplicaFaults(t *testing.T) {
	n := hostCount(t)
	type figure struct {
		name string
		res  *stormResult
	}
	var figures []figure
	for _, db := range []struct {
		name     string
		dsn      func(testing.TB) string
		baseline bool // also the storms without faults, for the throughput
	}{
		{"mariadb", storetest.MySQLDSN, true},
		{"postgres", storetest.PostgresDSN, false},
	} {
		// Each storm is a subtest of its own, so its replicas stop (and
		// give back their database connections) before the next starts:
		// at 32 pooled connections per replica, PostgreSQL's default
		// max_connections of 100 holds three replicas, not six.
		t.Run(db.name, func(t *testing.T) {
			for _, s := range []struct {
				test     string
				replicas int
				faults   bool
				name     string
			}{
				{"1-replica", 1, false, "1 replica, no faults"},
				{"3-replicas", 3, false, "3 replicas, no faults"},
				{"3-replicas-faults", 3, true, "3 replicas, SIGKILL + database cut"},
			} {
				if !s.faults && !db.baseline {
					continue
				}
				t.Run(s.test, func(t *testing.T) {
					c := startCluster(t, s.replicas, db.dsn(t))
					res := runStorm(t, c, n, s.faults)
					figures = append(figures, figure{db.name + ", " + s.name, res})
				})
			}
		})
	}
	for _, f := range figures {
		r := f.res
		line := fmt.Sprintf("%-42s %4d hosts in %5.1fs: %6.1f install cycles/s", f.name, r.hosts, r.elapsed.Seconds(),
			float64(r.hosts)/r.elapsed.Seconds())
		if r.killed != "" {
			line += fmt.Sprintf("; boots retried %d (%d connection errors, %d 5xx), callbacks retried %d "+
				"(%d connection errors, %d 5xx), %d callbacks answered \"already recorded\", %d hosts served a 2nd attempt; "+
				"killed %s; database cut for %v (%d connections closed)",
				r.bootRetries.Load(), r.bootConnErrs.Load(), r.boot5xx.Load(), r.callbackRetries.Load(), r.callbackConnErrs.Load(),
				r.callback5xx.Load(), r.already.Load(), r.reserved, r.killed, r.cut, r.cutConns)
		}
		t.Log(line)
	}
}

// stormResult is what one storm measured.
type stormResult struct {
	hosts            int
	elapsed          time.Duration
	bootRetries      atomic.Int64 // boot requests repeated after a connection error or 5xx
	callbackRetries  atomic.Int64 // callbacks repeated after a connection error or 5xx
	bootConnErrs     atomic.Int64 // boot requests that got no answer
	boot5xx          atomic.Int64 // boot requests answered 5xx
	callbackConnErrs atomic.Int64 // callbacks that got no answer
	callback5xx      atomic.Int64 // callbacks answered 5xx
	already          atomic.Int64 // callbacks answered "already recorded"
	reserved         int          // hosts served more than one attempt
	killed           string       // the replica killed, "" if none
	cut              time.Duration
	cutConns         int
}

// hostRun is what the client saw of one host.
type hostRun struct {
	name     string
	mac      string
	token    string
	flagged  bool
	failures int    // boot requests after the challenge that failed (connection error, 5xx)
	attempts []int  // the attempt numbers of the install scripts it got
	callback string // the callback's final answer status: "recorded" or "already recorded"
	problem  string // what went wrong, "" if nothing
}

var attemptRE = regexp.MustCompile(`(?m)^echo bootpilot: \S+: install \S+ \(\S+\), attempt (\d+)$`)

// runStorm registers n flagged hosts and controlHosts unflagged ones on c,
// boots them all concurrently through c's replicas (killing replica 1 and
// cutting the database mid-storm when faults is set) and checks the result.
func runStorm(t *testing.T, c *cluster, n int, faults bool) *stormResult {
	t.Helper()
	res := &stormResult{hosts: n}
	c.call(http.StatusCreated, "POST", "/api/v1/profiles", map[string]any{"name": "rocky9", "installer": "kickstart",
		"kernel": "https://mirror.example/rocky9/vmlinuz", "initrds": []string{"https://mirror.example/rocky9/initrd.img"},
		"cmdline": "console=ttyS0"}, nil) // flip_on_serve off: the installer calls back

	runs := make([]*hostRun, n+controlHosts)
	for i := range runs {
		runs[i] = &hostRun{name: fmt.Sprintf("node%04d", i), mac: mac(i), flagged: i < n}
		if !runs[i].flagged {
			runs[i].name = fmt.Sprintf("ctrl%04d", i-n)
		}
	}
	setup := time.Now()
	var setupErr atomic.Value
	parallel(8, len(runs), func(i int) {
		h := runs[i]
		err := c.do(http.StatusCreated, "POST", "/api/v1/hosts", map[string]any{"name": h.name, "macs": []string{h.mac},
			"ipv4": fmt.Sprintf("10.1.%d.%d/16", i/250, i%250+2), "gateway": "10.1.0.1", "dns": []string{"10.1.0.53"},
			"profile": "rocky9"}, nil)
		var tok struct {
			Token string `json:"token"`
		}
		if err == nil {
			err = c.do(http.StatusOK, "POST", "/api/v1/hosts/"+h.name+"/boot-token", nil, &tok)
		}
		h.token = tok.Token
		if err == nil && h.flagged {
			err = c.do(http.StatusOK, "POST", "/api/v1/hosts/"+h.name+"/reimage", map[string]any{"reason": "fault test"}, nil)
		}
		if err != nil {
			setupErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := setupErr.Load().(error); err != nil {
		t.Fatalf("registering the hosts: %v", err)
	}
	t.Logf("%d replica(s): registered %d hosts (%d flagged) in %.1fs", len(c.replicas), len(runs), n, time.Since(setup).Seconds())

	// Controls are spread through the storm.
	order := rand.Perm(len(runs))
	cl := &stormClient{c: c, res: res, http: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: c.pool},
		DisableKeepAlives: true, // a new TLS connection per request, as iPXE does
	}}}
	var completed atomic.Int64
	faultsDone := make(chan struct{})
	start := time.Now()
	if faults {
		go func() {
			defer close(faultsDone)
			for completed.Load() < int64(n/3) {
				time.Sleep(5 * time.Millisecond)
			}
			victim := c.replicas[1]
			if err := victim.kill(); err != nil {
				t.Error(err)
				return
			}
			res.killed = fmt.Sprintf("replica 1 (%s) after %d cycles", victim.addr, completed.Load())
			for completed.Load() < int64(n*55/100) {
				time.Sleep(5 * time.Millisecond)
			}
			t0 := time.Now()
			res.cutConns = c.proxy.cut(dbCut)
			res.cut = time.Since(t0).Round(10 * time.Millisecond)
		}()
	} else {
		close(faultsDone)
	}
	parallel(workers, len(runs), func(k int) {
		h := runs[order[k]]
		cl.cycle(h)
		if h.flagged {
			completed.Add(1)
		}
	})
	res.elapsed = time.Since(start)
	<-faultsDone
	if faults && res.killed == "" {
		t.Error("the storm ended before the replica was killed")
	}

	for _, h := range runs {
		if h.problem != "" {
			t.Errorf("%s: %s", h.name, h.problem)
		}
	}
	audit := time.Now()
	res.reserved = checkAudit(t, c, runs)
	if !t.Failed() {
		checkLocalbootAfter(t, cl, runs)
	}
	t.Logf("%d replica(s): storm %.1fs, checks %.1fs", len(c.replicas), res.elapsed.Seconds(), time.Since(audit).Seconds())
	return res
}

// stormClient is the round-robin, iPXE-like client of a storm.
type stormClient struct {
	c    *cluster
	res  *stormResult
	http *http.Client
	next atomic.Uint64
}

// pick returns the next replica index, round robin (dead replicas
// included: the client does not know).
func (s *stormClient) pick() int { return int(s.next.Add(1) % uint64(len(s.c.replicas))) }

// cycle boots h the way iPXE does and, for an install script, reports
// "installed" to another replica, as the installer would.
func (s *stormClient) cycle(h *hostRun) {
	for try := 0; ; try++ {
		if try == bootTries {
			h.problem = fmt.Sprintf("no boot script after %d tries", bootTries)
			return
		}
		if try > 0 {
			s.res.bootRetries.Add(1)
			time.Sleep(backoff * time.Duration(min(try, 10)))
		}
		r := s.pick()
		code, body, err := s.boot(r, h)
		if err != nil || code >= 500 {
			if code >= 500 {
				s.res.boot5xx.Add(1)
			} else {
				s.res.bootConnErrs.Add(1)
			}
			if !errors.Is(err, errChallenge) {
				// The credentials were sent: the replica may have served
				// the attempt before its answer was lost.
				h.failures++
			}
			continue
		}
		if code != http.StatusOK {
			h.problem = fmt.Sprintf("boot: %d %.200s", code, body)
			return
		}
		if !h.flagged {
			if body != bootscripts.Localboot {
				h.problem = fmt.Sprintf("unflagged host got a script other than localboot:\n%s", body)
			}
			return
		}
		m := attemptRE.FindStringSubmatch(body)
		cb := callbackRE.FindStringSubmatch(body)
		if m == nil || cb == nil {
			h.problem = fmt.Sprintf("flagged host got no install script:\n%.500s", body)
			return
		}
		a, _ := strconv.Atoi(m[1])
		h.attempts = append(h.attempts, a)
		s.callback(h, r, cb[1])
		return
	}
}

// errChallenge marks a failure before the credentials were sent.
var errChallenge = errors.New("401 challenge")

// boot asks replica r for h's stage-1 script: first without credentials
// (iPXE waits for the 401 challenge), then with HTTP Basic, each on a new
// TLS connection. code is 0 when the credentialed request got no answer.
func (s *stormClient) boot(r int, h *hostRun) (code int, body string, err error) {
	u := s.c.replicas[r].url + "/boot/v1/script?mac=" + url.QueryEscape(h.mac)
	req, _ := http.NewRequest("GET", u, nil)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %v", errChallenge, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		return resp.StatusCode, "", fmt.Errorf("%w: got %d", errChallenge, resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", u, nil)
	req.SetBasicAuth(h.name, h.token)
	resp, err = s.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(b), nil
}

var callbackRE = regexp.MustCompile(`bootpilot\.callback=(\S+)`)

// callback posts {"event":"installed"} to cbURL on a replica other than
// served (when there is one), moving on to another replica after a
// connection error and retrying after a 5xx.
func (s *stormClient) callback(h *hostRun, served int, cbURL string) {
	u, err := url.Parse(cbURL)
	if err != nil {
		h.problem = fmt.Sprintf("callback URL %q: %v", cbURL, err)
		return
	}
	nr := len(s.c.replicas)
	r := served
	if nr > 1 {
		r = (served + 1 + rand.IntN(nr-1)) % nr
	}
	for try := 0; ; try++ {
		if try == callTries {
			h.problem = fmt.Sprintf("callback lost after %d tries", callTries)
			return
		}
		if try > 0 {
			s.res.callbackRetries.Add(1)
			time.Sleep(backoff * time.Duration(min(try, 10)))
		}
		u.Host = s.c.replicas[r].addr
		req, _ := http.NewRequest("POST", u.String(), strings.NewReader(`{"event":"installed"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.http.Do(req)
		if err != nil {
			s.res.callbackConnErrs.Add(1)
			if isConnError(err) && nr > 1 {
				r = (r + 1) % nr
				if r == served && nr > 2 {
					r = (r + 1) % nr
				}
			}
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			s.res.callback5xx.Add(1)
			continue
		}
		var ans struct {
			Status string `json:"status"`
		}
		json.Unmarshal(b, &ans)
		if resp.StatusCode != http.StatusOK || ans.Status != "recorded" && ans.Status != "already recorded" {
			h.problem = fmt.Sprintf("callback: %d %.200s", resp.StatusCode, b)
			return
		}
		h.callback = ans.Status
		if ans.Status == "already recorded" {
			s.res.already.Add(1)
		}
		return
	}
}

// isConnError reports whether err means the replica is not there (refused,
// reset, closed mid-request).
func isConnError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// checkAudit checks every host's state and audit trail through the API and
// returns how many hosts were served more than one attempt.
func checkAudit(t *testing.T, c *cluster, runs []*hostRun) (reserved int) {
	t.Helper()
	var mu sync.Mutex
	parallel(8, len(runs), func(i int) {
		h := runs[i]
		var got struct {
			State host.State `json:"state"`
		}
		var evs struct {
			Events []host.Record `json:"events"`
		}
		var errs []string
		fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
		if err := c.do(http.StatusOK, "GET", "/api/v1/hosts/"+h.name, nil, &got); err != nil {
			fail("%v", err)
		}
		if err := c.do(http.StatusOK, "GET", "/api/v1/hosts/"+h.name+"/events?limit=10000", nil, &evs); err != nil {
			fail("%v", err)
		}
		if got.State != host.StateReady {
			fail("state %q, want ready", got.State)
		}
		count := map[string]int{} // "event from→to"
		served := map[int]int{}   // attempt → serve events
		nserve := 0
		for _, e := range evs.Events {
			if e.Event == "" {
				continue // create, token-rotate: not lifecycle
			}
			count[fmt.Sprintf("%s %s→%s", e.Event, e.From, e.To)]++
			if e.Event == host.EventServe {
				nserve++
				served[e.Attempt]++
				if served[e.Attempt] == 2 {
					fail("attempt %d served twice", e.Attempt)
				}
			}
		}
		if !h.flagged {
			if len(count) != 0 {
				fail("unflagged host has lifecycle events %v, want none", count)
			}
		} else {
			for _, k := range []string{"reimage ready→reimage", "serve reimage→installing", "installed installing→ready"} {
				if count[k] != 1 {
					fail("%d %q events, want exactly 1 (all: %v)", count[k], k, count)
				}
			}
			for k := range count {
				switch k {
				case "reimage ready→reimage", "serve reimage→installing", "installed installing→ready", "serve installing→installing":
				default:
					fail("unexpected event %q (all: %v)", k, count)
				}
			}
			// A second attempt is legitimate only after a boot request
			// that failed once the credentials were sent (its answer
			// lost to a killed replica or a database cut).
			if nserve > 1+h.failures {
				fail("%d serve events after %d failed boot requests, want at most %d", nserve, h.failures, 1+h.failures)
			}
			if h.callback == "" {
				fail("no callback answered recorded or already recorded")
			}
			seen := map[int]bool{}
			for _, a := range h.attempts {
				if seen[a] {
					fail("the client got attempt %d twice", a)
				}
				seen[a] = true
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if nserve > 1 {
			reserved++
		}
		for _, e := range errs {
			t.Errorf("%s: %s", h.name, e)
		}
	})
	return reserved
}

// checkLocalbootAfter boots a sample of the now-ready hosts once more on a
// live replica: each must get localboot.
func checkLocalbootAfter(t *testing.T, cl *stormClient, runs []*hostRun) {
	t.Helper()
	for i, h := range runs {
		if i >= 100 {
			break
		}
		code, body, err := cl.boot(0, h)
		if err != nil || code != http.StatusOK || body != bootscripts.Localboot {
			t.Errorf("%s boots after the storm: %d %v %.300q, want localboot", h.name, code, err, body)
		}
	}
}

// parallel calls f(0…n-1) from w goroutines.
func parallel(w, n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// mac returns a distinct locally administered MAC for n.
func mac(n int) string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", n>>16&0xff, n>>8&0xff, n&0xff)
}
