package imagebuilder

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
)

// The ISO written here is deliberately small and fixed in shape, so that the
// same inputs always give the same bytes (no clock, no file-system metadata):
//
//	sector 16  primary volume descriptor (Rock Ridge announced in the root)
//	sector 17  El Torito boot record
//	sector 18  volume descriptor set terminator
//	sector 19  path table, little-endian; sector 20 big-endian
//	sector 21  root directory: ".", "..", BOOT.CAT;1, EFIBOOT.IMG;1
//	sector 22  boot catalog: one EFI no-emulation entry
//	sector 23… the FAT12 ESP image
const (
	isoSector   = 2048
	lbaPVD      = 16
	lbaBootRec  = 17
	lbaTerm     = 18
	lbaPathL    = 19
	lbaPathM    = 20
	lbaRoot     = 21
	lbaCatalog  = 22
	lbaESP      = 23
	catalogSize = 64
)

// isoSize returns the size of the ISO holding an ESP of espSize bytes.
func isoSize(espSize int) int64 {
	return int64(lbaESP+(espSize+isoSector-1)/isoSector) * isoSector
}

// writeISO writes an ISO9660 image with Rock Ridge whose El Torito catalog
// boots esp as an EFI system partition. volumeID is the volume label and t
// every timestamp.
func writeISO(w io.Writer, esp []byte, volumeID string, t time.Time) error {
	espSectors := (len(esp) + isoSector - 1) / isoSector
	total := lbaESP + espSectors
	hdr := make([]byte, lbaESP*isoSector)
	sec := func(n int) []byte { return hdr[n*isoSector : (n+1)*isoSector] }

	rootDir := buildRootDir(len(esp), t)

	// Primary volume descriptor.
	p := sec(lbaPVD)
	p[0] = 1
	copy(p[1:6], "CD001")
	p[6] = 1
	fill(p[8:40], "")
	fill(p[40:72], isoVolumeID(volumeID))
	both32(p[80:], uint32(total))
	both16(p[120:], 1)
	both16(p[124:], 1)
	both16(p[128:], isoSector)
	both32(p[132:], 10)
	binary.LittleEndian.PutUint32(p[140:], lbaPathL)
	binary.BigEndian.PutUint32(p[148:], lbaPathM)
	dirRecord(p[156:190], lbaRoot, isoSector, true, []byte{0}, nil, t)
	fill(p[190:318], "")
	fill(p[318:446], "")
	fill(p[446:574], "BOOTPILOT")
	fill(p[574:702], "BOOTPILOT")
	fill(p[702:739], "")
	fill(p[739:776], "")
	fill(p[776:813], "")
	copy(p[813:830], longDate(t))
	copy(p[830:847], longDate(t))
	copy(p[847:864], longDate(time.Time{}))
	copy(p[864:881], longDate(time.Time{}))
	p[881] = 1

	// El Torito boot record.
	b := sec(lbaBootRec)
	b[0] = 0
	copy(b[1:6], "CD001")
	b[6] = 1
	copy(b[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(b[71:], lbaCatalog)

	// Terminator.
	e := sec(lbaTerm)
	e[0] = 255
	copy(e[1:6], "CD001")
	e[6] = 1

	// Path tables: the root only.
	l := sec(lbaPathL)
	l[0] = 1
	binary.LittleEndian.PutUint32(l[2:], lbaRoot)
	binary.LittleEndian.PutUint16(l[6:], 1)
	m := sec(lbaPathM)
	m[0] = 1
	binary.BigEndian.PutUint32(m[2:], lbaRoot)
	binary.BigEndian.PutUint16(m[6:], 1)

	copy(sec(lbaRoot), rootDir)

	// Boot catalog: validation entry (platform EFI) and the default entry.
	c := sec(lbaCatalog)
	c[0] = 1
	c[1] = 0xEF
	copy(c[4:28], "BOOTPILOT")
	c[30], c[31] = 0x55, 0xAA
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(c[i:])
	}
	binary.LittleEndian.PutUint16(c[28:], -sum)
	d := c[32:64]
	d[0] = 0x88 // bootable
	d[1] = 0    // no emulation
	blocks := (len(esp) + 511) / 512
	if blocks > 0xFFFF {
		blocks = 0 // firmware then uses the rest of the medium
	}
	binary.LittleEndian.PutUint16(d[6:], uint16(blocks))
	binary.LittleEndian.PutUint32(d[8:], lbaESP)

	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("imagebuilder: write ISO: %w", err)
	}
	if _, err := w.Write(esp); err != nil {
		return fmt.Errorf("imagebuilder: write ISO: %w", err)
	}
	if pad := espSectors*isoSector - len(esp); pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return fmt.Errorf("imagebuilder: write ISO: %w", err)
		}
	}
	return nil
}

// Rock Ridge (RRIP 1991A over SUSP 1.10) entries.
const (
	rrID  = "RRIP_1991A"
	rrDes = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
	rrSrc = "SEE THE PUBLISHER IDENTIFIER IN THE PRIMARY VOLUME DESCRIPTOR"
)

func buildRootDir(espSize int, t time.Time) []byte {
	out := make([]byte, isoSector)
	off := 0
	add := func(extent, size uint32, dir bool, id []byte, su []byte) {
		off += dirRecord(out[off:], extent, size, dir, id, su, t)
	}
	// ".": SP first, then PX and ER (TF would not fit in 255 bytes).
	var su []byte
	su = append(su, 'S', 'P', 7, 1, 0xBE, 0xEF, 0)
	su = append(su, px(0o040555, 2)...)
	er := []byte{'E', 'R', byte(8 + len(rrID) + len(rrDes) + len(rrSrc)), 1, byte(len(rrID)), byte(len(rrDes)), byte(len(rrSrc)), 1}
	er = append(er, rrID+rrDes+rrSrc...)
	su = append(su, er...)
	add(lbaRoot, isoSector, true, []byte{0}, su)
	add(lbaRoot, isoSector, true, []byte{1}, concat(rrEntry(0x81), px(0o040555, 2), tf(t)))
	add(lbaCatalog, catalogSize, false, []byte("BOOT.CAT;1"), concat(rrEntry(0x89), px(0o100444, 1), nm("boot.cat"), tf(t)))
	add(lbaESP, uint32(espSize), false, []byte("EFIBOOT.IMG;1"), concat(rrEntry(0x89), px(0o100444, 1), nm("efiboot.img"), tf(t)))
	return out
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func rrEntry(flags byte) []byte { return []byte{'R', 'R', 5, 1, flags} }

func px(mode uint32, links uint32) []byte {
	b := make([]byte, 36)
	copy(b, []byte{'P', 'X', 36, 1})
	both32(b[4:], mode)
	both32(b[12:], links)
	return b // uid, gid 0
}

func nm(name string) []byte {
	return append([]byte{'N', 'M', byte(5 + len(name)), 1, 0}, name...)
}

func tf(t time.Time) []byte {
	b := []byte{'T', 'F', 5 + 7*2, 1, 0x06} // modify, access
	b = append(b, shortDate(t)...)
	return append(b, shortDate(t)...)
}

// dirRecord writes a directory record into b and returns its length.
func dirRecord(b []byte, extent, size uint32, dir bool, id, su []byte, t time.Time) int {
	n := 33 + len(id)
	if len(id)%2 == 0 {
		n++
	}
	n += len(su)
	if n%2 == 1 {
		n++
	}
	b[0] = byte(n)
	both32(b[2:], extent)
	both32(b[10:], size)
	copy(b[18:25], shortDate(t))
	if dir {
		b[25] = 2
	}
	both16(b[28:], 1)
	b[32] = byte(len(id))
	copy(b[33:], id)
	sOff := 33 + len(id)
	if len(id)%2 == 0 {
		sOff++
	}
	copy(b[sOff:], su)
	return n
}

func shortDate(t time.Time) []byte {
	t = t.UTC()
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

func longDate(t time.Time) []byte {
	if t.IsZero() {
		return append([]byte("0000000000000000"), 0)
	}
	return append([]byte(t.UTC().Format("20060102150405")+"00"), 0)
}

func fill(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// isoVolumeID turns a host name into ISO9660 d-characters (A-Z, 0-9, _),
// at most 32.
func isoVolumeID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if b.Len() == 32 {
			break
		}
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
