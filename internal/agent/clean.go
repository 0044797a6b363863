package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
)

// Region is a byte range of a device: [Off, Off+Len).
type Region struct{ Off, Len int64 }

// ErrNotClean means a sampled block of a cleaned device is not zero.
var ErrNotClean = errors.New("disk not clean")

// zeroChunk is the size of zero writes.
const zeroChunk = 4 << 20

var zeros = make([]byte, zeroChunk)

func zeroRange(dev Device, off, n int64) error {
	for n > 0 {
		c := min(n, zeroChunk)
		if _, err := dev.WriteAt(zeros[:c], off); err != nil {
			return fmt.Errorf("agent: zero at %d: %w", off, err)
		}
		off += c
		n -= c
	}
	return nil
}

// Clean wipes dev by method (CleanZero, CleanDiscard or CleanMetadata),
// syncs it and returns the regions that must now read as zeros, for
// VerifyZero. Discard falls back to writing zeros when the device cannot
// discard or when discarded blocks do not read back as zeros.
func Clean(dev Device, method string, progress ProgressFunc) ([]Region, error) {
	if progress == nil {
		progress = func(string) {}
	}
	whole := []Region{{0, dev.Size()}}
	var regions []Region
	switch method {
	case CleanZero:
		if err := zeroAll(dev, progress); err != nil {
			return nil, err
		}
		regions = whole
	case CleanDiscard:
		err := dev.Discard(0, dev.Size())
		switch {
		case errors.Is(err, ErrDiscardUnsupported):
			progress("discard not supported; writing zeros")
			if err := zeroAll(dev, progress); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, fmt.Errorf("agent: discard: %w", err)
		default:
			if err := dev.Sync(); err != nil {
				return nil, fmt.Errorf("agent: sync: %w", err)
			}
			if VerifyZero(dev, whole, 64, 1) != nil {
				progress("discarded blocks do not read as zeros; writing zeros")
				if err := zeroAll(dev, progress); err != nil {
					return nil, err
				}
			}
		}
		regions = whole
	case CleanMetadata:
		regions = MetadataRegions(dev)
		for _, r := range regions {
			if err := zeroRange(dev, r.Off, r.Len); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("agent: unknown clean method %q", method)
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("agent: sync: %w", err)
	}
	return regions, nil
}

func zeroAll(dev Device, progress ProgressFunc) error {
	size := dev.Size()
	const step = 1 << 30
	for off := int64(0); off < size; off += step {
		if err := zeroRange(dev, off, min(step, size-off)); err != nil {
			return err
		}
		if off > 0 {
			progress(fmt.Sprintf("zeroed %s of %s", sizeString(off), sizeString(size)))
		}
	}
	return nil
}

// MetadataRegions returns what the metadata method wipes: the first and last
// MiB of the device (MBR, primary GPT and its backup at the end) and the
// first and last MiB of every partition found in the MBR or GPT, where
// filesystem, LVM, RAID and ZFS signatures live. Overlaps are merged.
func MetadataRegions(dev Device) []Region {
	size := dev.Size()
	rs := []Region{{0, min(wipeSize, size)}}
	if size > wipeSize {
		rs = append(rs, Region{size - wipeSize, wipeSize})
	}
	for _, p := range Partitions(dev) {
		if p.Off >= size || p.Len <= 0 {
			continue
		}
		end := min(p.Off+p.Len, size)
		rs = append(rs, Region{p.Off, min(wipeSize, end-p.Off)})
		if end-p.Off > wipeSize {
			rs = append(rs, Region{end - wipeSize, wipeSize})
		}
	}
	return mergeRegions(rs)
}

func mergeRegions(rs []Region) []Region {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Off < rs[j].Off })
	var out []Region
	for _, r := range rs {
		if n := len(out); n > 0 && r.Off <= out[n-1].Off+out[n-1].Len {
			out[n-1].Len = max(out[n-1].Len, r.Off+r.Len-out[n-1].Off)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Partition is a partition found in an MBR or GPT.
type Partition struct {
	Region
	Name string // GPT partition name; "" for MBR
}

// Partitions reads the partition table of dev: GPT (512- or 4096-byte
// sectors) when present, else the four primary MBR entries. Errors yield an
// empty result: there is nothing more to find.
func Partitions(dev Device) []Partition {
	for _, ss := range []int64{512, 4096} {
		if ps, ok := gptPartitions(dev, ss); ok {
			return ps
		}
	}
	mbr := make([]byte, 512)
	if _, err := dev.ReadAt(mbr, 0); err != nil || mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil
	}
	var ps []Partition
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i : 446+16*(i+1)]
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:]))
		count := int64(binary.LittleEndian.Uint32(e[12:]))
		if typ == 0 || count == 0 {
			continue
		}
		ps = append(ps, Partition{Region: Region{start * 512, count * 512}})
	}
	return ps
}

func gptPartitions(dev Device, ss int64) ([]Partition, bool) {
	hdr := make([]byte, 92)
	if _, err := dev.ReadAt(hdr, ss); err != nil || string(hdr[:8]) != "EFI PART" {
		return nil, false
	}
	lba := int64(binary.LittleEndian.Uint64(hdr[72:]))
	n := int64(binary.LittleEndian.Uint32(hdr[80:]))
	esz := int64(binary.LittleEndian.Uint32(hdr[84:]))
	if n <= 0 || n > 1024 || esz < 128 || esz > 4096 {
		return nil, false
	}
	tbl := make([]byte, n*esz)
	if _, err := dev.ReadAt(tbl, lba*ss); err != nil {
		return nil, false
	}
	var ps []Partition
	for i := int64(0); i < n; i++ {
		e := tbl[i*esz : (i+1)*esz]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		first := int64(binary.LittleEndian.Uint64(e[32:]))
		last := int64(binary.LittleEndian.Uint64(e[40:]))
		if last < first {
			continue
		}
		ps = append(ps, Partition{Region: Region{first * ss, (last - first + 1) * ss}, Name: utf16Name(e[56:128])})
	}
	return ps, true
}

func utf16Name(b []byte) string {
	var r []rune
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		r = append(r, rune(c))
	}
	return string(r)
}

// VerifyZero samples the regions of dev and returns ErrNotClean (wrapped,
// with the offset) when a sampled 4 KiB block is not all zeros. It always
// checks the first and last block of every region, plus n blocks at
// offsets chosen by a PRNG seeded with seed.
func VerifyZero(dev Device, regions []Region, n int, seed uint64) error {
	const bs = 4096
	buf := make([]byte, bs)
	check := func(off, l int64) error {
		b := buf[:min(l, bs)]
		if _, err := dev.ReadAt(b, off); err != nil {
			return fmt.Errorf("agent: verify: read at %d: %w", off, err)
		}
		for i, c := range b {
			if c != 0 {
				return fmt.Errorf("agent: verify: byte at %d is %#x: %w", off+int64(i), c, ErrNotClean)
			}
		}
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var total int64
	for _, r := range regions {
		total += r.Len
		if r.Len <= 0 {
			continue
		}
		if err := check(r.Off, r.Len); err != nil {
			return err
		}
		last := r.Off + max(0, r.Len-bs)
		if err := check(last, r.Off+r.Len-last); err != nil {
			return err
		}
	}
	if total <= 0 {
		return nil
	}
	for i := 0; i < n; i++ {
		x := rng.Int64N(total)
		for _, r := range regions {
			if x < r.Len {
				off := r.Off + x
				if err := check(off, r.Off+r.Len-off); err != nil {
					return err
				}
				break
			}
			x -= r.Len
		}
	}
	return nil
}
