package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Disk is a whole block device as seen in /sys/block.
type Disk struct {
	Name      string // vda
	Path      string // /dev/vda
	Size      int64  // bytes
	Serial    string // from /sys/block/X/serial or device/serial; may be empty
	Model     string // from device/model; may be empty
	Removable bool   // removable media, read-only or BMC virtual media: never written
}

// DiskHint says which disk a deploy writes to; see ParseDiskHint.
type DiskHint struct {
	Path    string // /dev/vda
	Serial  string // exact serial number
	MinSize int64  // bytes: the smallest eligible disk at least this big
}

// ParseDiskHint parses bootpilot.disk: "serial=X", "size>=NG" (also T),
// a device path "/dev/X", or "" for the single non-removable disk.
func ParseDiskHint(s string) (DiskHint, error) {
	switch {
	case s == "":
		return DiskHint{}, nil
	case strings.HasPrefix(s, "/dev/"):
		return DiskHint{Path: s}, nil
	case strings.HasPrefix(s, "serial="):
		if v := strings.TrimPrefix(s, "serial="); v != "" {
			return DiskHint{Serial: v}, nil
		}
	case strings.HasPrefix(s, "size>="):
		v := strings.TrimPrefix(s, "size>=")
		mult := int64(1)
		switch {
		case strings.HasSuffix(v, "G"):
			mult, v = 1<<30, strings.TrimSuffix(v, "G")
		case strings.HasSuffix(v, "T"):
			mult, v = 1<<40, strings.TrimSuffix(v, "T")
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && mult > 1 {
			return DiskHint{MinSize: n * mult}, nil
		}
	}
	return DiskHint{}, fmt.Errorf("disk hint %q: want serial=X, size>=NG, /dev/X or empty", s)
}

// skipPrefixes are kernel block devices that are never disks to write:
// optical (sr), loop, RAM disks, compressed swap, floppies, device-mapper,
// md, network block devices.
var skipPrefixes = []string{"sr", "loop", "ram", "zram", "fd", "dm-", "md", "nbd"}

// virtualMediaModels are model strings of BMC virtual media (USB-attached
// CD/floppy/disk emulations): never written even if they claim to be fixed.
var virtualMediaModels = []string{"virtual cd", "virtual floppy", "virtual hdisk", "virtual media", "virtualmedia", "virtual disk2"}

// ListDisks reads the whole disks from sysBlock (normally "/sys/block") and
// names them under devDir (normally "/dev"). Removable, read-only and
// virtual-media devices are returned with Removable set; loop, RAM, optical,
// device-mapper and similar devices are left out. The result is sorted by name.
func ListDisks(sysBlock, devDir string) ([]Disk, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("agent: list disks: %w", err)
	}
	var disks []Disk
	for _, e := range ents {
		name := e.Name()
		if hasAnyPrefix(name, skipPrefixes) {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		sectors, err := strconv.ParseInt(readTrim(filepath.Join(dir, "size")), 10, 64)
		if err != nil {
			continue // not a block device directory
		}
		d := Disk{
			Name:   name,
			Path:   filepath.Join(devDir, name),
			Size:   sectors * 512, // sysfs size is always in 512-byte units
			Serial: readTrim(filepath.Join(dir, "serial")),
			Model:  readTrim(filepath.Join(dir, "device", "model")),
		}
		if d.Serial == "" {
			d.Serial = readTrim(filepath.Join(dir, "device", "serial"))
		}
		model := strings.ToLower(d.Model)
		d.Removable = readTrim(filepath.Join(dir, "removable")) == "1" ||
			readTrim(filepath.Join(dir, "ro")) == "1" ||
			containsAny(model, virtualMediaModels)
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// Fixed returns the disks that may be written: not removable, not empty.
func Fixed(disks []Disk) []Disk {
	var out []Disk
	for _, d := range disks {
		if !d.Removable && d.Size > 0 {
			out = append(out, d)
		}
	}
	return out
}

// ErrNoDisk means no disk matches the hint (or the hint is ambiguous).
var ErrNoDisk = errors.New("no matching disk")

// SelectDisk picks the deploy target among disks by hint. It never returns
// a removable or virtual-media device. An empty hint needs exactly one fixed
// disk; size>= picks the smallest fixed disk that is big enough (ties by name).
func SelectDisk(disks []Disk, hint DiskHint) (Disk, error) {
	fixed := Fixed(disks)
	switch {
	case hint.Path != "":
		for _, d := range disks {
			if d.Path == hint.Path || "/dev/"+d.Name == hint.Path {
				if d.Removable {
					return Disk{}, fmt.Errorf("agent: %s is removable or virtual media: %w", hint.Path, ErrNoDisk)
				}
				return d, nil
			}
		}
		return Disk{}, fmt.Errorf("agent: disk %s: %w", hint.Path, ErrNoDisk)
	case hint.Serial != "":
		var match []Disk
		for _, d := range fixed {
			if d.Serial == hint.Serial {
				match = append(match, d)
			}
		}
		if len(match) != 1 {
			return Disk{}, fmt.Errorf("agent: %d fixed disks with serial %q: %w", len(match), hint.Serial, ErrNoDisk)
		}
		return match[0], nil
	case hint.MinSize > 0:
		var best *Disk
		for i, d := range fixed {
			if d.Size >= hint.MinSize && (best == nil || d.Size < best.Size) {
				best = &fixed[i]
			}
		}
		if best == nil {
			return Disk{}, fmt.Errorf("agent: no fixed disk of at least %d bytes: %w", hint.MinSize, ErrNoDisk)
		}
		return *best, nil
	default:
		if len(fixed) != 1 {
			names := make([]string, len(fixed))
			for i, d := range fixed {
				names[i] = d.Name
			}
			return Disk{}, fmt.Errorf("agent: no disk hint and %d fixed disks %v: %w", len(fixed), names, ErrNoDisk)
		}
		return fixed[0], nil
	}
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func hasAnyPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func containsAny(s string, subs []string) bool {
	for _, p := range subs {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}
