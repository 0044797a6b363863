package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// The network configuration of the installed OS is handed over as a
// cloud-init NoCloud seed. The agent does not repartition the deployed
// disk: an image that wants its seed reserves a GPT partition named
// "cidata" (any case). WriteSeed formats that partition as FAT (FAT12 below
// 4 MiB, FAT16 up to 2 GiB, FAT32 above) with the volume label CIDATA and
// writes meta-data, user-data and network-config (version 2, static, the
// NIC matched by MAC, the VLAN when there is one) into it. cloud-init's
// NoCloud source finds it by label. Without such a partition nothing is
// written and the result says so; the installed OS must then configure its
// network itself.

// SeedPartitionName is the GPT partition name WriteSeed looks for.
const SeedPartitionName = "cidata"

// NetworkConfig renders n as cloud-init network-config version 2.
func NetworkConfig(n Network) string {
	var b strings.Builder
	b.WriteString("version: 2\nethernets:\n  nic0:\n")
	if n.MAC != nil {
		fmt.Fprintf(&b, "    match:\n      macaddress: %q\n", n.MAC.String())
	} else {
		fmt.Fprintf(&b, "    match:\n      name: %q\n", n.Interface)
	}
	ifaceCfg := func(indent string) {
		fmt.Fprintf(&b, "%sdhcp4: false\n%sdhcp6: false\n", indent, indent)
		fmt.Fprintf(&b, "%saddresses: [%q]\n", indent, n.Addr.String())
		if n.Gateway.IsValid() {
			fmt.Fprintf(&b, "%sroutes:\n%s  - to: default\n%s    via: %s\n", indent, indent, indent, n.Gateway)
		}
		if len(n.Nameservers) > 0 {
			var ns []string
			for _, a := range n.Nameservers {
				ns = append(ns, a.String())
			}
			fmt.Fprintf(&b, "%snameservers:\n%s  addresses: [%s]\n", indent, indent, strings.Join(ns, ", "))
		}
	}
	if n.VLAN == 0 {
		ifaceCfg("    ")
		return b.String()
	}
	b.WriteString("    dhcp4: false\n    dhcp6: false\n")
	fmt.Fprintf(&b, "vlans:\n  vlan%d:\n    id: %d\n    link: nic0\n", n.VLAN, n.VLAN)
	ifaceCfg("    ")
	return b.String()
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)

// MetaData renders the NoCloud meta-data file.
func MetaData(n Network, instanceID string) string {
	s := fmt.Sprintf("instance-id: %s\n", instanceID)
	if hostnameRE.MatchString(n.Hostname) {
		s += fmt.Sprintf("local-hostname: %s\n", n.Hostname)
	}
	return s
}

// WriteSeed writes the NoCloud seed for n into dev's "cidata" GPT partition
// (see above) and returns a line for the progress report. instanceID must
// change with every deploy (cloud-init re-runs per instance).
func WriteSeed(dev Device, n Network, instanceID string) (string, error) {
	var part *Partition
	for _, p := range Partitions(dev) {
		if strings.EqualFold(p.Name, SeedPartitionName) {
			part = &p
			break
		}
	}
	if part == nil {
		return "no seed written (the image has no GPT partition named cidata)", nil
	}
	if part.Off+part.Len > dev.Size() || part.Len < 64<<10 {
		return "", fmt.Errorf("agent: seed: cidata partition %+v does not fit the disk or is under 64 KiB", part.Region)
	}
	st := file.New(&devFile{dev: dev}, false)
	var fsys filesystem.FileSystem
	var err error
	kind := "FAT32"
	switch {
	case part.Len < 4<<20:
		kind = "FAT12"
		fsys, err = fat12.Create(st, part.Len, part.Off, 512, "CIDATA", true)
	case part.Len <= 2<<30:
		kind = "FAT16"
		fsys, err = fat16.Create(st, part.Len, part.Off, 512, "CIDATA", true)
	default:
		fsys, err = fat32.Create(st, part.Len, part.Off, 512, "CIDATA", true)
	}
	if err != nil {
		return "", fmt.Errorf("agent: seed: format %s: %w", kind, err)
	}
	files := []struct{ name, body string }{
		{"/meta-data", MetaData(n, instanceID)},
		{"/user-data", "#cloud-config\n"},
		{"/network-config", NetworkConfig(n)},
	}
	for _, f := range files {
		w, err := fsys.OpenFile(f.name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return "", fmt.Errorf("agent: seed: create %s: %w", f.name, err)
		}
		if _, err := io.WriteString(w, f.body); err != nil {
			return "", fmt.Errorf("agent: seed: write %s: %w", f.name, err)
		}
		if err := w.Close(); err != nil {
			return "", fmt.Errorf("agent: seed: close %s: %w", f.name, err)
		}
	}
	return fmt.Sprintf("NoCloud seed (%s, label CIDATA) written to the cidata partition at %d", kind, part.Off), nil
}

// devFile adapts a Device to go-diskfs's backend (fs.File + ReaderAt +
// WriterAt + Seeker).
type devFile struct {
	dev Device
	pos int64
}

func (d *devFile) Stat() (fs.FileInfo, error) { return devInfo{size: d.dev.Size()}, nil }
func (d *devFile) Close() error               { return nil }
func (d *devFile) Read(p []byte) (int, error) {
	n, err := d.dev.ReadAt(p, d.pos)
	d.pos += int64(n)
	return n, err
}
func (d *devFile) ReadAt(p []byte, off int64) (int, error)  { return d.dev.ReadAt(p, off) }
func (d *devFile) WriteAt(p []byte, off int64) (int, error) { return d.dev.WriteAt(p, off) }
func (d *devFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += d.pos
	case io.SeekEnd:
		off += d.dev.Size()
	default:
		return 0, errors.New("bad whence")
	}
	if off < 0 {
		return 0, errors.New("negative position")
	}
	d.pos = off
	return off, nil
}

type devInfo struct{ size int64 }

func (i devInfo) Name() string       { return "disk" }
func (i devInfo) Size() int64        { return i.size }
func (i devInfo) Mode() fs.FileMode  { return 0o600 }
func (i devInfo) ModTime() time.Time { return time.Time{} }
func (i devInfo) IsDir() bool        { return false }
func (i devInfo) Sys() any           { return nil }
