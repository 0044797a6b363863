package imagebuilder_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/bootpilot/bootpilot/ipxe"
)

func benchHost(i int) host.Host {
	h := testHost()
	h.Name = fmt.Sprintf("node%04d", i)
	h.MACs = []string{fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8&0xff, i&0xff)}
	return h
}

// BenchmarkBuildISO builds one signed ISO per iteration on one goroutine.
func BenchmarkBuildISO(b *testing.B) {
	bld, err := imagebuilder.NewBuilder(signedConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := bld.Build(io.Discard, benchHost(i), testToken); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "isos/s")
}

// BenchmarkBuildISOFiles is what `bootpilot iso build --jobs GOMAXPROCS`
// does per host: build in parallel and write each ISO to its own file.
func BenchmarkBuildISOFiles(b *testing.B) {
	bld, err := imagebuilder.NewBuilder(signedConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			f, err := os.CreateTemp(dir, "*.iso")
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := bld.Build(f, benchHost(i%1000), testToken); err != nil {
				b.Error(err)
			}
			f.Close()
			os.Remove(f.Name())
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "isos/s")
}

// BenchmarkBaselineSbsignXorriso does the same work per host the common way:
// patch the binary, sign it with sbsign, make a FAT ESP with mtools and an
// ISO with xorriso.
func BenchmarkBaselineSbsignXorriso(b *testing.B) {
	sbsign := testenv.Tool(b, "sbsign")
	xorriso := testenv.Tool(b, "xorriso")
	mformat := testenv.Tool(b, "mformat")
	mmd := testenv.Tool(b, "mmd")
	mcopy := testenv.Tool(b, "mcopy")
	p := mustPKI(b)
	dir := b.TempDir()
	key := writeFile(b, dir, "db.key", p.DBKeyPEM)
	cert := writeFile(b, dir, "db.pem", p.DBPEM)
	bin, err := ipxe.Stock("x86_64")
	if err != nil {
		b.Fatal(err)
	}
	bld, err := imagebuilder.NewBuilder(signedConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	fp := ipxe.Fingerprint(p.CA.Raw)
	sh := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := benchHost(i)
		script, err := bld.Script(h, testToken)
		if err != nil {
			b.Fatal(err)
		}
		pe, err := bin.Patch(script, fp)
		if err != nil {
			b.Fatal(err)
		}
		work := filepath.Join(dir, h.Name)
		os.MkdirAll(filepath.Join(work, "root"), 0o755)
		unsigned := writeFile(b, work, "ipxe.efi", pe)
		signed := filepath.Join(work, "BOOTX64.EFI")
		sh(sbsign, "--key", key, "--cert", cert, "--output", signed, unsigned)
		esp := filepath.Join(work, "root", "efiboot.img")
		sh(mformat, "-i", esp, "-C", "-f", "1440", "-v", "NODE", "::")
		sh(mmd, "-i", esp, "::/EFI", "::/EFI/BOOT")
		sh(mcopy, "-i", esp, signed, "::/EFI/BOOT/BOOTX64.EFI")
		sh(xorriso, "-as", "mkisofs", "-quiet", "-R", "-V", h.Name, "-o", filepath.Join(work, h.Name+".iso"),
			"-e", "efiboot.img", "-no-emul-boot", filepath.Join(work, "root"))
		os.RemoveAll(work)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "isos/s")
}
