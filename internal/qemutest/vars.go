package qemutest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// GUIDs in their on-disk (mixed-endian) byte order.
var (
	// authVarStoreGUID is gEfiAuthenticatedVariableGuid,
	// aaf32c78-947b-439a-a180-2e144ec37792.
	authVarStoreGUID = guid("aaf32c78-947b-439a-a180-2e144ec37792")
	// ImageSecurityDatabaseGUID is the vendor GUID of db and dbx,
	// d719b2cb-3d3a-4596-a3bc-dad00e67656f.
	ImageSecurityDatabaseGUID = guid("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
	// CertX509GUID is EFI_CERT_X509_GUID, a5c059a1-94e4-4aa7-87b5-ab155c2bf072.
	CertX509GUID = guid("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// ownerGUID marks the signatures we add (an arbitrary, fixed owner).
	ownerGUID = guid("b0077b11-0000-4000-8000-000000000001")
)

const (
	varStartID    = 0x55AA
	varAdded      = 0x3F
	varDeleted    = 0x3D
	authVarHdrLen = 60
	storeHdrLen   = 28
)

// guid parses a textual GUID into its EFI byte layout.
func guid(s string) [16]byte {
	var raw [16]byte
	hex := make([]byte, 0, 32)
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	for i := 0; i < 16; i++ {
		var v byte
		fmt.Sscanf(string(hex[2*i:2*i+2]), "%02x", &v)
		raw[i] = v
	}
	var g [16]byte
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g
}

// Variable is one record of an edk2 authenticated variable store.
type Variable struct {
	Offset int // of the record header in the VARS file
	State  byte
	Attr   uint32
	Name   string
	GUID   [16]byte
	Data   []byte
}

// varStore locates the variable store in an OVMF VARS file and returns the
// offsets of its first variable and of its end.
func varStore(vars []byte) (start, end int, err error) {
	if len(vars) < 64 || string(vars[40:44]) != "_FVH" {
		return 0, 0, errors.New("qemutest: VARS: no firmware volume header")
	}
	hdr := int(binary.LittleEndian.Uint16(vars[48:]))
	if hdr+storeHdrLen > len(vars) || !bytes.Equal(vars[hdr:hdr+16], authVarStoreGUID[:]) {
		return 0, 0, errors.New("qemutest: VARS: no authenticated variable store")
	}
	size := int(binary.LittleEndian.Uint32(vars[hdr+16:]))
	if hdr+size > len(vars) {
		return 0, 0, errors.New("qemutest: VARS: variable store larger than the file")
	}
	return hdr + storeHdrLen, hdr + size, nil
}

// Variables lists every record (live and deleted) of the VARS file and
// returns the offset where free space begins.
func Variables(vars []byte) ([]Variable, int, error) {
	off, end, err := varStore(vars)
	if err != nil {
		return nil, 0, err
	}
	var out []Variable
	for off+authVarHdrLen <= end && binary.LittleEndian.Uint16(vars[off:]) == varStartID {
		nameSize := int(binary.LittleEndian.Uint32(vars[off+36:]))
		dataSize := int(binary.LittleEndian.Uint32(vars[off+40:]))
		nameOff := off + authVarHdrLen
		if nameOff+nameSize+dataSize > end || nameSize%2 != 0 {
			return nil, 0, fmt.Errorf("qemutest: VARS: bad record at %#x", off)
		}
		u := make([]uint16, 0, nameSize/2)
		for i := 0; i < nameSize; i += 2 {
			c := binary.LittleEndian.Uint16(vars[nameOff+i:])
			if c == 0 {
				break
			}
			u = append(u, c)
		}
		v := Variable{Offset: off, State: vars[off+2], Attr: binary.LittleEndian.Uint32(vars[off+4:]), Name: string(utf16.Decode(u))}
		copy(v.GUID[:], vars[off+44:off+60])
		v.Data = vars[nameOff+nameSize : nameOff+nameSize+dataSize]
		out = append(out, v)
		off = align4(nameOff + nameSize + dataSize)
	}
	return out, off, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// EnrollDB returns a copy of an OVMF VARS file whose Secure Boot db also
// holds certDER: the live db record is marked deleted and a new db record
// with the old signature lists plus an EFI_CERT_X509 list is appended, as
// the firmware itself would after an authenticated append.
func EnrollDB(varsIn []byte, certDER []byte) ([]byte, error) {
	vars, err := appendX509(varsIn, "db", ImageSecurityDatabaseGUID, 0, certDER)
	if errors.Is(err, errNoVariable) {
		return nil, errors.New("qemutest: VARS: no db variable (use a VARS file with Secure Boot keys enrolled, like OVMF_VARS_4M.ms.fd or AAVMF_VARS.ms.fd)")
	}
	return vars, err
}

// errNoVariable: appendX509 found no live record to append to.
var errNoVariable = errors.New("qemutest: VARS: no such variable")

// appendX509 returns a copy of vars in which the variable name (vendor GUID
// vendor) holds its signature lists plus an EFI_CERT_X509 list with
// certDER. A live record is marked deleted and its header (attributes,
// timestamp) reused for the appended one; with no live record, newAttr
// gives the new variable's attributes, and 0 means errNoVariable.
func appendX509(varsIn []byte, name string, vendor [16]byte, newAttr uint32, certDER []byte) ([]byte, error) {
	vars := bytes.Clone(varsIn)
	list, free, err := Variables(vars)
	if err != nil {
		return nil, err
	}
	_, end, _ := varStore(vars)
	var old *Variable
	for i := range list {
		v := &list[i]
		if v.State == varAdded && v.Name == name && v.GUID == vendor {
			old = v
		}
	}
	if old == nil && newAttr == 0 {
		return nil, errNoVariable
	}
	// EFI_SIGNATURE_LIST with one EFI_SIGNATURE_DATA.
	sigSize := 16 + len(certDER)
	sl := make([]byte, 28+sigSize)
	copy(sl[0:16], CertX509GUID[:])
	binary.LittleEndian.PutUint32(sl[16:], uint32(len(sl)))
	binary.LittleEndian.PutUint32(sl[20:], 0)
	binary.LittleEndian.PutUint32(sl[24:], uint32(sigSize))
	copy(sl[28:44], ownerGUID[:])
	copy(sl[44:], certDER)
	var data []byte
	if old != nil {
		data = bytes.Clone(old.Data)
	}
	data = append(data, sl...)

	u := utf16.Encode([]rune(name + "\x00"))
	nameSize := 2 * len(u)
	rec := make([]byte, authVarHdrLen+nameSize+len(data))
	if old != nil {
		copy(rec, vars[old.Offset:old.Offset+authVarHdrLen]) // StartId, attributes, count, timestamp, key index, GUID
	} else {
		// AUTHENTICATED_VARIABLE_HEADER: StartId, State, Reserved,
		// Attributes, MonotonicCount, TimeStamp, PubKeyIndex (all zero),
		// NameSize, DataSize, VendorGuid.
		binary.LittleEndian.PutUint16(rec[0:], varStartID)
		binary.LittleEndian.PutUint32(rec[4:], newAttr)
		copy(rec[44:60], vendor[:])
	}
	rec[2] = varAdded
	binary.LittleEndian.PutUint32(rec[36:], uint32(nameSize))
	binary.LittleEndian.PutUint32(rec[40:], uint32(len(data)))
	for i, c := range u {
		binary.LittleEndian.PutUint16(rec[authVarHdrLen+2*i:], c)
	}
	copy(rec[authVarHdrLen+nameSize:], data)
	if free+len(rec) > end {
		return nil, fmt.Errorf("qemutest: VARS: no room for a %d-byte %s record", len(rec), name)
	}
	copy(vars[free:], rec)
	if old != nil {
		vars[old.Offset+2] = varDeleted
	}
	return vars, nil
}

// SignatureLists splits an EFI_SIGNATURE_LIST sequence (a db value) into
// (type GUID, signature data without owner) pairs.
func SignatureLists(db []byte) ([][16]byte, [][]byte, error) {
	var types [][16]byte
	var sigs [][]byte
	for off := 0; off < len(db); {
		if off+28 > len(db) {
			return nil, nil, errors.New("qemutest: truncated signature list")
		}
		size := int(binary.LittleEndian.Uint32(db[off+16:]))
		hdr := int(binary.LittleEndian.Uint32(db[off+20:]))
		ss := int(binary.LittleEndian.Uint32(db[off+24:]))
		if size < 28 || off+size > len(db) || ss < 16 {
			return nil, nil, errors.New("qemutest: bad signature list")
		}
		var t [16]byte
		copy(t[:], db[off:off+16])
		for p := off + 28 + hdr; p+ss <= off+size; p += ss {
			types = append(types, t)
			sigs = append(sigs, db[p+16:p+ss])
		}
		off += size
	}
	return types, sigs, nil
}
