// Package initramfs builds the bootpilot agent ramdisk: a gzip-compressed
// newc cpio archive holding the agent as /init, the kernel modules it needs
// (network and storage drivers plus their dependencies from modules.dep,
// decompressed to plain .ko) and a load-order file the agent reads. The
// output is reproducible: entries are sorted, inode numbers sequential,
// owners root and every mtime fixed.
package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"

	"encoding/binary"
	"errors"
	"fmt"
	kgzip "github.com/klauspost/compress/gzip"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// LoadOrderFile is where the ramdisk lists module paths in load order; it
// must equal agent.LoadOrderFile (a test checks).
const LoadOrderFile = "/lib/modules/load-order"

// DefaultModules are the drivers packed when Options.Modules is empty:
// virtio (QEMU/KVM), the common Intel, Broadcom and Mellanox NICs, NVMe,
// AHCI/SATA, SCSI disks and RAID HBAs, 802.1Q VLANs, and efivarfs (the agent
// reads the firmware's Secure Boot state from it). Names missing from a
// kernel's modules (or built in) are skipped.
var DefaultModules = []string{
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
	"e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "tg3", "mlx5_core",
	"nvme", "ahci", "sd_mod", "megaraid_sas", "mpt3sas", "8021q", "efivarfs",
}

// Options says what goes into the ramdisk.
type Options struct {
	// Agent is the static bootpilot-agent binary, written as /init.
	Agent []byte
	// ModulesDir is the kernel's module tree, /lib/modules/<version>.
	ModulesDir string
	// Modules names the modules to include (with their dependencies).
	// Empty means DefaultModules, skipping names the kernel lacks; an
	// explicit name the kernel lacks is an error.
	Modules []string
	// KernelVersion is the version directory inside the ramdisk; empty
	// means the base name of ModulesDir.
	KernelVersion string
	// ModTime is every entry's mtime; zero means the Unix epoch.
	ModTime time.Time
}

// Module is a kernel module chosen for the ramdisk.
type Module struct {
	Name string // virtio_net
	Path string // kernel/drivers/net/virtio_net.ko (relative to ModulesDir, as in modules.dep)
}

// ModuleName returns the canonical module name of a path or name:
// directory and .ko/.ko.xz/.ko.zst/.ko.gz dropped, dashes as underscores.
func ModuleName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(b, ".ko"), "-", "_")
}

// Resolve returns the modules named in names plus their dependencies from
// modulesDir/modules.dep, in load order (every module after its
// dependencies). Built-in modules (modules.builtin) are left out. A name
// that is neither a module nor built in is an error when strict, and
// skipped otherwise.
func Resolve(modulesDir string, names []string, strict bool) ([]Module, error) {
	deps := map[string][]string{} // name → dependency names (modules.dep order)
	paths := map[string]string{}
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n := ModuleName(mod)
		paths[n] = mod
		for _, d := range strings.Fields(rest) {
			deps[n] = append(deps[n], ModuleName(d))
			if _, ok := paths[ModuleName(d)]; !ok {
				paths[ModuleName(d)] = d
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("initramfs: modules.dep: %w", err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modulesDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[ModuleName(l)] = true
		}
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("initramfs: dependency cycle at %s", n)
		case 2:
			return nil
		}
		state[n] = 1
		// modules.dep lists the deepest dependency last; load from the end.
		ds := deps[n]
		for i := len(ds) - 1; i >= 0; i-- {
			if err := visit(ds[i]); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, Module{Name: n, Path: paths[n]})
		return nil
	}
	for _, name := range names {
		n := ModuleName(name)
		if _, ok := paths[n]; !ok {
			if builtin[n] || !strict {
				continue
			}
			return nil, fmt.Errorf("initramfs: module %s not found in %s", name, modulesDir)
		}
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readModule returns the uncompressed contents of a module file.
func readModule(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var r io.Reader
	switch {
	case strings.HasSuffix(p, ".xz"):
		r, err = xz.NewReader(bytes.NewReader(b))
	case strings.HasSuffix(p, ".zst"):
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1))
		if err == nil {
			defer d.Close()
			r = d
		}
	case strings.HasSuffix(p, ".gz"):
		r, err = gzip.NewReader(bytes.NewReader(b))
	default:
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", p, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", p, err)
	}
	return out, nil
}

// entry is one archive member.
type entry struct {
	name         string // without leading slash
	mode         uint32 // including type bits
	data         []byte
	rmaj, rminor uint32
}

const (
	typeDir  = 0o040000
	typeReg  = 0o100000
	typeChar = 0o020000
)

// Build writes the ramdisk described by o to w.
func Build(w io.Writer, o Options) error {
	if len(o.Agent) == 0 {
		return errors.New("initramfs: no agent binary")
	}
	if len(o.Agent) < 4 || string(o.Agent[:4]) != "\x7fELF" {
		return errors.New("initramfs: agent is not an ELF binary")
	}
	if o.ModulesDir == "" {
		return errors.New("initramfs: no modules directory")
	}
	ver := o.KernelVersion
	if ver == "" {
		ver = filepath.Base(filepath.Clean(o.ModulesDir))
	}
	names, strict := o.Modules, true
	if len(names) == 0 {
		names, strict = DefaultModules, false
	}
	mods, err := Resolve(o.ModulesDir, names, strict)
	if err != nil {
		return err
	}
	files := map[string]entry{}
	add := func(e entry) {
		files[e.name] = e
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			if _, ok := files[d]; !ok {
				files[d] = entry{name: d, mode: typeDir | 0o755}
			}
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "etc", "root"} {
		add(entry{name: d, mode: typeDir | 0o755})
	}
	add(entry{name: "init", mode: typeReg | 0o755, data: o.Agent})
	add(entry{name: "dev/console", mode: typeChar | 0o600, rmaj: 5, rminor: 1})
	add(entry{name: "etc/resolv.conf", mode: typeReg | 0o644})
	var order bytes.Buffer
	fmt.Fprintf(&order, "# bootpilot agent ramdisk: modules in load order for kernel %s\n", ver)
	for _, m := range mods {
		b, err := readModule(filepath.Join(o.ModulesDir, m.Path))
		if err != nil {
			return fmt.Errorf("initramfs: module %s: %w", m.Name, err)
		}
		rel := m.Path
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			rel = strings.TrimSuffix(rel, ext)
		}
		name := path.Join("lib/modules", ver, rel)
		add(entry{name: name, mode: typeReg | 0o644, data: b})
		fmt.Fprintf(&order, "/%s\n", name)
	}
	add(entry{name: strings.TrimPrefix(LoadOrderFile, "/"), mode: typeReg | 0o644, data: order.Bytes()})

	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	zw, err := kgzip.NewWriterLevel(w, kgzip.DefaultCompression)
	if err != nil {
		return err
	}
	mtime := o.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	cw := &newcWriter{w: zw, mtime: uint32(mtime.Unix())}
	for _, k := range keys {
		cw.write(files[k])
	}
	cw.write(entry{name: "TRAILER!!!"})
	if cw.err != nil {
		return fmt.Errorf("initramfs: write: %w", cw.err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initramfs: gzip: %w", err)
	}
	return nil
}

// newcWriter writes the "new ASCII" (070701) cpio format the kernel reads.
// (github.com/cavaliergopher/cpio cannot write device numbers, which
// /dev/console needs.)
type newcWriter struct {
	w     io.Writer
	ino   uint32
	mtime uint32
	err   error
}

func (c *newcWriter) write(e entry) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := uint32(1)
	if e.mode&0o170000 == typeDir {
		nlink = 2
	}
	ino, mtime := c.ino, c.mtime
	if e.name == "TRAILER!!!" {
		ino, mtime = 0, 0
	}
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, mtime, len(e.data), 0, 0, e.rmaj, e.rminor, len(e.name)+1, 0)
	hdr.WriteString(e.name)
	hdr.WriteByte(0)
	for hdr.Len()%4 != 0 {
		hdr.WriteByte(0)
	}
	hdr.Write(e.data)
	for hdr.Len()%4 != 0 {
		hdr.WriteByte(0)
	}
	_, c.err = c.w.Write(hdr.Bytes())
}

// KernelVersion reads the version string from an x86 bzImage header
// (the first word of the string the setup header's kernel_version points to).
func KernelVersion(vmlinuz string) (string, error) {
	f, err := os.Open(vmlinuz)
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return "", fmt.Errorf("initramfs: %s: %w", vmlinuz, err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("initramfs: %s is not an x86 bzImage", vmlinuz)
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	s := make([]byte, 256)
	n, _ := f.ReadAt(s, off)
	s = s[:n]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	v, _, _ := strings.Cut(string(s), " ")
	if v == "" {
		return "", fmt.Errorf("initramfs: %s: no version string", vmlinuz)
	}
	return v, nil
}
