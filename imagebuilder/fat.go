package imagebuilder

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// espFile is one file to put on the ESP, by slash-separated path.
type espFile struct {
	Path string // "EFI/BOOT/BOOTX64.EFI"
	Data []byte
}

// fatNode is a directory or file in the FAT tree being laid out.
type fatNode struct {
	name     string
	short    [11]byte
	lfn      bool
	dir      bool
	data     []byte
	children []*fatNode
	cluster  int // first cluster, 0 for the root directory
	clusters int
}

const (
	fatSector       = 512
	fatRootEntries  = 224 // 14 sectors, as on a 1.44 MB floppy
	fat12MaxCluster = 4084
)

// buildFAT12 returns a FAT12 file system image holding files, with every
// timestamp set to t. The same input gives the same bytes.
// espBufs holds ESP images released after use (*[]byte), so building one
// ISO after another does not allocate a fresh megabyte-sized image each time.
var espBufs sync.Pool

// espImage returns a zeroed image of n bytes, reusing a released one when
// it is large enough.
func espImage(n int) []byte {
	if p, ok := espBufs.Get().(*[]byte); ok && cap(*p) >= n {
		img := (*p)[:n]
		clear(img)
		return img
	}
	return make([]byte, n)
}

// releaseESP hands an image from buildFAT12 back for reuse; the caller must
// not use it afterwards.
func releaseESP(img []byte) { espBufs.Put(&img) }

func buildFAT12(files []espFile, label string, volumeID uint32, t time.Time) ([]byte, error) {
	root := &fatNode{dir: true}
	for _, f := range files {
		if err := root.add(strings.Split(f.Path, "/"), f.Data); err != nil {
			return nil, err
		}
	}
	root.sortTree()
	for spc := 1; spc <= 64; spc *= 2 {
		cs := spc * fatSector
		n := root.countClusters(cs, true)
		if n > fat12MaxCluster {
			continue
		}
		return root.layout(spc, n, label, volumeID, t)
	}
	return nil, fmt.Errorf("imagebuilder: ESP contents too large for FAT12")
}

func (d *fatNode) add(parts []string, data []byte) error {
	name := parts[0]
	if name == "" {
		return fmt.Errorf("imagebuilder: empty path component")
	}
	for _, c := range d.children {
		if strings.EqualFold(c.name, name) {
			if len(parts) == 1 || !c.dir {
				return fmt.Errorf("imagebuilder: %s added twice", name)
			}
			return c.add(parts[1:], data)
		}
	}
	n := &fatNode{name: name}
	d.children = append(d.children, n)
	if len(parts) == 1 {
		n.data = data
		return nil
	}
	n.dir = true
	return n.add(parts[1:], data)
}

// sortTree orders children by name and assigns 8.3 short names.
func (d *fatNode) sortTree() {
	sort.Slice(d.children, func(i, j int) bool { return d.children[i].name < d.children[j].name })
	used := map[[11]byte]bool{}
	for _, c := range d.children {
		c.short, c.lfn = shortName(c.name, used)
		used[c.short] = true
		if c.dir {
			c.sortTree()
		}
	}
}

// entries returns the number of 32-byte directory entries d needs.
func (d *fatNode) entries(isRoot bool) int {
	n := 2 // "." and ".."
	if isRoot {
		n = 1 // volume label
	}
	for _, c := range d.children {
		n++
		if c.lfn {
			n += (len(utf16.Encode([]rune(c.name))) + 12) / 13
		}
	}
	return n
}

func (d *fatNode) countClusters(cs int, isRoot bool) int {
	n := 0
	if !isRoot {
		d.clusters = max(1, (d.entries(false)*32+cs-1)/cs)
		n += d.clusters
	}
	for _, c := range d.children {
		if c.dir {
			n += c.countClusters(cs, false)
		} else {
			c.clusters = (len(c.data) + cs - 1) / cs
			n += c.clusters
		}
	}
	return n
}

func (d *fatNode) layout(spc, dataClusters int, label string, volumeID uint32, t time.Time) ([]byte, error) {
	if d.entries(true) > fatRootEntries {
		return nil, fmt.Errorf("imagebuilder: too many files in the ESP root")
	}
	fatBytes := (dataClusters + 2) * 3 / 2
	if (dataClusters+2)%2 == 1 {
		fatBytes++
	}
	fatSectors := (fatBytes + fatSector - 1) / fatSector
	rootSectors := fatRootEntries * 32 / fatSector
	dataStart := 1 + 2*fatSectors + rootSectors
	total := dataStart + dataClusters*spc
	img := espImage(total * fatSector)

	// Boot sector and BIOS parameter block.
	bs := img[:fatSector]
	copy(bs, []byte{0xEB, 0x3C, 0x90})
	copy(bs[3:11], "BOOTPILT")
	binary.LittleEndian.PutUint16(bs[11:], fatSector)
	bs[13] = byte(spc)
	binary.LittleEndian.PutUint16(bs[14:], 1)
	bs[16] = 2
	binary.LittleEndian.PutUint16(bs[17:], fatRootEntries)
	if total < 0x10000 {
		binary.LittleEndian.PutUint16(bs[19:], uint16(total))
	} else {
		binary.LittleEndian.PutUint32(bs[32:], uint32(total))
	}
	bs[21] = 0xF8
	binary.LittleEndian.PutUint16(bs[22:], uint16(fatSectors))
	binary.LittleEndian.PutUint16(bs[24:], 32)
	binary.LittleEndian.PutUint16(bs[26:], 64)
	bs[36] = 0x80
	bs[38] = 0x29
	binary.LittleEndian.PutUint32(bs[39:], volumeID)
	lbl := fatLabel(label)
	copy(bs[43:54], lbl[:])
	copy(bs[54:62], "FAT12   ")
	bs[510], bs[511] = 0x55, 0xAA

	fat := make([]uint16, dataClusters+2)
	fat[0], fat[1] = 0xFF8, 0xFFF
	next := 2
	// Assign clusters depth first, directories before their contents.
	var assign func(n *fatNode)
	assign = func(n *fatNode) {
		for _, c := range n.children {
			if c.clusters > 0 {
				c.cluster = next
				for i := 0; i < c.clusters; i++ {
					if i == c.clusters-1 {
						fat[next] = 0xFFF
					} else {
						fat[next] = uint16(next + 1)
					}
					next++
				}
			}
			if c.dir {
				assign(c)
			}
		}
	}
	assign(d)
	cs := spc * fatSector
	clusterAt := func(c int) []byte {
		off := (dataStart + (c-2)*spc) * fatSector
		return img[off:]
	}
	dosDate, dosTime := dosDateTime(t)
	var writeDir func(n *fatNode, parent int, buf []byte, isRoot bool)
	writeDir = func(n *fatNode, parent int, buf []byte, isRoot bool) {
		off := 0
		put := func(short [11]byte, attr byte, cluster int, size int) {
			e := buf[off : off+32]
			copy(e, short[:])
			e[11] = attr
			binary.LittleEndian.PutUint16(e[14:], dosTime)
			binary.LittleEndian.PutUint16(e[16:], dosDate)
			binary.LittleEndian.PutUint16(e[18:], dosDate)
			binary.LittleEndian.PutUint16(e[22:], dosTime)
			binary.LittleEndian.PutUint16(e[24:], dosDate)
			binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
			binary.LittleEndian.PutUint32(e[28:], uint32(size))
			off += 32
		}
		if isRoot {
			put(lbl, 0x08, 0, 0)
		} else {
			put(dotName("."), 0x10, n.cluster, 0)
			put(dotName(".."), 0x10, parent, 0)
		}
		for _, c := range n.children {
			if c.lfn {
				off += writeLFN(buf[off:], c.name, c.short)
			}
			if c.dir {
				put(c.short, 0x10, c.cluster, 0)
			} else {
				put(c.short, 0x20, c.cluster, len(c.data))
			}
		}
		for _, c := range n.children {
			if c.dir {
				writeDir(c, n.cluster, clusterAt(c.cluster)[:c.clusters*cs], false)
			} else if len(c.data) > 0 {
				copy(clusterAt(c.cluster), c.data)
			}
		}
	}
	rootOff := (1 + 2*fatSectors) * fatSector
	writeDir(d, 0, img[rootOff:rootOff+rootSectors*fatSector], true)

	// Pack the FAT (12 bits per entry) and write both copies.
	f := img[fatSector : fatSector+fatSectors*fatSector]
	for i, v := range fat {
		o := i * 3 / 2
		if i%2 == 0 {
			f[o] = byte(v)
			f[o+1] = f[o+1]&0xF0 | byte(v>>8)&0x0F
		} else {
			f[o] = f[o]&0x0F | byte(v<<4)
			f[o+1] = byte(v >> 4)
		}
	}
	copy(img[fatSector+fatSectors*fatSector:], f)
	return img, nil
}

// writeLFN writes the long-name entries for name before its short entry and
// returns the bytes written.
func writeLFN(buf []byte, name string, short [11]byte) int {
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	u := utf16.Encode([]rune(name))
	n := (len(u) + 12) / 13
	chars := make([]uint16, n*13)
	for i := range chars {
		switch {
		case i < len(u):
			chars[i] = u[i]
		case i == len(u):
			chars[i] = 0
		default:
			chars[i] = 0xFFFF
		}
	}
	off := 0
	for seq := n; seq >= 1; seq-- {
		e := buf[off : off+32]
		e[0] = byte(seq)
		if seq == n {
			e[0] |= 0x40
		}
		e[11] = 0x0F
		e[13] = sum
		part := chars[(seq-1)*13 : seq*13]
		pos := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
		for i, p := range pos {
			binary.LittleEndian.PutUint16(e[p:], part[i])
		}
		off += 32
	}
	return off
}

// shortName returns the 8.3 name for name and whether a long name is needed.
func shortName(name string, used map[[11]byte]bool) ([11]byte, bool) {
	var s [11]byte
	for i := range s {
		s[i] = ' '
	}
	base, ext := name, ""
	if i := strings.LastIndex(name, "."); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	if valid83(base, 8) && valid83(ext, 3) && name == strings.ToUpper(name) {
		copy(s[:8], base)
		copy(s[8:], ext)
		return s, false
	}
	clean := func(x string) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(x) {
			if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	b, e := clean(base), clean(ext)
	if len(b) > 6 {
		b = b[:6]
	}
	if len(e) > 3 {
		e = e[:3]
	}
	for i := 1; ; i++ {
		tail := fmt.Sprintf("~%d", i)
		bb := b
		if len(bb)+len(tail) > 8 {
			bb = bb[:8-len(tail)]
		}
		for j := range s {
			s[j] = ' '
		}
		copy(s[:8], bb+tail)
		copy(s[8:], e)
		if !used[s] {
			return s, true
		}
	}
}

func valid83(s string, n int) bool {
	if len(s) > n || (n == 8 && s == "") {
		return false
	}
	for _, r := range s {
		if !((r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func dotName(s string) [11]byte {
	var b [11]byte
	for i := range b {
		b[i] = ' '
	}
	copy(b[:], s)
	return b
}

// fatLabel returns an 11-byte volume label: upper-case letters, digits and
// '_'.
func fatLabel(s string) [11]byte {
	b := dotName("")
	i := 0
	for _, r := range strings.ToUpper(s) {
		if i == 11 {
			break
		}
		if !((r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			r = '_'
		}
		b[i] = byte(r)
		i++
	}
	if i == 0 {
		copy(b[:], "NO NAME")
	}
	return b
}

func dosDateTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	tm = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, tm
}
