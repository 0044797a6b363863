package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/secretbox"
	"github.com/bootpilot/bootpilot/internal/store"
)

const cliBMCPass = "cli-BMC-pa55word-not-for-eyes"

// TestBMCCLI drives Redfish virtual media through the real server and CLI:
// secret-key init, bmc set/show/test, host reimage --via redfish (the fake
// BMC fetches the ISO from the plain-HTTP media listener), power, eject and
// a bulk reimage --all.
func TestBMCCLI(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secret.key")
	if out := cli(t, "secret-key", "init", keyFile); !strings.Contains(out, "--secret-key-file") {
		t.Errorf("secret-key init said %q", out)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	if err := run(context.Background(), []string{"secret-key", "init", keyFile}, io.Discard, io.Discard); err == nil {
		t.Error("secret-key init overwrote an existing key")
	}
	_, _ = realServer(t, "sqlite", func(c *config.Config) {
		c.ISOUnsigned, c.SecretKeyFile, c.MediaListen = true, keyFile, "127.0.0.1:0"
	})

	var mu sync.Mutex
	var fetched []string
	fetchDir := t.TempDir()
	bmc := bmcsim.New(bmcsim.Config{Username: "root", Password: cliBMCPass, PoweredOn: true,
		Quirks: bmcsim.Quirks{NoInsertAction: true, AsyncTasks: true},
		OnInsert: func(u string) error {
			mu.Lock()
			dst := filepath.Join(fetchDir, fmt.Sprintf("%d.iso", len(fetched)))
			mu.Unlock()
			if _, err := bmcsim.FetchISO(context.Background(), nil, u, dst, 32<<10); err != nil {
				return err
			}
			mu.Lock()
			fetched = append(fetched, dst)
			mu.Unlock()
			return nil
		}})
	srv := httptest.NewTLSServer(bmc)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	caFile := filepath.Join(dir, "bmc-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	pwFile := filepath.Join(dir, "bmc-pw")
	os.WriteFile(pwFile, []byte(cliBMCPass+"\n"), 0o600)

	cli(t, "profile", "add", "rocky9", "--installer", "kickstart",
		"--kernel", "https://mirror.example/rocky9/vmlinuz", "--initrd", "https://mirror.example/rocky9/initrd.img")
	var outputs []string
	run := func(args ...string) string {
		t.Helper()
		out := cli(t, args...)
		outputs = append(outputs, out)
		return out
	}
	for i, name := range []string{"node01", "node02"} {
		run("host", "add", name, "--mac", fmt.Sprintf("52:54:00:12:34:5%d", i), "--ipv4", fmt.Sprintf("10.0.2.%d/24", 15+i),
			"--gateway", "10.0.2.2", "--dns", "10.0.2.3", "--profile", "rocky9")
		out := run("bmc", "set", name, "--url", srv.URL, "--username", "root", "--password-file", pwFile,
			"--bmc-ca-cert", caFile, "--session")
		if !strings.Contains(out, "set (encrypted)") || !strings.Contains(out, "pinned CA") {
			t.Errorf("bmc set %s:\n%s", name, out)
		}
	}
	var shown map[string]any
	json.Unmarshal([]byte(run("bmc", "show", "node01", "-o", "json")), &shown)
	if shown["has_password"] != true || shown["url"] != srv.URL {
		t.Errorf("bmc show = %v", shown)
	}
	if out := run("bmc", "test", "node01"); !strings.Contains(out, "power:") || !strings.Contains(out, "On") {
		t.Errorf("bmc test:\n%s", out)
	}

	out := run("host", "reimage", "node01", "--via", "redfish", "--reason", "cli test")
	if !strings.Contains(out, "node01: reimage") || !strings.Contains(out, "ISO inserted") {
		t.Errorf("host reimage --via redfish:\n%s", out)
	}
	cd := bmc.CD()
	if !cd.Inserted || !strings.HasPrefix(cd.Image, "http://127.0.0.1:") {
		t.Errorf("CD = %+v, want the plain-HTTP media URL", cd)
	}
	mu.Lock()
	if len(fetched) != 1 {
		t.Fatalf("BMC fetched %d images, want 1", len(fetched))
	}
	iso, _ := os.ReadFile(fetched[0])
	mu.Unlock()
	if len(iso) < 64<<10 || string(iso[0x8001:0x8006]) != "CD001" {
		t.Errorf("fetched media (%d bytes) is not an ISO", len(iso))
	}
	if st := bmc.State(); st.BootedFrom[len(st.BootedFrom)-1] != "Cd" {
		t.Errorf("booted from %v, want Cd last", st.BootedFrom)
	}
	if h := hostState(t, "node01"); h.State != host.StateReimage {
		t.Errorf("node01 is %s, want reimage", h.State)
	}
	if out := run("host", "power", "node01", "status"); !strings.Contains(out, "power On") {
		t.Errorf("host power status: %s", out)
	}
	run("host", "media", "eject", "node01")
	if bmc.CD().Inserted {
		t.Error("host media eject left the CD inserted")
	}

	out = run("host", "reimage", "--all", "--profile", "rocky9", "--via", "redfish", "--wait")
	if !strings.Contains(out, "done 1") || !strings.Contains(out, "node02") || strings.Contains(out, "node01") {
		t.Errorf("bulk reimage --all (only node02 is ready):\n%s", out)
	}
	if h := hostState(t, "node02"); h.State != host.StateReimage {
		t.Errorf("node02 is %s, want reimage", h.State)
	}
	out = run("host", "events", "node01")
	for _, want := range []string{"bmc-set", "redfish-insert", "redfish-boot", "redfish-eject", "cli test"} {
		if !strings.Contains(out, want) {
			t.Errorf("events lack %s:\n%s", want, out)
		}
	}
	for _, o := range outputs {
		if strings.Contains(o, cliBMCPass) {
			t.Errorf("CLI output shows the BMC password:\n%s", o)
		}
	}
}

// TestBMCRotateKey re-encrypts stored passwords offline; the old key no
// longer opens them, the new one does, and a second run changes nothing.
func TestBMCRotateKey(t *testing.T) {
	dir := t.TempDir()
	oldFile, newFile := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	oldKey, err := secretbox.WriteKeyFile(oldFile)
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := secretbox.WriteKeyFile(newFile)
	ctx := context.Background()
	dataDir := filepath.Join(dir, "data")
	os.MkdirAll(dataDir, 0o700)
	cfg := config.Config{DataDir: dataDir}
	db, err := store.Open(ctx, cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"node01", "node02"} {
		if _, err := db.CreateHost(ctx, host.Host{Name: n, State: host.StateReady}, host.Record{}); err != nil {
			t.Fatal(err)
		}
		sealed := oldKey.Seal([]byte("pw-"+n), "bmc-password:"+n)
		if err := db.SetBMC(ctx, n, store.BMC{URL: "https://10.0.0.1", Username: "u", SealedPassword: sealed}, host.Record{}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	out := cli(t, "bmc", "rotate-key", "--old", oldFile, "--new", newFile, "--data-dir", dataDir)
	if !strings.Contains(out, "re-encrypted 2 ") {
		t.Errorf("rotate-key: %s", out)
	}
	if out := cli(t, "bmc", "rotate-key", "--old", oldFile, "--new", newFile, "--data-dir", dataDir); !strings.Contains(out, "re-encrypted 0 ") {
		t.Errorf("second rotate-key: %s", out)
	}
	db, err = store.Open(ctx, cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, n := range []string{"node01", "node02"} {
		b, _ := db.GetBMC(ctx, n)
		if pw, err := newKey.Open(b.SealedPassword, "bmc-password:"+n); err != nil || !bytes.Equal(pw, []byte("pw-"+n)) {
			t.Errorf("%s with the new key: %q, %v", n, pw, err)
		}
		if _, err := oldKey.Open(b.SealedPassword, "bmc-password:"+n); err == nil {
			t.Errorf("%s still opens with the old key", n)
		}
	}
}

// TestBMCPlaintextCLI: bmc set refuses an http:// URL unless
// --insecure-plaintext, and then neither set, show nor test claims TLS.
func TestBMCPlaintextCLI(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secret.key")
	cli(t, "secret-key", "init", keyFile)
	realServer(t, "sqlite", func(c *config.Config) { c.ISOUnsigned, c.SecretKeyFile = true, keyFile })
	srv := httptest.NewServer(bmcsim.New(bmcsim.Config{Username: "root", Password: cliBMCPass, PoweredOn: true}))
	t.Cleanup(srv.Close)
	pwFile := filepath.Join(dir, "bmc-pw")
	os.WriteFile(pwFile, []byte(cliBMCPass+"\n"), 0o600)
	cli(t, "host", "add", "node01", "--mac", "52:54:00:12:34:50", "--ipv4", "10.0.2.15/24", "--gateway", "10.0.2.2", "--dns", "10.0.2.3")

	set := []string{"bmc", "set", "node01", "--url", srv.URL, "--username", "root", "--password-file", pwFile}
	var out, errb bytes.Buffer
	err := run(context.Background(), set, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--insecure-plaintext") || !strings.Contains(err.Error(), "in clear") {
		t.Errorf("bmc set http:// = %v, want a refusal naming --insecure-plaintext", err)
	}
	if err := run(context.Background(), []string{"bmc", "show", "node01"}, io.Discard, io.Discard); err == nil {
		t.Error("a refused bmc set stored the BMC")
	}

	outputs := map[string]string{
		"bmc set":  cli(t, append(set, "--insecure-plaintext")...),
		"bmc show": cli(t, "bmc", "show", "node01"),
		"bmc test": cli(t, "bmc", "test", "node01"),
	}
	for cmd, o := range outputs {
		if !strings.Contains(o, "tls:") || !strings.Contains(o, "none — credentials sent in clear (--insecure-plaintext)") {
			t.Errorf("%s does not say the credentials travel in clear:\n%s", cmd, o)
		}
		if strings.Contains(o, "verified") {
			t.Errorf("%s claims TLS for an http:// BMC:\n%s", cmd, o)
		}
		if strings.Contains(o, cliBMCPass) {
			t.Errorf("%s shows the BMC password", cmd)
		}
	}
	if o := outputs["bmc test"]; !strings.Contains(o, "power:") || !strings.Contains(o, "On") {
		t.Errorf("bmc test over plaintext:\n%s", o)
	}
	if o := cli(t, "host", "events", "node01"); !strings.Contains(o, "insecure plaintext") {
		t.Errorf("events lack the insecure plaintext record:\n%s", o)
	}
}
