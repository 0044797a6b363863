package imagebuilder

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"debug/pe"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/foxboron/go-uefi/authenticode"
	"github.com/foxboron/go-uefi/pkcs7"
)

// The ESP layouts (Artifact.Layout).
const (
	// LayoutIPXE boots our signed iPXE as EFI/BOOT/BOOTX64.EFI (and
	// BOOTAA64.EFI): the firmware's db must trust the db key.
	LayoutIPXE = "ipxe"
	// LayoutShim boots a Microsoft-signed shim as EFI/BOOT/BOOTX64.EFI,
	// which loads our signed iPXE from EFI/BOOT/grubx64.efi after checking
	// it against MokList (or db); kernels iPXE loads then go through shim's
	// loader protocol, so distribution-signed kernels boot too. x86_64 only.
	LayoutShim = "shim"
)

// File names of the shim layout, next to BOOTX64.EFI. shim loads its
// DEFAULT_LOADER, grubx64.efi, from its own directory, and MokManager,
// mmx64.efi, when a MOK request is pending or a verification fails.
const (
	shimLoaderName = "grubx64.efi"
	mokManagerName = "mmx64.efi"
)

// ShimArch is the only architecture the shim layout builds.
const ShimArch = "x86_64"

// peMachine maps our architecture names to PE/COFF machine types
// (PE format, "Machine Types").
var peMachine = map[string]uint16{
	"x86_64": pe.IMAGE_FILE_MACHINE_AMD64,
	"arm64":  pe.IMAGE_FILE_MACHINE_ARM64,
}

// imageSubsystemEFIApplication is IMAGE_SUBSYSTEM_EFI_APPLICATION (PE
// format, "Windows Subsystem").
const imageSubsystemEFIApplication = 10

// CheckSignedEFI checks that data is an EFI application for arch (a 64-bit
// PE/COFF image for that machine) carrying an Authenticode signature whose
// digest matches the image. Who signed it is the firmware's business: the
// check catches a wrong file, an unsigned build and a damaged copy.
func CheckSignedEFI(data []byte, arch string) error {
	f, err := pe.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an EFI binary (PE/COFF): %w", err)
	}
	defer f.Close()
	if want, ok := peMachine[arch]; !ok {
		return fmt.Errorf("unknown architecture %q", arch)
	} else if f.Machine != want {
		return fmt.Errorf("a PE/COFF image for machine %#x, not %s (%#x)", f.Machine, arch, want)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok || oh.Subsystem != imageSubsystemEFIApplication {
		return errors.New("not a 64-bit EFI application (PE32+, subsystem 10)")
	}
	bin, err := authenticode.Parse(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an EFI binary (PE/COFF): %w", err)
	}
	sigs, err := bin.Signatures()
	if err != nil {
		return fmt.Errorf("unreadable signature table: %w", err)
	}
	if len(sigs) == 0 {
		return errors.New("no Authenticode signature (give the signed build, e.g. Debian's shimx64.efi.signed)")
	}
	for _, s := range sigs {
		a, err := authenticode.ParseAuthenticode(s.Certificate)
		if err != nil {
			return fmt.Errorf("unreadable Authenticode signature: %w", err)
		}
		if !a.Algid.Algorithm.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
			return fmt.Errorf("the Authenticode digest %v is not SHA-256", a.Algid.Algorithm)
		}
		if !bytes.Equal(a.Digest, bin.Hash(crypto.SHA256)) {
			return errors.New("the Authenticode signature does not cover this file (damaged or modified copy?)")
		}
	}
	return nil
}

// checkShim validates the shim layout's part of c.
func checkShim(c Config) error {
	if c.Shim == nil {
		if c.MokManager != nil {
			return errors.New("imagebuilder: a MokManager needs a shim")
		}
		return nil
	}
	if len(c.Arches) != 1 || c.Arches[0] != ShimArch {
		return fmt.Errorf("imagebuilder: the shim layout is %s only (shimx64); build other architectures without a shim", ShimArch)
	}
	if c.Signer == nil {
		return errors.New("imagebuilder: the shim layout needs the db key: shim verifies iPXE against MokList and db")
	}
	if err := CheckSignedEFI(c.Shim, ShimArch); err != nil {
		return fmt.Errorf("imagebuilder: shim: %w", err)
	}
	if c.MokManager != nil {
		if err := CheckSignedEFI(c.MokManager, ShimArch); err != nil {
			return fmt.Errorf("imagebuilder: MokManager: %w", err)
		}
	}
	return nil
}

// shimFiles returns the shim layout's ESP files around our signed iPXE.
func (b *Builder) shimFiles(loader []byte) []espFile {
	files := []espFile{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: b.c.Shim},
		{Path: "EFI/BOOT/" + shimLoaderName, Data: loader},
	}
	if b.c.MokManager != nil {
		files = append(files, espFile{Path: "EFI/BOOT/" + mokManagerName, Data: b.c.MokManager})
	}
	return files
}

// shimSHA256 returns the hex SHA-256 of shim, "" without one.
func shimSHA256(shim []byte) string {
	if shim == nil {
		return ""
	}
	sum := sha256.Sum256(shim)
	return hex.EncodeToString(sum[:])
}
