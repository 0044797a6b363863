package bmcsim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/mediaurl"
	"github.com/bootpilot/bootpilot/internal/redfish"
	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

var mediaKey = bytes.Repeat([]byte("m"), 32)

// mediaServer serves data as node01's ISO on signed URLs and counts the
// requests by method and whether they carried a Range header.
type mediaServer struct {
	*httptest.Server
	heads, ranged, full atomic.Int32
}

func newMediaServer(t *testing.T, data []byte) *mediaServer {
	t.Helper()
	h := &mediaurl.Handler{Key: mediaKey, Source: func(context.Context, string, string) (*mediaurl.Media, error) {
		return &mediaurl.Media{R: bytes.NewReader(data), Size: int64(len(data))}, nil
	}}
	m := &mediaServer{}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead:
			m.heads.Add(1)
		case r.Header.Get("Range") != "":
			m.ranged.Add(1)
		default:
			m.full.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *mediaServer) url() string {
	return mediaurl.Sign(mediaKey, m.URL, "node01", mediaurl.NewID(), time.Now().Add(time.Hour))
}

func randomData(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestFetchISO(t *testing.T) {
	data := randomData(t, 1<<20+4321)
	ms := newMediaServer(t, data)
	dst := filepath.Join(t.TempDir(), "node01.iso")
	n, err := bmcsim.FetchISO(context.Background(), nil, ms.url(), dst, 64<<10)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("FetchISO = %d, %v, want %d", n, err, len(data))
	}
	got, _ := os.ReadFile(dst)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Error("fetched file differs from the served one")
	}
	if h, r, f := ms.heads.Load(), ms.ranged.Load(), ms.full.Load(); h != 1 || r != 17 || f != 0 {
		t.Errorf("requests: %d HEAD, %d ranged, %d full; want 1, 17, 0", h, r, f)
	}
	if _, err := bmcsim.FetchISO(context.Background(), nil, strings.Replace(ms.url(), "sig=", "sig=00", 1), dst, 0); err == nil {
		t.Error("FetchISO with a tampered signature succeeded")
	}
}

// TestFetchISONoRanges: a server that ignores Range is refused.
func TestFetchISONoRanges(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(200)
		if r.Method == http.MethodGet {
			w.Write(make([]byte, 100000))
		}
	}))
	defer srv.Close()
	_, err := bmcsim.FetchISO(context.Background(), nil, srv.URL+"/x.iso", filepath.Join(t.TempDir(), "x"), 4096)
	if err == nil || !strings.Contains(err.Error(), "want 206") {
		t.Errorf("FetchISO against a server ignoring Range = %v, want a 206 error", err)
	}
}

// do sends a raw request to the simulator and decodes the JSON answer.
func do(t *testing.T, h http.Handler, method, path, body string, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var m map[string]any
	json.Unmarshal(w.Body.Bytes(), &m)
	return w.Result(), m
}

// TestProtocol checks the simulator against the Redfish specification's
// rules directly, without the adapter.
func TestProtocol(t *testing.T) {
	b := bmcsim.New(bmcsim.Config{Username: "u", Password: "p", Quirks: bmcsim.Quirks{AsyncTasks: true}})
	if r, m := do(t, b, "GET", "/redfish/v1/", "", nil); r.StatusCode != 200 || m["RedfishVersion"] == nil {
		t.Errorf("service root without auth = %d %v, want 200 with RedfishVersion", r.StatusCode, m)
	}
	if r, _ := do(t, b, "GET", "/redfish/v1/Systems", "", nil); r.StatusCode != 401 {
		t.Errorf("Systems without auth = %d, want 401", r.StatusCode)
	}
	r, _ := do(t, b, "POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"u","Password":"p"}`, nil)
	tok, loc := r.Header.Get("X-Auth-Token"), r.Header.Get("Location")
	if r.StatusCode != 201 || tok == "" || loc == "" {
		t.Fatalf("create session = %d, token %q, location %q; want 201 with both", r.StatusCode, tok, loc)
	}
	auth := map[string]string{"X-Auth-Token": tok}
	if r, _ := do(t, b, "POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"u","Password":"x"}`, nil); r.StatusCode != 401 {
		t.Errorf("create session with a wrong password = %d, want 401", r.StatusCode)
	}
	if r, m := do(t, b, "PATCH", "/redfish/v1/Systems/1", `{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`, auth); r.StatusCode != 400 || !strings.Contains(fmt.Sprint(m), "PropertyValueNotInList") {
		t.Errorf("PATCH Boot target Floppy = %d %v, want 400 PropertyValueNotInList", r.StatusCode, m)
	}
	if r, m := do(t, b, "POST", "/redfish/v1/Managers/1/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia", `{}`, auth); r.StatusCode != 400 || !strings.Contains(fmt.Sprint(m), "ActionParameterMissing") {
		t.Errorf("InsertMedia without Image = %d %v, want 400 ActionParameterMissing", r.StatusCode, m)
	}
	r, _ = do(t, b, "POST", "/redfish/v1/Managers/1/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia", `{"Image":"http://127.0.0.1/x.iso"}`, auth)
	mon := r.Header.Get("Location")
	if r.StatusCode != 202 || !strings.Contains(mon, "/TaskService/TaskMonitors/") {
		t.Fatalf("async InsertMedia = %d, Location %q; want 202 with a task monitor", r.StatusCode, mon)
	}
	var last int
	// The task's work runs in the background: poll like a client would,
	// bounded by a deadline rather than a count (a loaded machine is slow).
	for deadline := time.Now().Add(30 * time.Second); last != 204 && time.Now().Before(deadline); {
		if last == 202 {
			time.Sleep(5 * time.Millisecond)
		}
		r, m := do(t, b, "GET", mon, "", auth)
		last = r.StatusCode
		if last == 202 && m["TaskState"] != "Running" {
			t.Errorf("monitor 202 body TaskState = %v, want Running", m["TaskState"])
		}
		if last != 202 && last != 204 {
			t.Fatalf("monitor answered %d", last)
		}
	}
	if last != 204 || b.CD().Image != "http://127.0.0.1/x.iso" {
		t.Errorf("after the task: monitor %d, CD %+v; want 204 and the image inserted", last, b.CD())
	}
	task := strings.Replace(mon, "TaskMonitors", "Tasks", 1)
	if r, m := do(t, b, "GET", task, "", auth); r.StatusCode != 200 || m["TaskState"] != "Completed" {
		t.Errorf("task = %d %v, want 200 Completed", r.StatusCode, m["TaskState"])
	}
	if r, m := do(t, b, "POST", "/redfish/v1/Managers/1/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia", `{"Image":"http://127.0.0.1/y.iso"}`, auth); r.StatusCode != 409 {
		t.Errorf("InsertMedia over another image = %d %v, want 409", r.StatusCode, m)
	}
	if r, _ := do(t, b, "DELETE", loc, "", auth); r.StatusCode != 204 {
		t.Errorf("DELETE session = %d, want 204", r.StatusCode)
	}
	if r, _ := do(t, b, "GET", "/redfish/v1/Systems/1", "", auth); r.StatusCode != 401 {
		t.Errorf("GET with a deleted session's token = %d, want 401", r.StatusCode)
	}
}

// vm is a QEMU process with a QMP socket and an empty CD drive "cd0".
type vm struct {
	cmd  *exec.Cmd
	qmp  *bmcsim.QMP
	done chan struct{} // closed when QEMU has exited
}

func startVM(t *testing.T) *vm {
	t.Helper()
	qemu := testenv.Tool(t, "qemu-system-x86_64")
	dir, err := os.MkdirTemp("", "qmp") // short path: unix sockets are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command(qemu, "-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-S", "-m", "64",
		"-qmp", "unix:"+sock+",server=on,wait=off",
		"-drive", "if=none,id=cdd,media=cdrom,readonly=on", "-device", "ide-cd,drive=cdd,id=cd0,bus=ide.0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &vm{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(v.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-v.done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v.qmp, err = bmcsim.DialQMP(ctx, sock)
	if err != nil {
		t.Fatalf("DialQMP: %v (qemu: %s)", err, stderr.String())
	}
	t.Cleanup(func() { v.qmp.Close() })
	return v
}

func TestQMP(t *testing.T) {
	v := startVM(t)
	ctx := context.Background()
	iso := filepath.Join(t.TempDir(), "a.iso")
	os.WriteFile(iso, randomData(t, 1<<20), 0o600)
	if f, err := v.qmp.Medium(ctx, "cd0"); err != nil || f != "" {
		t.Fatalf("Medium at start = %q, %v, want empty", f, err)
	}
	if err := v.qmp.ChangeMedium(ctx, "cd0", iso); err != nil {
		t.Fatal(err)
	}
	if f, err := v.qmp.Medium(ctx, "cd0"); err != nil || f != iso {
		t.Errorf("Medium = %q, %v, want %s", f, err, iso)
	}
	if s, err := v.qmp.Status(ctx); err != nil || s != "prelaunch" {
		t.Errorf("Status = %q, %v, want prelaunch", s, err)
	}
	if err := v.qmp.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := v.qmp.Status(ctx); err != nil || s != "running" {
		t.Errorf("Status after cont = %q, %v, want running", s, err)
	}
	if err := v.qmp.SystemReset(ctx); err != nil {
		t.Errorf("SystemReset: %v", err)
	}
	if err := v.qmp.EjectMedium(ctx, "cd0"); err != nil {
		t.Fatal(err)
	}
	if f, err := v.qmp.Medium(ctx, "cd0"); err != nil || f != "" {
		t.Errorf("Medium after eject = %q, %v, want empty", f, err)
	}
	if _, err := v.qmp.Execute(ctx, "no-such-command", nil); err == nil || !strings.Contains(err.Error(), "CommandNotFound") {
		t.Errorf("unknown command = %v, want CommandNotFound", err)
	}
	if err := v.qmp.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.done:
	case <-time.After(30 * time.Second):
		t.Fatal("qemu still running 30 s after quit")
	}
}

// TestBMCDrivesQEMU: the adapter inserts a signed media URL through the
// simulated BMC, which fetches the ISO in ranges and puts it into a QEMU
// VM's CD drive; reset and power off reach the VM through QMP.
func TestBMCDrivesQEMU(t *testing.T) {
	v := startVM(t)
	data := randomData(t, 2<<20+77)
	ms := newMediaServer(t, data)
	dir := t.TempDir()
	iso := filepath.Join(dir, "media-1.iso")
	var resets atomic.Int32
	m := &bmcsim.Machine{QMP: v.qmp, Device: "cd0", Dir: dir, Log: slog.New(slog.DiscardHandler)}
	cfg := bmcsim.Config{Username: "admin", Password: "pw",
		Quirks: bmcsim.Quirks{AsyncTasks: true, MediaUnderSystems: true}}
	m.Attach(&cfg)
	reset := cfg.OnReset
	cfg.OnReset = func(k string) { resets.Add(1); reset(k) }
	bmc := bmcsim.New(cfg)
	srv := httptest.NewTLSServer(bmc)
	defer srv.Close()
	ctx := context.Background()
	c, err := redfish.Dial(ctx, redfish.Endpoint{URL: srv.URL, Username: "admin", Password: "pw", Insecure: true,
		Session: true, TaskPoll: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Reset(ctx, "On"); err != nil {
		t.Fatal(err)
	}
	if s, err := v.qmp.Status(ctx); err != nil || s != "running" {
		t.Errorf("VM status after power on = %q, %v, want running", s, err)
	}
	if err := c.InsertMedia(ctx, ms.url()); err != nil {
		t.Fatal(err)
	}
	if f, err := v.qmp.Medium(ctx, "cd0"); err != nil || f != iso {
		t.Fatalf("VM CD = %q, %v, want %s", f, err, iso)
	}
	got, _ := os.ReadFile(iso)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Error("ISO in the VM differs from the served one")
	}
	if ms.ranged.Load() != 33 || ms.full.Load() != 0 {
		t.Errorf("media requests: %d ranged, %d full; want 33 ranged", ms.ranged.Load(), ms.full.Load())
	}
	if err := c.SetBootOverride(ctx, "Cd", "Once"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(ctx, "ForceRestart"); err != nil {
		t.Fatal(err)
	}
	if resets.Load() != 1 {
		t.Errorf("VM resets = %d, want 1", resets.Load())
	}
	if err := c.EjectMedia(ctx); err != nil {
		t.Fatal(err)
	}
	if f, err := v.qmp.Medium(ctx, "cd0"); err != nil || f != "" {
		t.Errorf("VM CD after eject = %q, %v, want empty", f, err)
	}
	if err := c.Reset(ctx, "ForceOff"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.done:
	case <-time.After(30 * time.Second):
		t.Fatal("qemu still running 30 s after power off")
	}
	if errs := m.Errors(); len(errs) != 0 {
		t.Errorf("machine hooks failed: %v", errs)
	}
}
