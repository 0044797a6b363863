package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
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
