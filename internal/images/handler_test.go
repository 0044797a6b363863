package images_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/bootpilot/bootpilot/internal/images"
)

// MustServe imports data into a fresh cache and serves the cache's Handler
// under /images/.
func MustServe(tb testing.TB, data []byte) (*httptest.Server, images.Entry) {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "blob")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	c := MustCache(tb)
	e, err := c.Import(context.Background(), p)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/images/", http.StripPrefix("/images", c.Handler()))
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv, e
}

func do(tb testing.TB, method, url string, hdr map[string]string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, body
}

func TestHandler(t *testing.T) {
	data := MustRandom(t, 1<<20+7)
	srv, e := MustServe(t, data)
	url := srv.URL + "/images/" + e.Hex()
	etag := `"` + e.Digest + `"`

	for _, tc := range []struct {
		name       string
		method     string
		path       string
		hdr        map[string]string
		wantStatus int
		wantBody   []byte
		wantHdr    map[string]string
	}{
		{name: "HEAD", method: "HEAD", path: url, wantStatus: 200, wantBody: []byte{},
			wantHdr: map[string]string{"Content-Length": strconv.Itoa(len(data)), "ETag": etag,
				"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}},
		{name: "full GET", method: "GET", path: url, wantStatus: 200, wantBody: data,
			wantHdr: map[string]string{"Content-Length": strconv.Itoa(len(data)), "ETag": etag}},
		{name: "GET with file name", method: "GET", path: url + "/disk.raw.zst", wantStatus: 200, wantBody: data},
		{name: "GET sha256: prefix", method: "GET", path: srv.URL + "/images/" + e.Digest, wantStatus: 200, wantBody: data},
		{name: "Range", method: "GET", path: url, hdr: map[string]string{"Range": "bytes=1000-1999"},
			wantStatus: 206, wantBody: data[1000:2000],
			wantHdr: map[string]string{"Content-Range": fmt.Sprintf("bytes 1000-1999/%d", len(data)), "Content-Length": "1000"}},
		{name: "suffix Range", method: "GET", path: url, hdr: map[string]string{"Range": "bytes=-10"},
			wantStatus: 206, wantBody: data[len(data)-10:]},
		{name: "Range past the end", method: "GET", path: url, hdr: map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(data)+5)},
			wantStatus: 416},
		{name: "If-None-Match", method: "GET", path: url, hdr: map[string]string{"If-None-Match": etag},
			wantStatus: 304, wantBody: []byte{}},
		{name: "If-None-Match other", method: "GET", path: url, hdr: map[string]string{"If-None-Match": `"sha256:00"`},
			wantStatus: 200, wantBody: data},
		{name: "If-Range match", method: "GET", path: url, hdr: map[string]string{"Range": "bytes=5-9", "If-Range": etag},
			wantStatus: 206, wantBody: data[5:10]},
		{name: "If-Range stale", method: "GET", path: url, hdr: map[string]string{"Range": "bytes=5-9", "If-Range": `"sha256:00"`},
			wantStatus: 200, wantBody: data},
		{name: "unknown digest", method: "GET", path: srv.URL + "/images/" + hexOf([]byte("nope")), wantStatus: 404},
		{name: "malformed digest", method: "GET", path: srv.URL + "/images/..%2f..%2fetc%2fpasswd", wantStatus: 404},
		{name: "empty", method: "GET", path: srv.URL + "/images/", wantStatus: 404},
		{name: "POST", method: "POST", path: url, wantStatus: 405, wantHdr: map[string]string{"Allow": "GET, HEAD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, tc.path, tc.hdr)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.wantStatus)
			}
			if tc.wantBody != nil && !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body: %d bytes (sha256 %s), want %d bytes (sha256 %s)",
					len(body), hexOf(body), len(tc.wantBody), hexOf(tc.wantBody))
			}
			for k, v := range tc.wantHdr {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestHandlerConcurrentRanges(t *testing.T) {
	const size, parts = 8 << 20, 32
	data := MustRandom(t, size)
	srv, e := MustServe(t, data)
	out := make([]byte, size)
	errs := make(chan error, parts)
	var wg sync.WaitGroup
	for i := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi := i*size/parts, (i+1)*size/parts-1
			req, _ := http.NewRequest("GET", srv.URL+"/images/"+e.Hex()+"/disk.raw", nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", lo, hi))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusPartialContent {
				errs <- fmt.Errorf("range %d-%d: status %d", lo, hi, resp.StatusCode)
				return
			}
			if _, err := io.ReadFull(resp.Body, out[lo:hi+1]); err != nil {
				errs <- fmt.Errorf("range %d-%d: %w", lo, hi, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sum := sha256.Sum256(out)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != e.Digest {
		t.Errorf("reassembled blob digest %s, want %s", got, e.Digest)
	}
}

// BenchmarkFetchOCI pulls a 64 MiB layer from the in-memory registry into
// an empty cache, verifying it, per iteration.
func BenchmarkFetchOCI(b *testing.B) {
	tr := newTestRegistry(b)
	data := MustRandom(b, 64<<20)
	md := tr.push(b, "bootpilot/big:1", layer(data, ""))
	ref := tr.host + "/bootpilot/big@" + md.String()
	dir := b.TempDir()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c, err := images.New(filepath.Join(dir, strconv.Itoa(i)), tr.opts()...)
		if err != nil {
			b.Fatal(err)
		}
		e, err := c.Fetch(context.Background(), ref, "")
		if err != nil {
			b.Fatal(err)
		}
		if e.Size != int64(len(data)) {
			b.Fatalf("size %d, want %d", e.Size, len(data))
		}
		b.StopTimer()
		os.RemoveAll(c.Dir)
		b.StartTimer()
	}
}

// BenchmarkServe reads 1 MiB ranges of a 64 MiB cached blob over loopback
// HTTP.
func BenchmarkServe(b *testing.B) {
	const size, chunk = 64 << 20, 1 << 20
	data := MustRandom(b, size)
	srv, e := MustServe(b, data)
	url := srv.URL + "/images/" + e.Hex() + "/disk.raw"
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		lo := (i * chunk) % size
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", lo, lo+chunk-1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusPartialContent {
			b.Fatalf("status %d", resp.StatusCode)
		}
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
