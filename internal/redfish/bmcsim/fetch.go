package bmcsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

// FetchISO downloads imageURL into the file dst the way a BMC reads virtual
// media: a HEAD for the size, then GETs of at most chunk bytes with a Range
// header, each of which must answer 206 with the matching Content-Range. It
// returns the image size. A nil client means http.DefaultClient.
func FetchISO(ctx context.Context, client *http.Client, imageURL, dst string, chunk int64) (int64, error) {
	if client == nil {
		client = http.DefaultClient
	}
	if chunk <= 0 {
		chunk = 64 << 10
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, imageURL, nil)
	if err != nil {
		return 0, fmt.Errorf("bmcsim: fetch: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bmcsim: fetch: head: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bmcsim: fetch: head: status %d", resp.StatusCode)
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		return 0, errors.New("bmcsim: fetch: server does not accept byte ranges")
	}
	size, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if err != nil || size <= 0 {
		return 0, fmt.Errorf("bmcsim: fetch: head: bad Content-Length %q", resp.Header.Get("Content-Length"))
	}
	f, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("bmcsim: fetch: %w", err)
	}
	defer f.Close()
	for off := int64(0); off < size; off += chunk {
		end := min(off+chunk, size) - 1
		if err := fetchRange(ctx, client, imageURL, f, off, end, size); err != nil {
			return 0, err
		}
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("bmcsim: fetch: %w", err)
	}
	return size, nil
}

func fetchRange(ctx context.Context, client *http.Client, imageURL string, f *os.File, off, end, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, imageURL, nil)
	if err != nil {
		return fmt.Errorf("bmcsim: fetch: %w", err)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("bmcsim: fetch: range %d-%d: %w", off, end, err)
	}
	defer resp.Body.Close()
	want := fmt.Sprintf("bytes %d-%d/%d", off, end, size)
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want {
		return fmt.Errorf("bmcsim: fetch: range %d-%d: status %d, Content-Range %q, want 206 and %q",
			off, end, resp.StatusCode, resp.Header.Get("Content-Range"), want)
	}
	n, err := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(resp.Body, end-off+2))
	if err != nil {
		return fmt.Errorf("bmcsim: fetch: range %d-%d: %w", off, end, err)
	}
	if n != end-off+1 {
		return fmt.Errorf("bmcsim: fetch: range %d-%d: got %d bytes, want %d", off, end, n, end-off+1)
	}
	return nil
}
