package mediaurl_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/mediaurl"
)

var key = bytes.Repeat([]byte("k"), 32)

// id1 and id2 are two media ids (two publications).
var id1, id2 = mediaurl.NewID(), mediaurl.NewID()

func parts(t *testing.T, raw string) (name, id, exp, sig string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	name, ok := mediaurl.ParsePath(u.Path)
	if !ok {
		t.Fatalf("ParsePath(%q) failed", u.Path)
	}
	return name, u.Query().Get("id"), u.Query().Get("exp"), u.Query().Get("sig")
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := mediaurl.NewID()
		if len(id) != mediaurl.IDLen || strings.Trim(id, "0123456789abcdef") != "" || seen[id] {
			t.Fatalf("NewID = %q: want %d fresh lower-case hex digits", id, mediaurl.IDLen)
		}
		seen[id] = true
	}
}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour)
	u := mediaurl.Sign(key, "http://127.0.0.1:8081/", "node01", id1, exp)
	if want := "http://127.0.0.1:8081/media/v1/node01.iso?exp=1800003600&id=" + id1 + "&sig="; !strings.HasPrefix(u, want) {
		t.Fatalf("Sign = %q, want prefix %q", u, want)
	}
	name, id, e, sig := parts(t, u)
	otherKey := bytes.Repeat([]byte("x"), 32)
	flip := []byte(sig)
	if flip[0] == '0' {
		flip[0] = '1'
	} else {
		flip[0] = '0'
	}
	tests := []struct {
		desc               string
		key                []byte
		name, id, exp, sig string
		now                time.Time
		want               error
	}{
		{"valid", key, name, id, e, sig, now, nil},
		{"valid just before expiry", key, name, id, e, sig, exp.Add(-time.Second), nil},
		{"expired at exp", key, name, id, e, sig, exp, mediaurl.ErrExpired},
		{"expired later", key, name, id, e, sig, exp.Add(time.Hour), mediaurl.ErrExpired},
		{"other host", key, "node02", id, e, sig, now, mediaurl.ErrBadSignature},
		{"other media id", key, name, id2, e, sig, now, mediaurl.ErrBadSignature},
		{"no media id", key, name, "", e, sig, now, mediaurl.ErrBadSignature},
		{"upper-case media id", key, name, strings.ToUpper(id), e, sig, now, mediaurl.ErrBadSignature},
		{"extended expiry", key, name, id, "1800007200", sig, now, mediaurl.ErrBadSignature},
		{"tampered sig", key, name, id, e, string(flip), now, mediaurl.ErrBadSignature},
		{"truncated sig", key, name, id, e, sig[:62], now, mediaurl.ErrBadSignature},
		{"no sig", key, name, id, e, "", now, mediaurl.ErrBadSignature},
		{"other key", otherKey, name, id, e, sig, now, mediaurl.ErrBadSignature},
		{"short key", key[:16], name, id, e, sig, now, mediaurl.ErrShortKey},
	}
	for _, tt := range tests {
		err := mediaurl.Verify(tt.key, tt.name, tt.id, tt.exp, tt.sig, tt.now)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.desc, err, tt.want)
		}
		if tt.want != nil && tt.want != mediaurl.ErrShortKey && !errors.Is(err, host.ErrForbidden) {
			t.Errorf("%s: Verify = %v, want it to wrap host.ErrForbidden", tt.desc, err)
		}
	}
	var ve *host.ValidationError
	if err := mediaurl.Verify(key, name, id, "soon", sig, now); !errors.As(err, &ve) {
		t.Errorf("Verify(exp=soon) = %v, want *host.ValidationError", err)
	}
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"/media/v1/node01.iso", "node01", true},
		{"/media/v1/node01", "", false},
		{"/media/v1/../etc/passwd.iso", "", false},
		{"/media/v1/a/b.iso", "", false},
		{"/media/v2/node01.iso", "", false},
		{"/media/v1/.iso", "", false},
	}
	for _, tt := range tests {
		got, ok := mediaurl.ParsePath(tt.path)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParsePath(%q) = %q, %v, want %q, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

// newServer serves data as node01's ISO, published as media id1, through a
// mediaurl.Handler.
func newServer(t *testing.T, data []byte) *httptest.Server {
	t.Helper()
	h := &mediaurl.Handler{
		Key: key,
		Source: func(_ context.Context, name, id string) (*mediaurl.Media, error) {
			if name != "node01" || id != id1 {
				return nil, fmt.Errorf("no iso for %s: %w", name, host.ErrNotFound)
			}
			return &mediaurl.Media{R: bytes.NewReader(data), Size: int64(len(data)), ModTime: time.Unix(1_700_000_000, 0)}, nil
		},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestHandlerStatus(t *testing.T) {
	data := []byte("0123456789")
	srv := newServer(t, data)
	exp := time.Now().Add(time.Hour)
	good := mediaurl.Sign(key, srv.URL, "node01", id1, exp)
	other := mediaurl.Sign(key, srv.URL, "node02", id1, exp)
	unpublished := mediaurl.Sign(key, srv.URL, "node01", id2, exp)
	expired := mediaurl.Sign(key, srv.URL, "node01", id1, time.Now().Add(-time.Minute))
	tests := []struct {
		method, url string
		want        int
		wantLen     string
	}{
		{"GET", good, 200, "10"},
		{"HEAD", good, 200, "10"},
		{"GET", strings.Replace(good, "node01", "node02", 1), 403, ""},
		{"GET", expired, 403, ""},
		{"GET", other, 404, ""},
		{"GET", unpublished, 404, ""},
		{"GET", strings.Replace(good, id1, id2, 1), 403, ""},
		{"GET", strings.Replace(good, "&id="+id1, "", 1), 403, ""},
		{"GET", srv.URL + "/media/v1/node01.iso", 403, ""},
		{"GET", srv.URL + "/other", 404, ""},
		{"POST", good, 405, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, tt.url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.url, resp.StatusCode, tt.want)
		}
		if tt.wantLen != "" && resp.Header.Get("Content-Length") != tt.wantLen {
			t.Errorf("%s %s Content-Length = %q, want %q", tt.method, tt.url, resp.Header.Get("Content-Length"), tt.wantLen)
		}
	}
}

// TestConcurrentRangedReaders reassembles a file from 32 concurrent readers
// fetching small ranges, as BMCs do, and checks its SHA-256.
func TestConcurrentRangedReaders(t *testing.T) {
	const size = 3<<20 + 12345 // not a multiple of the chunk size
	const chunk = 32 << 10
	data := make([]byte, size)
	rand.Read(data)
	srv := newServer(t, data)
	u := mediaurl.Sign(key, srv.URL, "node01", id1, time.Now().Add(time.Hour))

	out := make([]byte, size)
	offsets := make(chan int64)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range offsets {
				end := min(off+chunk, size) - 1
				req, _ := http.NewRequest("GET", u, nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				want := fmt.Sprintf("bytes %d-%d/%d", off, end, size)
				if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want || int64(len(b)) != end-off+1 {
					errs <- fmt.Errorf("range %d-%d: status %d, Content-Range %q, %d bytes; want 206, %q", off, end, resp.StatusCode, resp.Header.Get("Content-Range"), len(b), want)
					return
				}
				copy(out[off:], b)
			}
		}()
	}
	go func() {
		defer close(offsets)
		for off := int64(0); off < size; off += chunk {
			select {
			case offsets <- off:
			case err := <-errs:
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, want := sha256.Sum256(out), sha256.Sum256(data); got != want {
		t.Fatalf("reassembled sha256 = %x, want %x", got, want)
	}
}

func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	name, id, e, sig := parts(&testing.T{}, mediaurl.Sign(key, "http://x", "node01", id1, now.Add(time.Hour)))
	for b.Loop() {
		if err := mediaurl.Verify(key, name, id, e, sig, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRangedRead64K measures 64 KiB ranged GETs over loopback HTTP,
// 8 readers at a time.
func BenchmarkRangedRead64K(b *testing.B) {
	const size, chunk = 64 << 20, 64 << 10
	data := make([]byte, size)
	h := &mediaurl.Handler{Key: key, Source: func(context.Context, string, string) (*mediaurl.Media, error) {
		return &mediaurl.Media{R: bytes.NewReader(data), Size: size}, nil
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	u := mediaurl.Sign(key, srv.URL, "node01", id1, time.Now().Add(time.Hour))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.SetBytes(chunk)
	b.SetParallelism(4)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			off := (n.Add(1) * chunk) % size
			req, _ := http.NewRequest("GET", u, nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+chunk-1))
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusPartialContent {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
