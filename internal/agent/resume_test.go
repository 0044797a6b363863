package agent_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/agent"
	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
)

// flakyImage serves body with ETag etag; the first `breaks` responses send
// only `cut` bytes and then drop the connection.
type flakyImage struct {
	mu     sync.Mutex
	body   []byte
	etag   string
	breaks int
	cut    int
	ranges []string
	// next, when set, replaces body and etag after the first break.
	next     []byte
	nextETag string
}

func (f *flakyImage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	brk := f.breaks > 0
	if brk {
		f.breaks--
	}
	f.ranges = append(f.ranges, r.Header.Get("Range"))
	body, etag := f.body, f.etag
	f.mu.Unlock()
	if !brk {
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	}
	start := 0
	if rg := r.Header.Get("Range"); rg != "" {
		start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(len(body)-1)+"/"+strconv.Itoa(len(body)))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)-start))
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("ETag", etag)
	}
	w.Write(body[start : start+f.cut])
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
	f.mu.Lock()
	if f.next != nil {
		f.body, f.etag, f.next = f.next, f.nextETag, nil
	}
	f.mu.Unlock()
}

func TestDeployResumes(t *testing.T) {
	ca := agenttest.NewCA(t, "resume test CA")
	raw := randomImage(3 << 20)
	body := compress(t, "zstd", raw)
	img := &flakyImage{body: body, etag: `"v1"`, breaks: 2, cut: 100000}
	srv := tlsServer(t, ca, img)
	dev, path := mustDevice(t, 4<<20)
	var lines []string
	res, err := agent.Deploy(context.Background(), agent.NewHTTPClient(ca.Fingerprint), srv.URL+"/img", sha(body), dev,
		func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatalf("Deploy through two broken connections: %v", err)
	}
	if res.Downloaded != int64(len(body)) || res.Written != int64(len(raw)) {
		t.Errorf("Deploy = %+v", res)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got[:len(raw)], raw) {
		t.Error("resumed deploy wrote the wrong bytes")
	}
	want := []string{"", "bytes=100000-", "bytes=200000-"}
	if strings.Join(img.ranges, ",") != strings.Join(want, ",") {
		t.Errorf("requests' Range headers = %q, want %q", img.ranges, want)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "resuming (2/5)") {
		t.Errorf("progress lacks the resume lines: %q", lines)
	}
}

func TestDeployResumeChangedImage(t *testing.T) {
	ca := agenttest.NewCA(t, "resume test CA")
	body := randomImage(1 << 20)
	// The image changes on the server while the agent reconnects: If-Range
	// makes the server answer 200 with the whole new image, which must not
	// be spliced onto the old bytes.
	img := &flakyImage{body: body, etag: `"v1"`, breaks: 1, cut: 50000, next: randomImage(1<<20 + 1), nextETag: `"v2"`}
	srv := tlsServer(t, ca, img)
	dev, path := mustDevice(t, 2<<20)
	_, err := agent.Deploy(context.Background(), agent.NewHTTPClient(ca.Fingerprint), srv.URL+"/img", sha(body), dev, nil)
	if err == nil || !strings.Contains(err.Error(), "200 OK") || !strings.Contains(err.Error(), "want 206") {
		t.Fatalf("Deploy with the image changed mid-download = %v, want a refused resume", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Error("first MiB not wiped after a failed resume")
	}
}
