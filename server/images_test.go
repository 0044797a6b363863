package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/images"
	"github.com/bootpilot/bootpilot/server"
)

func TestImageDeployProfile(t *testing.T) {
	e := newEnv(t, "sqlite")
	tok := e.addHost("node01", mac1, "10.0.2.15/24")
	blob := []byte(strings.Repeat("disk image ", 10000))
	sum := sha256.Sum256(blob)
	want := hex.EncodeToString(sum[:])

	req, _ := http.NewRequest("POST", e.url+"/api/v1/images", strings.NewReader(string(blob)))
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.client.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("upload: %v %v", err, resp)
	}
	resp.Body.Close()

	// A wrong digest is refused at profile time, never at deploy time.
	bad := map[string]any{"name": "img-bad", "kernel": "https://k.example/vmlinuz", "installer": "image",
		"image": e.url + "/images/v1/" + want, "image_sha256": strings.Repeat("0", 64)}
	var eb struct{ Error, Field string }
	if code := e.do("POST", "/api/v1/profiles", bad, &eb); code != 400 || eb.Field != "image_sha256" {
		t.Errorf("wrong digest: %d %+v, want 400 on image_sha256", code, eb)
	}
	unreachable := map[string]any{"name": "img-gone", "kernel": "https://k.example/vmlinuz", "installer": "image",
		"image": "https://127.0.0.1:1/disk.raw", "image_sha256": strings.Repeat("1", 64)}
	if code := e.do("POST", "/api/v1/profiles", unreachable, &eb); code != 400 || eb.Field != "image" {
		t.Errorf("unreachable image: %d %+v, want 400 on image", code, eb)
	}

	e.mustDo(201, "POST", "/api/v1/profiles", map[string]any{"name": "img", "kernel": "https://k.example/vmlinuz",
		"initrds": []string{"https://k.example/agent.cpio.gz"}, "installer": "image",
		"image": e.url + "/images/v1/" + want, "image_sha256": want, "target_disk": "/dev/vda"}, nil)
	e.mustDo(200, "POST", "/api/v1/hosts/node01/reimage", map[string]any{"profile": "img"}, nil)
	_, s := e.boot("node01", tok, mac1)
	for _, w := range []string{"bootpilot.task=deploy", "bootpilot.image=" + e.url + "/images/v1/" + want, "bootpilot.sha256=" + want, "bootpilot.disk=/dev/vda"} {
		if !strings.Contains(s, w) {
			t.Errorf("deploy script lacks %q:\n%s", w, s)
		}
	}
	if h := e.host("node01"); h.State != host.StateInstalling {
		t.Errorf("state %s", h.State)
	}

	// Hosts fetch it with Range, as the agent may resume.
	req, _ = http.NewRequest("GET", e.url+"/images/v1/"+want, nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err = e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(part) != "disk image" {
		t.Errorf("ranged image: %d %q", resp.StatusCode, part)
	}
}

// rawDo sends body as is to the admin API and returns the status and answer.
func (e *env) rawDo(method, path string, body io.Reader) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, body)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// jsonBody encodes v.
func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// TestImageFetchLocalPathAttack is the reported attack: a local path of a
// secret file in the data dir, with a wrong digest, used to answer 400 with
// the file's real digest; sent back, that digest cached the file, and
// GET /images/v1/<digest> served it to anyone. Now the path is refused
// (no import dir) without the digest, whatever digest is offered, through
// the fetch API and a profile's image alike.
func TestImageFetchLocalPathAttack(t *testing.T) {
	dataDir := t.TempDir()
	cache, err := images.New(filepath.Join(dataDir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "sqlite", func(o *server.Options) { o.Images = cache })
	secret := []byte("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n")
	keyFile := filepath.Join(dataDir, "ca-key.pem")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(secret)
	real := hex.EncodeToString(sum[:])
	zeros := strings.Repeat("0", 64)
	for _, ref := range []string{keyFile, "file://" + keyFile} {
		for _, want := range []string{zeros, real} {
			code, body := e.rawDo("POST", "/api/v1/images/fetch", jsonBody(map[string]string{"ref": ref, "sha256": want}))
			if code != http.StatusBadRequest || (want == zeros && strings.Contains(body, real)) {
				t.Errorf("fetch %s with sha256 %.8s… = %d %s, want 400 without the file's digest", ref, want, code, body)
			}
			profile := map[string]any{"name": "steal", "kernel": "https://k.example/vmlinuz", "installer": "image",
				"image": ref, "image_sha256": want}
			code, body = e.rawDo("POST", "/api/v1/profiles", jsonBody(profile))
			if code != http.StatusBadRequest || (want == zeros && strings.Contains(body, real)) {
				t.Errorf("profile with image %s, sha256 %.8s… = %d %s, want 400 without the file's digest", ref, want, code, body)
			}
		}
	}
	if code, _ := e.get(e.url + "/images/v1/" + real); code != http.StatusNotFound {
		t.Errorf("GET /images/v1/<digest of the key> = %d, want 404", code)
	}
}
