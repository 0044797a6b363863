package initramfs_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/bootpilot/bootpilot/internal/agent"
	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
	"github.com/bootpilot/bootpilot/internal/initramfs"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

func TestLoadOrderFileAgrees(t *testing.T) {
	if initramfs.LoadOrderFile != agent.LoadOrderFile {
		t.Errorf("initramfs.LoadOrderFile = %q, agent.LoadOrderFile = %q", initramfs.LoadOrderFile, agent.LoadOrderFile)
	}
}

// fakeModules writes a module tree with .ko, .ko.xz-free dependencies.
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "6.9.9-test")
	files := map[string]string{
		"kernel/a/base.ko":   "base",
		"kernel/a/mid-1.ko":  "mid",
		"kernel/a/other.ko":  "other",
		"kernel/b/top.ko":    "top",
		"kernel/b/second.ko": "second",
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, []byte(c), 0o644)
	}
	dep := "kernel/a/base.ko:\n" +
		"kernel/a/other.ko:\n" +
		"kernel/a/mid-1.ko: kernel/a/base.ko\n" +
		"kernel/b/top.ko: kernel/a/mid-1.ko kernel/a/other.ko kernel/a/base.ko\n" +
		"kernel/b/second.ko: kernel/a/base.ko\n"
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/x/inside.ko\n"), 0o644)
	return dir
}

func names(ms []initramfs.Module) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, " ")
}

func TestResolve(t *testing.T) {
	dir := fakeModules(t)
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"top"}, "base other mid_1 top"},
		{[]string{"second", "top"}, "base second other mid_1 top"},
		{[]string{"mid-1", "mid_1", "inside"}, "base mid_1"}, // dash/underscore; built-ins skipped
	}
	for _, tt := range tests {
		got, err := initramfs.Resolve(dir, tt.in, true)
		if err != nil {
			t.Fatalf("Resolve(%v): %v", tt.in, err)
		}
		if names(got) != tt.want {
			t.Errorf("Resolve(%v) = %s, want %s", tt.in, names(got), tt.want)
		}
	}
	if _, err := initramfs.Resolve(dir, []string{"nope"}, true); err == nil {
		t.Error("Resolve(strict, unknown) succeeded")
	}
	if got, err := initramfs.Resolve(dir, []string{"nope", "other"}, false); err != nil || names(got) != "other" {
		t.Errorf("Resolve(lenient) = %s, %v", names(got), err)
	}
}

// members reads a gzip'd newc archive back with an independent reader.
func members(t *testing.T, b []byte) map[string]*cpio.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	out := map[string]*cpio.Header{}
	data := map[string][]byte{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d, _ := io.ReadAll(r)
		data[h.Name] = d
		out[h.Name] = h
	}
	for n, d := range data {
		out[n].Linkname = string(d) // stash contents for the caller
	}
	return out
}

var fakeELF = []byte("\x7fELF fake agent")

func TestBuildFake(t *testing.T) {
	dir := fakeModules(t)
	var a, b bytes.Buffer
	o := initramfs.Options{Agent: fakeELF, ModulesDir: dir, Modules: []string{"top"}}
	if err := initramfs.Build(&a, o); err != nil {
		t.Fatal(err)
	}
	if err := initramfs.Build(&b, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two builds differ: output is not reproducible")
	}
	m := members(t, a.Bytes())
	if h := m["init"]; h == nil || h.Linkname != string(fakeELF) || h.Mode.Perm() != 0o755 || !h.Mode.IsRegular() {
		t.Errorf("init = %+v", h)
	}
	order := m["lib/modules/load-order"]
	if order == nil {
		t.Fatal("no load-order file")
	}
	want := "/lib/modules/6.9.9-test/kernel/a/base.ko\n/lib/modules/6.9.9-test/kernel/a/other.ko\n" +
		"/lib/modules/6.9.9-test/kernel/a/mid-1.ko\n/lib/modules/6.9.9-test/kernel/b/top.ko\n"
	if got := order.Linkname[strings.Index(order.Linkname, "\n")+1:]; got != want {
		t.Errorf("load-order =\n%s\nwant\n%s", got, want)
	}
	if h := m["lib/modules/6.9.9-test/kernel/b/top.ko"]; h == nil || h.Linkname != "top" {
		t.Errorf("top.ko = %+v", h)
	}
	if m["lib/modules/6.9.9-test/kernel/b/second.ko"] != nil {
		t.Error("second.ko packed although not requested")
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "etc", "lib/modules/6.9.9-test/kernel/a"} {
		if h := m[d]; h == nil || !h.Mode.IsDir() {
			t.Errorf("directory %s missing", d)
		}
	}
	if err := initramfs.Build(io.Discard, initramfs.Options{Agent: []byte("#!/bin/sh"), ModulesDir: dir}); err == nil {
		t.Error("Build accepted a non-ELF agent")
	}
}

// TestBuildRealKernel packs the real agent and the modules of the installed
// Debian kernel, then lists the archive with cpio(1).
func TestBuildRealKernel(t *testing.T) {
	vmlinuz, modules := agenttest.Kernel(t)
	cpioBin := testenv.Tool(t, "cpio")
	ver, err := initramfs.KernelVersion(vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	if ver != filepath.Base(modules) {
		t.Errorf("KernelVersion(%s) = %s, want %s", vmlinuz, ver, filepath.Base(modules))
	}
	agentBin, err := os.ReadFile(agenttest.BuildAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := initramfs.Build(&buf, initramfs.Options{Agent: agentBin, ModulesDir: modules}); err != nil {
		t.Fatal(err)
	}
	t.Logf("ramdisk: %d bytes", buf.Len())
	zr, err := gzip.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpioBin, "-itv", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -itv: %v", err)
	}
	list := string(out)
	for _, want := range []string{" init\n", "5,   1 Jan  1  1970 dev/console\n", "lib/modules/load-order\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("cpio -itv output lacks %q", want)
		}
	}
	m := members(t, buf.Bytes())
	if m["init"].Linkname != string(agentBin) {
		t.Error("/init is not the agent binary")
	}
	order := strings.Split(strings.TrimSpace(m["lib/modules/load-order"].Linkname), "\n")[1:]
	pos := map[string]int{}
	for i, p := range order {
		pos[initramfs.ModuleName(p)] = i
		if m[strings.TrimPrefix(p, "/")] == nil {
			t.Errorf("load-order lists %s, which is not in the archive", p)
		}
	}
	// FACTS: virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net.
	chain := []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci", "failover", "net_failover", "virtio_net"}
	for i := 1; i < len(chain); i++ {
		a, okA := pos[chain[i-1]]
		b, okB := pos[chain[i]]
		if !okA || !okB || a > b {
			t.Errorf("%s (%d, %v) must load before %s (%d, %v)", chain[i-1], a, okA, chain[i], b, okB)
		}
	}
	for _, mod := range []string{"virtio_blk", "virtio_scsi", "e1000", "e1000e", "igb", "ixgbe", "mlx5_core", "nvme", "nvme_core", "ahci", "libata", "sd_mod", "scsi_mod", "8021q", "efivarfs"} {
		if _, ok := pos[mod]; !ok {
			t.Errorf("module %s missing from the load order", mod)
		}
	}
	if pos["scsi_mod"] > pos["sd_mod"] || pos["nvme_core"] > pos["nvme"] || pos["libata"] > pos["ahci"] {
		t.Error("storage modules out of dependency order")
	}
}

// BenchmarkBuild measures packing the default module set of the installed
// kernel (agent binary stand-in of 7 MiB).
func BenchmarkBuild(b *testing.B) {
	_, modules := agenttest.Kernel(b)
	agentBin := append([]byte("\x7fELF"), make([]byte, 7<<20)...)
	for i := 0; i < b.N; i++ {
		if err := initramfs.Build(io.Discard, initramfs.Options{Agent: agentBin, ModulesDir: modules}); err != nil {
			b.Fatal(err)
		}
	}
}
