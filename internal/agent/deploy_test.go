package agent_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bootpilot/bootpilot/internal/agent"
	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
)

func randomImage(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.IntN(16)) // compressible, not trivially
	}
	return b
}

func compress(t *testing.T, kind string, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch kind {
	case "raw":
		return raw
	case "gzip":
		w := gzip.NewWriter(&buf)
		w.Write(raw)
		w.Close()
	case "zstd":
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw)
		w.Close()
	}
	return buf.Bytes()
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestDeploy(t *testing.T) {
	ca := agenttest.NewCA(t, "deploy test CA")
	rec := agenttest.NewRecorder()
	srv := tlsServer(t, ca, rec)
	client := agent.NewHTTPClient(ca.Fingerprint)
	raw := randomImage(3<<20 + 12345) // not a multiple of the write size
	for _, kind := range []string{"raw", "gzip", "zstd"} {
		t.Run(kind, func(t *testing.T) {
			body := compress(t, kind, raw)
			rec.Files["/img."+kind] = body
			dev, path := mustDevice(t, 8<<20)
			var lines []string
			res, err := agent.Deploy(context.Background(), client, srv.URL+"/img."+kind, sha(body), dev,
				func(s string) { lines = append(lines, s) })
			if err != nil {
				t.Fatalf("Deploy: %v", err)
			}
			if res.Compression != kind || res.Written != int64(len(raw)) || res.Downloaded != int64(len(body)) {
				t.Errorf("Deploy = %+v, want %s, %d written, %d downloaded", res, kind, len(raw), len(body))
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got[:len(raw)], raw) {
				t.Errorf("disk does not start with the image")
			}
			if got[len(raw)] != 0xaa || got[len(got)-1] != 0xaa {
				t.Errorf("bytes after the image were changed")
			}
			if len(lines) == 0 {
				t.Errorf("no progress reported")
			}
		})
	}
}

func TestDeployChecksumMismatchWipes(t *testing.T) {
	ca := agenttest.NewCA(t, "deploy test CA")
	rec := agenttest.NewRecorder()
	srv := tlsServer(t, ca, rec)
	raw := randomImage(3 << 20)
	body := compress(t, "zstd", raw)
	rec.Files["/img"] = body
	dev, path := mustDevice(t, 8<<20)
	wrong := sha(append(body[:len(body):len(body)], 0))
	_, err := agent.Deploy(context.Background(), agent.NewHTTPClient(ca.Fingerprint), srv.URL+"/img", wrong, dev, nil)
	if !errors.Is(err, agent.ErrChecksum) {
		t.Fatalf("Deploy with wrong sha256 = %v, want ErrChecksum", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Errorf("first MiB not wiped after checksum mismatch")
	}
	if !bytes.Equal(got[len(got)-1<<20:], make([]byte, 1<<20)) {
		t.Errorf("last MiB not wiped after checksum mismatch")
	}
	if !bytes.Equal(got[1<<20:2<<20], raw[1<<20:2<<20]) {
		t.Errorf("middle of the disk should hold the (unverified) image data")
	}
}

func TestDeployErrors(t *testing.T) {
	ca := agenttest.NewCA(t, "deploy test CA")
	rec := agenttest.NewRecorder()
	srv := tlsServer(t, ca, rec)
	big := randomImage(2 << 20)
	rec.Files["/big"] = big
	rec.Files["/corrupt"] = append(compress(t, "gzip", big)[:1000], make([]byte, 100)...)
	client := agent.NewHTTPClient(ca.Fingerprint)
	tests := []struct{ name, path, sum string }{
		{"not found", "/missing", sha(nil)},
		{"larger than disk", "/big", sha(big)},
		{"corrupt gzip", "/corrupt", sha(rec.Files["/corrupt"])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, _ := mustDevice(t, 1<<20+4096)
			if _, err := agent.Deploy(context.Background(), client, srv.URL+tt.path, tt.sum, dev, nil); err == nil {
				t.Errorf("Deploy(%s) succeeded", tt.path)
			}
		})
	}
	t.Run("other CA", func(t *testing.T) {
		other := agenttest.NewCA(t, "another CA")
		dev, path := mustDevice(t, 1<<20)
		rec.Files["/small"] = []byte("hello")
		_, err := agent.Deploy(context.Background(), agent.NewHTTPClient(other.Fingerprint), srv.URL+"/small", sha([]byte("hello")), dev, nil)
		if !errors.Is(err, agent.ErrUntrusted) {
			t.Errorf("Deploy from a server of another CA = %v, want ErrUntrusted", err)
		}
		got, _ := os.ReadFile(path)
		if got[0] != 0xaa {
			t.Errorf("disk changed although nothing was downloaded")
		}
	})
}

// BenchmarkDeployZstd measures streaming a 64 MiB zstd image over loopback
// HTTPS (pinned CA) into a file with on-the-fly SHA-256.
func BenchmarkDeployZstd(b *testing.B) {
	ca := agenttest.NewCA(b, "bench CA")
	rec := agenttest.NewRecorder()
	srv := tlsServer(b, ca, rec)
	raw := randomImage(64 << 20)
	var buf bytes.Buffer
	w, _ := zstd.NewWriter(&buf)
	w.Write(raw)
	w.Close()
	rec.Files["/img"] = buf.Bytes()
	dev, _ := mustDevice(b, 64<<20)
	client := agent.NewHTTPClient(ca.Fingerprint)
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := agent.Deploy(context.Background(), client, srv.URL+"/img", sha(buf.Bytes()), dev, nil); err != nil {
			b.Fatal(err)
		}
	}
}
