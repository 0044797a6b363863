// Package ipxe prepares the iPXE binary that boots every host: it finds the
// embedded-script slot and the trusted-root slot in an iPXE EFI binary,
// writes a host's stage-0 script and the organisation's CA fingerprint into
// them, and generates that stage-0 script from validated host data.
//
// The stock binaries come from github.com/tinkerbell/ipxedust (x86_64
// ipxe.efi, arm64 snp.efi). Their embedded script is ipxedust's
// binary/script/embed.ipxe (1713 bytes, copied here as stock_embed.ipxe) and
// their trusted root is iPXE's own CA, SHA-256
// 9faf717b7f8ca2f93c256c79f8ac5591895d66d1ff3bee6397a70d29c65eed1a.
package ipxe

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"

	"github.com/tinkerbell/ipxedust/binary"
)

// StockScript is ipxedust's binary/script/embed.ipxe at
// v0.0.0-20250812160707-a4542aee25c6 (1713 bytes, SHA-256
// 662f86785006d6b1857e7ee9b029fa19a2c78a685969bb6135deae50ba3ff1d0). It
// appears verbatim exactly once in each stock binary and marks the
// embedded-script slot.
//
//go:embed stock_embed.ipxe
var StockScript []byte

// StockScriptSHA256 is the hex SHA-256 of StockScript.
const StockScriptSHA256 = "662f86785006d6b1857e7ee9b029fa19a2c78a685969bb6135deae50ba3ff1d0"

// StockRootFingerprint is the SHA-256 of iPXE's root CA certificate, the
// value of the trusted-root slot in a binary built without TRUST=.
var StockRootFingerprint = mustHex("9faf717b7f8ca2f93c256c79f8ac5591895d66d1ff3bee6397a70d29c65eed1a")

// SlotMarker is the marker a user-built iPXE binary can carry instead of the
// stock script: ipxedust's two "random string" comment lines, which must end
// the embedded script (an iPXE build stores the script without a terminator,
// so its end cannot be found otherwise). When the stock script is not found,
// the script slot runs from the "#!ipxe" before the marker to the end of the
// marker (plus one newline if the script has one there).
var SlotMarker = []byte("#a8b7e61f1075c37a793f2f92cee89f7bba00c4a8d7842ce3d40b5889032d8881\n#ddd16a4fc4926ecefdfb6941e33c44ed3647133638f5e84021ea44d3152e7f97")

// Arches lists the supported architectures, in iPXE's ${buildarch} spelling.
var Arches = []string{"x86_64", "arm64"}

// stockFiles maps an architecture to its ipxedust file name.
var stockFiles = map[string]string{"x86_64": "ipxe.efi", "arm64": "snp.efi"}

// EFIBootName returns the removable-media boot file name the firmware looks
// for on the ESP for arch: BOOTX64.EFI or BOOTAA64.EFI.
func EFIBootName(arch string) (string, error) {
	switch arch {
	case "x86_64":
		return "BOOTX64.EFI", nil
	case "arm64":
		return "BOOTAA64.EFI", nil
	}
	return "", fmt.Errorf("ipxe: unknown architecture %q (want x86_64 or arm64)", arch)
}

// Binary is an iPXE EFI binary with its two patchable slots located.
type Binary struct {
	data       []byte // never modified
	scriptOff  int
	scriptLen  int
	trustOff   int
	stockTrust bool
}

// Stock returns ipxedust's binary for arch ("x86_64" or "arm64").
func Stock(arch string) (*Binary, error) {
	name, ok := stockFiles[arch]
	if !ok {
		return nil, fmt.Errorf("ipxe: unknown architecture %q (want x86_64 or arm64)", arch)
	}
	data, ok := binary.Files[name]
	if !ok {
		return nil, fmt.Errorf("ipxe: ipxedust has no %s", name)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("ipxe: stock %s: %w", name, err)
	}
	return b, nil
}

// Parse locates the script and trusted-root slots in an iPXE EFI binary. The
// script slot is found by the stock script's content or, failing that, by
// SlotMarker; the trusted-root slot by StockRootFingerprint. Each must occur
// exactly once. Parse keeps a reference to data and never modifies it.
func Parse(data []byte) (*Binary, error) {
	b := &Binary{data: data}
	switch n := bytes.Count(data, StockScript); {
	case n == 1:
		b.scriptOff, b.scriptLen = bytes.Index(data, StockScript), len(StockScript)
	case n > 1:
		return nil, fmt.Errorf("ipxe: the stock embedded script occurs %d times, want exactly once", n)
	default:
		switch m := bytes.Count(data, SlotMarker); {
		case m == 0:
			return nil, fmt.Errorf("ipxe: no embedded-script slot (neither ipxedust's embed.ipxe nor its marker found)")
		case m > 1:
			return nil, fmt.Errorf("ipxe: the script slot marker occurs %d times, want exactly once", m)
		}
		at := bytes.Index(data, SlotMarker)
		start := bytes.LastIndex(data[:at], []byte("#!ipxe"))
		if start < 0 || at-start > 64*1024 {
			return nil, fmt.Errorf("ipxe: no #!ipxe line before the script slot marker")
		}
		end := at + len(SlotMarker)
		if end < len(data) && data[end] == '\n' {
			end++
		}
		b.scriptOff, b.scriptLen = start, end-start
	}
	switch n := bytes.Count(data, StockRootFingerprint); {
	case n == 0:
		return nil, fmt.Errorf("ipxe: no trusted-root slot (iPXE root CA fingerprint %x not found)", StockRootFingerprint)
	case n > 1:
		return nil, fmt.Errorf("ipxe: the trusted-root fingerprint occurs %d times, want exactly once", n)
	}
	b.trustOff = bytes.Index(data, StockRootFingerprint)
	return b, nil
}

// ScriptSlot returns the size in bytes of the embedded-script slot.
func (b *Binary) ScriptSlot() int { return b.scriptLen }

// Size returns the size of the binary in bytes.
func (b *Binary) Size() int { return len(b.data) }

// Patch returns a copy of the binary whose script slot holds script, padded
// with spaces after a final newline to the slot's length, and whose trusted-
// root slot holds caFingerprint (the SHA-256 of the CA certificate's DER).
func (b *Binary) Patch(script []byte, caFingerprint [32]byte) ([]byte, error) {
	out := make([]byte, len(b.data))
	if err := b.PatchInto(out, script, caFingerprint); err != nil {
		return nil, err
	}
	return out, nil
}

// PatchInto is Patch writing into dst, which must be Size() bytes long.
func (b *Binary) PatchInto(dst, script []byte, caFingerprint [32]byte) error {
	if err := CheckScript(script, b.scriptLen); err != nil {
		return err
	}
	if len(dst) != len(b.data) {
		return fmt.Errorf("ipxe: patch buffer is %d bytes, want %d", len(dst), len(b.data))
	}
	copy(dst, b.data)
	slot := dst[b.scriptOff : b.scriptOff+b.scriptLen]
	n := copy(slot, script)
	for i := n; i < len(slot); i++ {
		slot[i] = ' '
	}
	if n < len(slot) && (n == 0 || script[n-1] != '\n') {
		slot[n] = '\n'
	}
	copy(dst[b.trustOff:], caFingerprint[:])
	return nil
}

// CheckScript reports whether script fits a slot of slotLen bytes and is an
// iPXE script without NUL bytes.
func CheckScript(script []byte, slotLen int) error {
	if !bytes.HasPrefix(script, []byte("#!ipxe")) {
		return fmt.Errorf("ipxe: script does not start with #!ipxe")
	}
	if bytes.IndexByte(script, 0) >= 0 {
		return fmt.Errorf("ipxe: script contains a NUL byte")
	}
	if len(script) > slotLen {
		return fmt.Errorf("ipxe: script is %d bytes, %d over the %d-byte slot", len(script), len(script)-slotLen, slotLen)
	}
	return nil
}

// Fingerprint returns the SHA-256 of a certificate's DER bytes, the value
// iPXE keeps for a trusted root.
func Fingerprint(certDER []byte) [32]byte { return sha256.Sum256(certDER) }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
