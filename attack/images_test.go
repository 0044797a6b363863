package attack_test

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestImageFetchLocalFiles — finding 1 (High): POST /api/v1/images/fetch
// with a path on the server told the file's digest, cached the file, and
// GET /images/v1/<digest> then served it to anyone: the CA key, the
// database. The same through a profile's image field.
func TestImageFetchLocalFiles(t *testing.T) {
	s := startServer(t, serverOptions{})
	// Something in the database worth stealing, and on disk.
	s.addHost("node01", 1, "")
	for _, file := range []string{"ca-key.pem", "bootpilot.db", "admin-token"} {
		path := filepath.Join(s.dir, file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (the data dir should hold it)", file, err)
		}
		sum := sha256.Sum256(b)
		real := hex.EncodeToString(sum[:])
		zero := strings.Repeat("0", 64)
		for _, tc := range []struct {
			what, path string
			body       map[string]any
		}{
			{"fetch abs, wrong digest", "/api/v1/images/fetch", map[string]any{"ref": path, "sha256": zero}},
			{"fetch abs, real digest", "/api/v1/images/fetch", map[string]any{"ref": path, "sha256": real}},
			{"fetch file://, wrong digest", "/api/v1/images/fetch", map[string]any{"ref": "file://" + path, "sha256": zero}},
			{"fetch file://, real digest", "/api/v1/images/fetch", map[string]any{"ref": "file://" + path, "sha256": real}},
			{"profile image, wrong digest", "/api/v1/profiles", imageProfile("steal0", path, zero)},
			{"profile image, real digest", "/api/v1/profiles", imageProfile("steal1", path, real)},
			{"profile image file://", "/api/v1/profiles", imageProfile("steal2", "file://"+path, real)},
		} {
			a := s.api("POST", tc.path, tc.body)
			if a.code < 400 || a.code > 499 {
				t.Errorf("%s of %s: %s, want 4xx", tc.what, file, a)
			}
			// Told a wrong digest, the answer must not correct it.
			if strings.Contains(tc.what, "wrong") && strings.Contains(string(a.body), real) {
				t.Errorf("%s of %s: the answer tells the file's sha256: %s", tc.what, file, a)
			}
		}
		if a := s.unauthenticated("GET", "/images/v1/"+real); a.code != http.StatusNotFound {
			t.Errorf("GET /images/v1/<sha256 of %s> without credentials: %d (%d bytes), want 404", file, a.code, len(a.body))
		}
	}
}

// imageProfile is an image profile whose image is ref.
func imageProfile(name, ref, sha string) map[string]any {
	return map[string]any{"name": name, "installer": "image", "kernel": benignKernel,
		"initrds": []string{benignInitrd}, "image": ref, "image_sha256": sha, "target_disk": "/dev/vda"}
}

// TestImageFetchSSRF — finding 1: http(s) refs made the server fetch any
// URL, loopback included (SSRF). Without --image-origin and
// --image-allow-private, an internal service on loopback must see nothing:
// not a request, not a connection.
func TestImageFetchSSRF(t *testing.T) {
	s := startServer(t, serverOptions{})
	secret := []byte("internal service secret\n")
	sum := sha256.Sum256(secret)
	digest := hex.EncodeToString(sum[:])
	var conns atomic.Int64
	svc := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(secret)
	}))
	svc.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	svc.Start()
	defer svc.Close()
	port := strings.TrimPrefix(svc.URL, "http://127.0.0.1:")
	for _, ref := range []string{
		"http://127.0.0.1:" + port + "/secret",
		"http://localhost:" + port + "/secret",
		"http://[::ffff:127.0.0.1]:" + port + "/secret",
		"http://2130706433:" + port + "/secret", // 127.0.0.1 as one number
	} {
		if a := s.api("POST", "/api/v1/images/fetch", map[string]any{"ref": ref, "sha256": digest}); a.code < 400 || a.code > 499 {
			t.Errorf("fetch %s: %s, want 4xx", ref, a)
		}
		if a := s.api("POST", "/api/v1/profiles", imageProfile("ssrf", ref, digest)); a.code < 400 || a.code > 499 {
			t.Errorf("profile image %s: %s, want 4xx", ref, a)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the internal service got %d connections from the server, want 0", n)
	}
	if a := s.unauthenticated("GET", "/images/v1/"+digest); a.code != http.StatusNotFound {
		t.Errorf("GET /images/v1/<sha256 of the secret>: %d, want 404", a.code)
	}
}

// TestImageFetchSecretsNotLogged — finding 7: images/fetch logged URL
// credentials and signed query strings. Neither may reach the server's
// stderr or any answer, whether the fetch is refused or fails.
func TestImageFetchSecretsNotLogged(t *testing.T) {
	s := startServer(t, serverOptions{})
	const (
		password  = "hunter2-p4ssw0rd-attack"
		signature = "SIGSECRETattack0123456789"
	)
	q := "?X-Amz-Credential=AKIAATTACK&X-Amz-Signature=" + signature
	for _, ref := range []string{
		// Loopback port 1: nothing listens, nothing leaves the machine.
		"https://user:" + password + "@127.0.0.1:1/disk.raw" + q,
		"http://user:" + password + "@localhost:1/disk.raw" + q,
		"127.0.0.1:1/repo@sha256:" + strings.Repeat("ab", 32) + q,
	} {
		for _, path := range []string{"/api/v1/images/fetch", "/api/v1/profiles"} {
			body := map[string]any{"ref": ref, "sha256": strings.Repeat("ab", 32)}
			if path == "/api/v1/profiles" {
				body = imageProfile("leak", ref, strings.Repeat("ab", 32))
			}
			a := s.api("POST", path, body)
			for _, secret := range []string{password, signature} {
				if strings.Contains(string(a.body), secret) {
					t.Errorf("POST %s with a secret-bearing ref: the answer holds %q: %s", path, secret, a)
				}
			}
		}
	}
	log := string(s.stderr.Bytes())
	for _, secret := range []string{password, signature} {
		if strings.Contains(log, secret) {
			t.Errorf("the server's stderr holds %q", secret)
		}
	}
}

// TestImageFetchHugeBody — finding 6: a 100 MB body to images/fetch was read
// whole into memory. It must be refused (413) without the server's memory
// growing; the body is streamed, never allocated here.
func TestImageFetchHugeBody(t *testing.T) {
	s := startServer(t, serverOptions{})
	const size = 100 << 20
	_, peak0 := s.memory()
	a := s.rawPost("/api/v1/images/fetch", size, true)
	if a.code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /api/v1/images/fetch with a %d MiB body: %s, want 413", size>>20, a)
	}
	s.checkMemory("100 MiB announced body", peak0)
	// Chunked: no Content-Length to refuse up front; the body must still be
	// cut at the cap, not read whole.
	_, peak0 = s.memory()
	a = s.rawPost("/api/v1/images/fetch", size, false)
	if a.code < 400 || a.code > 499 {
		t.Errorf("POST /api/v1/images/fetch with a %d MiB chunked body: %s, want 4xx", size>>20, a)
	}
	s.checkMemory("100 MiB chunked body", peak0)
}

// rawPost sends an admin POST of a JSON body of about size bytes over its
// own TLS connection, writing the body while reading the answer (a server
// that refuses early may close before the body is sent). The body is
// generated on the fly.
func (s *server) rawPost(path string, size int64, announce bool) answer {
	s.t.Helper()
	c, err := tls.Dial("tcp", s.addr, s.tlsConfig())
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute)) // a safety net
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", path, s.addr, s.admin)
	prefix, suffix := `{"ref":"`, `","sha256":"`+strings.Repeat("0", 64)+`"}`
	filler := io.LimitReader(repeatReader('a'), size-int64(len(prefix)+len(suffix)))
	body := io.MultiReader(strings.NewReader(prefix), filler, strings.NewReader(suffix))
	go func() {
		if announce {
			fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n", head, size)
			io.Copy(c, body)
			return
		}
		fmt.Fprintf(c, "%sTransfer-Encoding: chunked\r\n\r\n", head)
		buf := make([]byte, 64<<10)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				if _, werr := fmt.Fprintf(c, "%x\r\n%s\r\n", n, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				fmt.Fprint(c, "0\r\n\r\n")
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		s.t.Fatalf("POST %s (%d bytes): no answer: %v", path, size, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return answer{resp.StatusCode, resp.Header, b}
}

// repeatReader reads an endless run of one byte.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}
