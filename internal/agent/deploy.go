package agent

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression formats recognised by their magic bytes.
var (
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicGzip = []byte{0x1f, 0x8b}
	magicXZ   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// ErrChecksum means the downloaded image does not have the expected SHA-256.
var ErrChecksum = errors.New("image checksum mismatch")

// ProgressFunc receives human-readable progress lines.
type ProgressFunc func(detail string)

// DeployResult describes a finished deploy.
type DeployResult struct {
	Downloaded  int64  // bytes received (compressed)
	Written     int64  // bytes written to the device
	Compression string // raw, zstd, gzip or xz
}

// wipeSize is how much is zeroed at each end of a disk after a failed deploy
// and by the metadata clean method.
const wipeSize = 1 << 20

// Deploy streams the image at url to dev. The SHA-256 of the bytes as
// downloaded is computed while writing and must equal wantSHA256 (hex);
// zstd, gzip and xz images are decompressed on the fly (detected by magic
// bytes), anything else is written raw. On any failure after the first write
// (including a checksum mismatch, which returns ErrChecksum) the first and
// last MiB of dev are zeroed so a half-written disk does not boot.
func Deploy(ctx context.Context, client *http.Client, url, wantSHA256 string, dev Device, progress ProgressFunc) (DeployResult, error) {
	if progress == nil {
		progress = func(string) {}
	}
	var res DeployResult
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return res, fmt.Errorf("agent: deploy: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return res, fmt.Errorf("agent: deploy: get image: %w", stripURL(err))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return res, fmt.Errorf("agent: deploy: get image: %s", resp.Status)
	}
	body := &resumingBody{ctx: ctx, client: client, url: url, body: resp.Body, size: resp.ContentLength,
		etag: resp.Header.Get("ETag"), progress: progress}
	defer func() { body.body.Close() }()
	res, err = writeImage(body, resp.ContentLength, wantSHA256, dev, progress)
	if err != nil {
		if werr := WipeEnds(dev); werr != nil {
			err = errors.Join(err, werr)
		}
		return res, fmt.Errorf("agent: deploy: %w", err)
	}
	return res, nil
}

// resumeAttempts bounds how often a broken download is resumed.
const resumeAttempts = 5

// resumingBody reads an image download and, when the connection breaks
// before Content-Length bytes arrived, resumes it with a Range request
// (If-Range the first response's ETag) instead of starting over. The
// checksum is computed over the bytes as they are read, so a server that
// resumed with different bytes still fails the deploy.
type resumingBody struct {
	ctx      context.Context
	client   *http.Client
	url      string
	etag     string
	body     io.ReadCloser
	off      int64
	size     int64
	resumes  int
	broken   error
	progress ProgressFunc
}

func (r *resumingBody) Read(p []byte) (int, error) {
	for {
		if r.broken != nil {
			if err := r.resume(); err != nil {
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		r.off += int64(n)
		switch {
		case err == nil, err == io.EOF && (r.size < 0 || r.off == r.size):
			return n, err
		case err == io.EOF:
			err = io.ErrUnexpectedEOF
		}
		if r.size < 0 || r.resumes >= resumeAttempts {
			return n, err
		}
		r.broken = err
		if n > 0 {
			return n, nil
		}
	}
}

func (r *resumingBody) resume() error {
	cause := r.broken
	r.body.Close()
	r.resumes++
	r.progress(fmt.Sprintf("download broke at %d of %d bytes (%v); resuming (%d/%d)", r.off, r.size, stripURL(cause), r.resumes, resumeAttempts))
	select {
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-time.After(time.Duration(r.resumes) * time.Second):
	}
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", r.off))
	if r.etag != "" {
		req.Header.Set("If-Range", r.etag)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.body = io.NopCloser(strings.NewReader(""))
		if r.resumes >= resumeAttempts {
			return fmt.Errorf("resume download: %w (after %v)", stripURL(err), stripURL(cause))
		}
		r.broken = err
		return r.resume()
	}
	want := fmt.Sprintf("bytes %d-%d/%d", r.off, r.size-1, r.size)
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want {
		resp.Body.Close()
		r.body = io.NopCloser(strings.NewReader(""))
		return fmt.Errorf("resume download at %d: server answered %s %q, want 206 %q (after %v)",
			r.off, resp.Status, resp.Header.Get("Content-Range"), want, stripURL(cause))
	}
	r.body, r.broken = resp.Body, nil
	return nil
}

// countingReader counts bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func writeImage(body io.Reader, length int64, wantSHA256 string, dev Device, progress ProgressFunc) (DeployResult, error) {
	var res DeployResult
	h := sha256.New()
	raw := &countingReader{r: io.TeeReader(body, h)}
	br := bufio.NewReaderSize(raw, 1<<20)
	magic, _ := br.Peek(6)
	var src io.Reader = br
	res.Compression = "raw"
	switch {
	case bytes.HasPrefix(magic, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return res, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		src, res.Compression = zr, "zstd"
	case bytes.HasPrefix(magic, magicGzip):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return res, fmt.Errorf("gzip: %w", err)
		}
		src, res.Compression = gr, "gzip"
	case bytes.HasPrefix(magic, magicXZ):
		xr, err := xz.NewReader(br)
		if err != nil {
			return res, fmt.Errorf("xz: %w", err)
		}
		src, res.Compression = xr, "xz"
	}
	progress(fmt.Sprintf("writing %s image (%s)", res.Compression, sizeString(length)))
	buf := make([]byte, 4<<20)
	last := time.Now()
	for {
		n, rerr := fill(src, buf)
		if n > 0 {
			if res.Written+int64(n) > dev.Size() {
				return res, fmt.Errorf("image larger than the disk (%d bytes)", dev.Size())
			}
			if _, err := dev.WriteAt(buf[:n], res.Written); err != nil {
				return res, fmt.Errorf("write at %d: %w", res.Written, err)
			}
			res.Written += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return res, fmt.Errorf("read image: %w", rerr)
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			if length > 0 {
				progress(fmt.Sprintf("downloaded %d%% (%s written)", raw.n*100/length, sizeString(res.Written)))
			} else {
				progress(fmt.Sprintf("%s written", sizeString(res.Written)))
			}
		}
	}
	// Hash whatever follows the compressed stream too: the checksum covers
	// the whole download.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return res, fmt.Errorf("read image: %w", err)
	}
	res.Downloaded = raw.n
	if length >= 0 && raw.n != length {
		return res, fmt.Errorf("short download: %d of %d bytes", raw.n, length)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA256 {
		return res, fmt.Errorf("%w: got sha256 %s, want %s", ErrChecksum, got, wantSHA256)
	}
	if err := dev.Sync(); err != nil {
		return res, fmt.Errorf("sync: %w", err)
	}
	return res, nil
}

// fill reads into buf until it is full or r ends. Unlike io.ReadFull it
// returns io.EOF for a clean end after a partial buffer and passes every
// other error (such as a truncated compressed stream's
// io.ErrUnexpectedEOF) through.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// WipeEnds zeroes the first and last MiB of dev (or all of it when smaller)
// and syncs it.
func WipeEnds(dev Device) error {
	size := dev.Size()
	if err := zeroRange(dev, 0, min(wipeSize, size)); err != nil {
		return err
	}
	if size > wipeSize {
		start := max(size-wipeSize, wipeSize)
		if err := zeroRange(dev, start, size-start); err != nil {
			return err
		}
	}
	return dev.Sync()
}

func sizeString(n int64) string {
	switch {
	case n < 0:
		return "size unknown"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
