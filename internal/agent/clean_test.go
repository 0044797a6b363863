package agent_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/bootpilot/bootpilot/internal/agent"
)

func isZero(b []byte) bool { return bytes.Equal(b, make([]byte, len(b))) }

func TestCleanWholeDisk(t *testing.T) {
	for _, method := range []string{agent.CleanZero, agent.CleanDiscard} {
		t.Run(method, func(t *testing.T) {
			dev, path := mustDevice(t, 9<<20+512)
			regions, err := agent.Clean(dev, method, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := agent.VerifyZero(dev, regions, 200, 7); err != nil {
				t.Errorf("VerifyZero after %s: %v", method, err)
			}
			got, _ := os.ReadFile(path)
			if len(got) != 9<<20+512 || !isZero(got) {
				t.Errorf("%s left non-zero bytes (or changed the size to %d)", method, len(got))
			}
		})
	}
}

// writeGPT writes a protective MBR and a primary GPT with two partitions at
// [2 MiB, 4 MiB) and [5 MiB, 8 MiB), named "root" and "cidata".
func writeGPT(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	mbr[446+4] = 0xee
	binary.LittleEndian.PutUint32(mbr[446+8:], 1)
	binary.LittleEndian.PutUint32(mbr[446+12:], 0xffffffff)
	mbr[510], mbr[511] = 0x55, 0xaa
	f.WriteAt(mbr, 0)
	hdr := make([]byte, 92)
	copy(hdr, "EFI PART")
	binary.LittleEndian.PutUint64(hdr[72:], 2)
	binary.LittleEndian.PutUint32(hdr[80:], 128)
	binary.LittleEndian.PutUint32(hdr[84:], 128)
	f.WriteAt(hdr, 512)
	tbl := make([]byte, 128*128)
	for i, p := range []struct {
		first, last uint64
		name        string
	}{{4096, 8191, "root"}, {10240, 16383, "cidata"}} {
		e := tbl[i*128:]
		e[0] = 1 // non-zero type GUID
		binary.LittleEndian.PutUint64(e[32:], p.first)
		binary.LittleEndian.PutUint64(e[40:], p.last)
		for j, r := range p.name {
			binary.LittleEndian.PutUint16(e[56+2*j:], uint16(r))
		}
	}
	f.WriteAt(tbl, 1024)
}

func TestPartitions(t *testing.T) {
	dev, path := mustDevice(t, 12<<20)
	writeGPT(t, path)
	ps := agent.Partitions(dev)
	if len(ps) != 2 || ps[0].Off != 2<<20 || ps[0].Len != 2<<20 || ps[1].Name != "cidata" || ps[1].Off != 5<<20 || ps[1].Len != 3<<20 {
		t.Errorf("Partitions = %+v", ps)
	}
}

func TestCleanMetadata(t *testing.T) {
	dev, path := mustDevice(t, 12<<20)
	writeGPT(t, path)
	regions, err := agent.Clean(dev, agent.CleanMetadata, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []agent.Region{{0, 1 << 20}, {2 << 20, 2 << 20}, {5 << 20, 1 << 20}, {7 << 20, 1 << 20}, {11 << 20, 1 << 20}}
	if len(regions) != len(want) {
		t.Fatalf("regions = %v, want %v", regions, want)
	}
	for i := range want {
		if regions[i] != want[i] {
			t.Errorf("regions[%d] = %v, want %v", i, regions[i], want[i])
		}
	}
	if err := agent.VerifyZero(dev, regions, 100, 1); err != nil {
		t.Errorf("VerifyZero: %v", err)
	}
	got, _ := os.ReadFile(path)
	for _, r := range want {
		if !isZero(got[r.Off : r.Off+r.Len]) {
			t.Errorf("region %v not zero", r)
		}
	}
	// Between the wiped regions the old data stays: metadata is fast, not thorough.
	if got[1<<20] != 0xaa || got[4<<20] != 0xaa || got[6<<20] != 0xaa || got[9<<20] != 0xaa {
		t.Errorf("metadata clean wiped more than the metadata regions")
	}
}

func TestVerifyZeroFindsData(t *testing.T) {
	dev, _ := mustDevice(t, 4<<20)
	regions, err := agent.Clean(dev, agent.CleanZero, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A non-zero byte in the last block must be found (boundary sample).
	dev.WriteAt([]byte{1}, 4<<20-1)
	if err := agent.VerifyZero(dev, regions, 0, 1); !errors.Is(err, agent.ErrNotClean) {
		t.Errorf("VerifyZero with a dirty last byte = %v, want ErrNotClean", err)
	}
	// Dirty the middle of every 4 KiB block except the first and last:
	// boundary checks alone pass, random samples must catch it.
	dev.WriteAt([]byte{0}, 4<<20-1)
	for off := int64(4096 + 2048); off < 4<<20-4096; off += 4096 {
		dev.WriteAt([]byte{1}, off)
	}
	if err := agent.VerifyZero(dev, regions, 0, 1); err != nil {
		t.Errorf("VerifyZero with clean boundaries and no samples = %v, want nil", err)
	}
	if err := agent.VerifyZero(dev, regions, 64, 1); !errors.Is(err, agent.ErrNotClean) {
		t.Errorf("VerifyZero with 64 samples over dirty blocks = %v, want ErrNotClean", err)
	}
}

func TestCleanUnknownMethod(t *testing.T) {
	dev, _ := mustDevice(t, 1<<20)
	if _, err := agent.Clean(dev, "shred", nil); err == nil {
		t.Error("Clean(shred) succeeded")
	}
}
