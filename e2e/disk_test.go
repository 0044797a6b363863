package e2e_test

import (
	"fmt"
	"io"
	"os"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/ipxe"
)

// markerLine is what a marker program prints: BOOTPILOT-DISK-MARKER-<X>.
func markerLine(x string) string { return "BOOTPILOT-DISK-MARKER-" + x }

// markerEFI returns the stock iPXE binary whose embedded script prints
// markerLine(x) and powers the machine off, Authenticode-signed by s when s
// is not nil.
func markerEFI(x string, s *imagebuilder.Signer) ([]byte, error) {
	stock, err := ipxe.Stock("x86_64")
	if err != nil {
		return nil, err
	}
	var fp [32]byte
	copy(fp[:], ipxe.StockRootFingerprint)
	efi, err := stock.Patch([]byte("#!ipxe\necho "+markerLine(x)+"\npoweroff\n"), fp)
	if err != nil || s == nil {
		return efi, err
	}
	return s.SignPE(efi)
}

// Disk layout shared by every marker disk and image, so that two of them
// differ only in the marker program's script bytes (a write interrupted
// half-way leaves a disk that boots one marker or the other).
const (
	diskGUID   = "5a1e0c2d-6b7f-4e3a-9c1d-0e2f3a4b5c6d"
	espGUID    = "6b2f1d3e-7c8a-4f4b-8d2e-1f3a4b5c6d7e"
	cidataGUID = "7c3a2e4f-8d9b-4a5c-9e3f-2a4b5c6d7e8f"
	espStart   = 1 << 20 // bytes
	espEnd     = 9 << 20
	cidataEnd  = 10 << 20
)

// markerDisk writes a raw GPT disk image of size bytes to path: an EFI
// system partition (FAT16) holding efi as EFI/BOOT/BOOTX64.EFI, and an empty
// partition named "cidata" for the agent's NoCloud seed.
func markerDisk(path string, size int64, efi []byte) error {
	return markerDiskAs(path, size, "BOOTX64.EFI", efi)
}

// markerDiskAs is markerDisk with efi stored as EFI/BOOT/<boot>
// (BOOTAA64.EFI for arm64).
func markerDiskAs(path string, size int64, boot string, efi []byte) error {
	os.Remove(path)
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer d.Close()
	table := &gpt.Table{
		GUID: diskGUID, ProtectiveMBR: true, LogicalSectorSize: 512, PhysicalSectorSize: 512,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: espStart / 512, End: espEnd/512 - 1, Type: gpt.EFISystemPartition, Name: "EFI System", GUID: espGUID},
			{Index: 2, Start: espEnd / 512, End: cidataEnd/512 - 1, Type: gpt.LinuxFilesystem, Name: "cidata", GUID: cidataGUID},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("partition %s: %w", path, err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat16, VolumeLabel: "ESP", Reproducible: true})
	if err != nil {
		return fmt.Errorf("format ESP of %s: %w", path, err)
	}
	if err := fs.Mkdir("/EFI/BOOT"); err != nil {
		return fmt.Errorf("mkdir on %s: %w", path, err)
	}
	f, err := fs.OpenFile("/EFI/BOOT/"+boot, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("create %s on %s: %w", boot, path, err)
	}
	if _, err := f.Write(efi); err != nil {
		return fmt.Errorf("write %s on %s: %w", boot, path, err)
	}
	return f.Close()
}

// readDiskFile reads a file from partition part (1: ESP, 2: cidata) of a
// marker disk image.
func readDiskFile(path string, part int, name string) ([]byte, error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fs, err := d.GetFilesystem(part)
	if err != nil {
		return nil, err
	}
	f, err := fs.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
