package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bootpilot/bootpilot/internal/agent/agenttest"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// These tests boot the real Debian kernel under QEMU (TCG) with the agent
// ramdisk built from this tree, talk to an HTTPS server on loopback through
// QEMU's restricted user network (guestfwd to socat), and check both the
// callbacks and the disk file afterwards.

var (
	ramdiskOnce       sync.Once
	vmlinuz, initrd   string
	ramdiskDir        string
	qemuBin, socatBin string
)

func ramdisk(t *testing.T) (string, string) {
	t.Helper()
	qemuBin = testenv.Tool(t, "qemu-system-x86_64")
	socatBin = testenv.Tool(t, "socat")
	ramdiskOnce.Do(func() {
		// Built once for all boot tests; a sub-test's TempDir would vanish.
		rt := &onceT{T: t}
		vmlinuz, initrd = agenttest.BuildRamdisk(rt)
	})
	if vmlinuz == "" {
		t.Fatal("agent ramdisk could not be built (see the first test's log)")
	}
	return vmlinuz, initrd
}

// onceT lends the first test to BuildRamdisk, keeping its temporary files
// until the whole package finishes.
type onceT struct{ *testing.T }

func (o *onceT) TempDir() string {
	if ramdiskDir == "" {
		d, err := os.MkdirTemp("", "bootpilot-agent-test-")
		if err != nil {
			o.T.Fatal(err)
		}
		ramdiskDir = d
	}
	d, err := os.MkdirTemp(ramdiskDir, "")
	if err != nil {
		o.T.Fatal(err)
	}
	return d
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ramdiskDir != "" {
		os.RemoveAll(ramdiskDir)
	}
	os.Exit(code)
}

type vm struct {
	rec     *agenttest.Recorder
	ca      *agenttest.CA
	port    int
	disk    string
	extra   []string // more -drive/-device arguments (addDisk)
	log     string
	elapsed time.Duration
}

func newVM(t *testing.T, diskSize int, fill byte) *vm {
	t.Helper()
	v := &vm{rec: agenttest.NewRecorder(), ca: agenttest.NewCA(t, "bootpilot boot-test CA")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: v.rec, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{v.ca.ServerCert(t, "127.0.0.1", "10.0.2.100")},
		MaxVersion:   tls.VersionTLS12,
	}}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	v.port = l.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	v.disk = filepath.Join(dir, "disk.img")
	v.log = filepath.Join(dir, "serial.log")
	if err := os.WriteFile(v.disk, bytes.Repeat([]byte{fill}, diskSize), 0o644); err != nil {
		t.Fatal(err)
	}
	return v
}

const cbPath = "/boot/v1/callback/node01/TOKEN"

func (v *vm) cmdline(task string) string {
	return "console=ttyS0 panic=-1 ip=10.0.2.15::10.0.2.2:255.255.255.0:node01::none nameserver=10.0.2.3 " +
		"bootpilot.mac=52:54:00:12:34:56 bootpilot.callback=https://10.0.2.100:8443" + cbPath +
		" bootpilot.ca=" + hex.EncodeToString(v.ca.Fingerprint) + " bootpilot.after=poweroff " + task
}

// addDisk attaches another virtio-blk disk (file filled with fill) with a
// serial number and returns its file.
func (v *vm) addDisk(t *testing.T, size int, fill byte, serial string) string {
	t.Helper()
	id := fmt.Sprintf("d%d", len(v.extra)/4+1)
	p := filepath.Join(filepath.Dir(v.disk), id+".img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	v.extra = append(v.extra, "-drive", "file="+p+",if=none,id="+id+",format=raw",
		"-device", "virtio-blk-pci,drive="+id+",serial="+serial)
	return p
}

// boot runs QEMU until the guest powers off (or 5 minutes pass).
func (v *vm) boot(t *testing.T, kernel, initrd, task string) {
	v.bootDrive(t, kernel, initrd, task, "")
}

// bootDrive is boot with extra -drive options (",discard=unmap").
func (v *vm) bootDrive(t *testing.T, kernel, initrd, task, driveOpts string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-accel", "tcg", "-m", "512", "-smp", "1",
		"-kernel", kernel, "-initrd", initrd, "-append", v.cmdline(task),
		"-netdev", fmt.Sprintf("user,id=n0,net=10.0.2.0/24,restrict=on,guestfwd=tcp:10.0.2.100:8443-cmd:%s - TCP:127.0.0.1:%d", socatBin, v.port),
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=",
		"-drive", "file=" + v.disk + ",if=none,id=d0,format=raw" + driveOpts,
		"-device", "virtio-blk-pci,drive=d0",
		"-serial", "file:" + v.log, "-display", "none", "-monitor", "none", "-no-reboot"}
	cmd := exec.CommandContext(ctx, qemuBin, append(args, v.extra...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	v.elapsed = time.Since(start)
	t.Logf("qemu ran %.1fs", v.elapsed.Seconds())
	if err != nil {
		t.Errorf("qemu: %v\n%s", err, out)
	}
	serial, _ := os.ReadFile(v.log)
	if t.Failed() || testing.Verbose() {
		t.Logf("serial log tail:\n%s", tail(string(serial), 40))
	}
	if !strings.Contains(string(serial), `msg="agent done" after=poweroff`) {
		t.Errorf("serial log lacks the agent's final line")
	}
	// -kernel boots through SeaBIOS: no UEFI, no efivarfs.
	if !strings.Contains(string(serial), `msg=firmware secure_boot="not UEFI" setup_mode="not UEFI"`) {
		t.Errorf("serial log lacks the agent's firmware line (not UEFI)")
	}
	// The kernel itself prints its command line (hence the token) unless
	// booted with quiet; the agent must never print it.
	for _, l := range strings.Split(string(serial), "\n") {
		if strings.HasPrefix(l, "time=") && strings.Contains(l, "TOKEN") {
			t.Errorf("the agent printed the callback token: %s", l)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (v *vm) result(t *testing.T) agenttest.Callback {
	t.Helper()
	c, ok := v.rec.Result()
	if !ok {
		t.Fatalf("no result callback; got %+v", v.rec.Calls())
	}
	progress := 0
	for _, c := range v.rec.Calls() {
		if c.Path != cbPath {
			t.Errorf("callback to %s, want %s", c.Path, cbPath)
		}
		if c.Event == "progress" {
			progress++
		}
	}
	if !slices.ContainsFunc(v.rec.Calls(), func(c agenttest.Callback) bool { return c.Detail == "firmware: not UEFI, no Secure Boot" }) {
		t.Errorf("no progress callback with the firmware's state; got %+v", v.rec.Calls())
	}
	if progress == 0 {
		t.Error("no progress callbacks")
	}
	t.Logf("result: %s %q after %d progress callbacks", c.Event, c.Detail, progress)
	return c
}

func TestBootClean(t *testing.T) {
	t.Parallel()
	kernel, initrd := ramdisk(t)
	v := newVM(t, 16<<20, 0xaa)
	second := v.addDisk(t, 8<<20, 0x5a, "SECOND")
	v.boot(t, kernel, initrd, "bootpilot.task=clean bootpilot.clean=zero")
	c := v.result(t)
	if c.Event != "cleaned" || !strings.Contains(c.Detail, "/dev/vda") || !strings.Contains(c.Detail, "/dev/vdb") {
		t.Errorf("result = %+v, want cleaned naming vda and vdb", c)
	}
	for _, p := range []string{v.disk, second} {
		b, _ := os.ReadFile(p)
		if len(b) == 0 || !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("%s is not all zeros after clean", filepath.Base(p))
		}
	}
}

func TestBootCleanDiscard(t *testing.T) {
	t.Parallel()
	kernel, initrd := ramdisk(t)
	v := newVM(t, 16<<20, 0x55)
	v.bootDrive(t, kernel, initrd, "bootpilot.task=clean bootpilot.clean=discard", ",discard=unmap")
	if c := v.result(t); c.Event != "cleaned" {
		t.Errorf("result = %+v, want cleaned", c)
	}
	for _, c := range v.rec.Calls() {
		if strings.Contains(c.Detail, "writing zeros") {
			t.Errorf("agent fell back to writing zeros: %q; BLKDISCARD should work on virtio-blk with discard=unmap", c.Detail)
		}
	}
	b, _ := os.ReadFile(v.disk)
	if len(b) != 16<<20 || !bytes.Equal(b, make([]byte, len(b))) {
		t.Error("disk is not all zeros after discard")
	}
}

// gptImage returns a raw disk image of size bytes with a protective MBR, a
// primary GPT and the named partitions (byte offsets, MiB aligned).
func gptImage(size int, parts []struct {
	name     string
	off, len int
}) []byte {
	b := make([]byte, size)
	b[446+4] = 0xee
	binary.LittleEndian.PutUint32(b[446+8:], 1)
	binary.LittleEndian.PutUint32(b[446+12:], uint32(size/512-1))
	b[510], b[511] = 0x55, 0xaa
	h := b[512:]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)
	for i, p := range parts {
		e := b[1024+128*i:]
		e[0] = 0xaf // some type GUID
		binary.LittleEndian.PutUint64(e[32:], uint64(p.off/512))
		binary.LittleEndian.PutUint64(e[40:], uint64((p.off+p.len)/512-1))
		for j, r := range p.name {
			binary.LittleEndian.PutUint16(e[56+2*j:], uint16(r))
		}
	}
	return b
}

func TestBootDeploy(t *testing.T) {
	t.Parallel()
	kernel, initrd := ramdisk(t)
	mtype := testenv.Tool(t, "mtype")
	v := newVM(t, 32<<20, 0xbb) // vda: must stay untouched
	target := v.addDisk(t, 16<<20, 0xaa, "TARGET")
	raw := gptImage(12<<20, []struct {
		name     string
		off, len int
	}{{"root", 1 << 20, 3 << 20}, {"cidata", 5 << 20, 6 << 20}})
	r := rand.New(rand.NewPCG(3, 4))
	for i := 1 << 20; i < 4<<20; i++ {
		raw[i] = byte(r.IntN(8))
	}
	copy(raw[1<<20:], "BOOTPILOT DEPLOYED IMAGE MARKER")
	var z bytes.Buffer
	zw, _ := zstd.NewWriter(&z)
	zw.Write(raw)
	zw.Close()
	v.rec.Files["/images/test.img.zst"] = z.Bytes()
	sum := sha256.Sum256(z.Bytes())
	v.boot(t, kernel, initrd, "bootpilot.task=deploy bootpilot.disk=serial=TARGET bootpilot.image=https://10.0.2.100:8443/images/test.img.zst bootpilot.sha256="+
		hex.EncodeToString(sum[:]))
	c := v.result(t)
	if c.Event != "installed" || !strings.Contains(c.Detail, "NoCloud seed (FAT16") {
		t.Errorf("result = %+v, want installed with a FAT16 seed", c)
	}
	if b, _ := os.ReadFile(v.disk); !bytes.Equal(b, bytes.Repeat([]byte{0xbb}, 32<<20)) {
		t.Error("the disk without the hinted serial was changed")
	}
	b, _ := os.ReadFile(target)
	if !bytes.Equal(b[:5<<20], raw[:5<<20]) {
		t.Error("disk does not hold the deployed image")
	}
	if b[len(raw)] != 0xaa || b[len(b)-1] != 0xaa {
		t.Error("deploy wrote past the image")
	}
	out, err := exec.Command(mtype, "-i", fmt.Sprintf("%s@@%d", target, 5<<20), "::network-config").CombinedOutput()
	want := "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n" +
		"    dhcp4: false\n    dhcp6: false\n    addresses: [\"10.0.2.15/24\"]\n" +
		"    routes:\n      - to: default\n        via: 10.0.2.2\n    nameservers:\n      addresses: [10.0.2.3]\n"
	if err != nil || string(out) != want {
		t.Errorf("network-config in the seed (mtype: %v):\n%s\nwant\n%s", err, out, want)
	}
}

func TestBootDeployChecksumMismatch(t *testing.T) {
	t.Parallel()
	kernel, initrd := ramdisk(t)
	v := newVM(t, 8<<20, 0xaa)
	raw := bytes.Repeat([]byte("not the image you are looking for "), 100000)
	v.rec.Files["/images/bad.img"] = raw
	v.boot(t, kernel, initrd, "bootpilot.task=deploy bootpilot.disk=/dev/vda bootpilot.image=https://10.0.2.100:8443/images/bad.img bootpilot.sha256="+
		strings.Repeat("ab", 32))
	c := v.result(t)
	if c.Event != "failed" || !strings.Contains(c.Detail, "checksum mismatch") {
		t.Errorf("result = %+v, want failed with a checksum mismatch", c)
	}
	b, _ := os.ReadFile(v.disk)
	if !bytes.Equal(b[:1<<20], make([]byte, 1<<20)) {
		t.Error("first MiB not wiped after a checksum mismatch")
	}
}
