// Package imagebuilder builds the per-host boot ISO: it patches the host's
// stage-0 script and the organisation's CA fingerprint into the iPXE binary,
// Authenticode-signs it with the Secure Boot db key, puts it on a FAT12 EFI
// system partition and wraps that in an ISO9660 image with an El Torito EFI
// entry and Rock Ridge. Both file systems are written by this package in a
// fixed layout, so the same inputs give the same bytes.
//
// Two modes: ModeBinary (default) signs one binary per host, with the host's
// script embedded; ModeESPScript ("sign once") signs one binary for all hosts
// whose embedded script loads host.ipxe from the ESP, verifies its detached
// CMS signature (host.ipxe.sig) against the pinned CA and chains it.
//
// Two ESP layouts (shim.go): LayoutIPXE (default) boots iPXE directly;
// LayoutShim (Config.Shim, x86_64) boots a Microsoft-signed shim that loads
// our signed iPXE as grubx64.efi, for firmware whose db holds only
// Microsoft's keys but whose MokList holds the db certificate.
package imagebuilder

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/ipxe"
)

// Mode selects how the host's script reaches iPXE.
type Mode string

// The build modes.
const (
	// ModeBinary embeds the host's script in a per-host signed binary.
	ModeBinary Mode = "binary"
	// ModeESPScript signs one binary once; the host's script and its CMS
	// signature sit next to it on the ESP.
	ModeESPScript Mode = "esp-script"
)

// DefaultEpoch is the timestamp written into the ESP and ISO when
// Config.Epoch is zero: 2000-01-01 00:00:00 UTC.
var DefaultEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Config says how to build ISOs.
type Config struct {
	ServerURL string            // "https://10.0.2.100:8443"
	CACert    *x509.Certificate // the CA iPXE trusts (its fingerprint goes into the binary)
	Signer    *Signer           // Secure Boot db key (RSA); nil only if Unsigned
	Unsigned  bool              // build without an Authenticode signature
	Arches    []string          // "x86_64" (default), "arm64"
	Mode      Mode              // ModeBinary (default) or ModeESPScript
	// ScriptSigner signs host.ipxe in ModeESPScript: a code-signing
	// certificate chaining to CACert.
	ScriptSigner *Signer
	// IPXE holds user-supplied unsigned iPXE EFI binaries by architecture;
	// missing architectures use ipxedust's.
	IPXE map[string][]byte
	// Epoch is every timestamp in the image; zero means DefaultEpoch.
	Epoch time.Time
	// Stage0 tunes the stage-0 script (retries, back-off, timeout); its
	// Host, Token and ServerURL fields are ignored.
	Stage0 ipxe.Stage0Config
	// Shim, when set, selects LayoutShim (x86_64 only, signed builds only):
	// a Microsoft-signed shim, e.g. Debian's shimx64.efi.signed, becomes
	// EFI/BOOT/BOOTX64.EFI and our signed iPXE EFI/BOOT/grubx64.efi.
	Shim []byte
	// MokManager is shim's MokManager (mmx64.efi.signed), put next to the
	// shim as EFI/BOOT/mmx64.efi; optional, only with Shim.
	MokManager []byte
}

// Artifact describes one built ISO.
type Artifact struct {
	Size              int64  `json:"size"`
	SHA256            string `json:"sha256"`
	SignerFingerprint string `json:"signer_fingerprint,omitempty"` // SHA-256 of the db certificate; "" if unsigned
	CAFingerprint     string `json:"ca_fingerprint"`
	Mode              string `json:"mode"`
	Layout            string `json:"layout"`                // LayoutIPXE or LayoutShim
	ShimSHA256        string `json:"shim_sha256,omitempty"` // SHA-256 of the shim in LayoutShim
}

// Builder builds ISOs for hosts. It is safe for concurrent use.
type Builder struct {
	c        Config
	caFP     [32]byte
	bins     map[string]*ipxe.Binary // by arch, ModeBinary
	signedES map[string][]byte       // by arch, ModeESPScript: signed once
	bufs     sync.Pool               // *[]byte patch buffers
	shimSum  string                  // hex SHA-256 of c.Shim, "" without one
}

// espScript is the embedded script of the sign-once binary.
const espScript = `#!ipxe
echo bootpilot stage 0 (sign once): verifying host.ipxe
imgfetch --name host.ipxe file:host.ipxe || goto fail
imgverify host.ipxe file:host.ipxe.sig || goto fail
chain --replace --autofree host.ipxe || goto fail
:fail
echo bootpilot: host.ipxe missing or not signed by the pinned CA, exit 1
exit 1
`

// NewBuilder validates c and prepares the binaries.
func NewBuilder(c Config) (*Builder, error) {
	if c.CACert == nil {
		return nil, fmt.Errorf("imagebuilder: a CA certificate is required")
	}
	if _, err := ipxe.ServerBase(c.ServerURL); err != nil {
		return nil, err
	}
	if c.Mode == "" {
		c.Mode = ModeBinary
	}
	if c.Mode != ModeBinary && c.Mode != ModeESPScript {
		return nil, fmt.Errorf("imagebuilder: unknown mode %q (want binary or esp-script)", c.Mode)
	}
	if len(c.Arches) == 0 {
		c.Arches = []string{"x86_64"}
	}
	c.Arches = slices.Clone(c.Arches)
	slices.Sort(c.Arches)
	c.Arches = slices.Compact(c.Arches)
	if c.Signer == nil && !c.Unsigned {
		return nil, fmt.Errorf("imagebuilder: a db signing key is required (or build unsigned explicitly)")
	}
	if c.Signer != nil && c.Unsigned {
		return nil, fmt.Errorf("imagebuilder: both a signing key and unsigned were given")
	}
	if c.Signer != nil {
		if _, ok := c.Signer.Key.(*rsa.PrivateKey); !ok {
			return nil, fmt.Errorf("imagebuilder: the Secure Boot signing key must be RSA")
		}
	}
	if c.Mode == ModeESPScript {
		if c.ScriptSigner == nil {
			return nil, fmt.Errorf("imagebuilder: esp-script mode needs a script signing key and certificate")
		}
		if err := c.ScriptSigner.Cert.CheckSignatureFrom(c.CACert); err != nil && len(c.ScriptSigner.Chain) == 0 {
			return nil, fmt.Errorf("imagebuilder: the script signing certificate is not issued by the CA: %w", err)
		}
	}
	if err := checkShim(c); err != nil {
		return nil, err
	}
	if c.Epoch.IsZero() {
		c.Epoch = DefaultEpoch
	}
	b := &Builder{c: c, caFP: ipxe.Fingerprint(c.CACert.Raw), bins: map[string]*ipxe.Binary{}, signedES: map[string][]byte{},
		shimSum: shimSHA256(c.Shim)}
	for _, arch := range c.Arches {
		if _, err := ipxe.EFIBootName(arch); err != nil {
			return nil, err
		}
		var bin *ipxe.Binary
		var err error
		if user, ok := c.IPXE[arch]; ok {
			bin, err = ipxe.Parse(user)
			if err != nil {
				return nil, fmt.Errorf("imagebuilder: %s iPXE binary: %w", arch, err)
			}
		} else if bin, err = ipxe.Stock(arch); err != nil {
			return nil, err
		}
		b.bins[arch] = bin
		if c.Mode == ModeESPScript {
			pe, err := bin.Patch([]byte(espScript), b.caFP)
			if err != nil {
				return nil, err
			}
			if c.Signer != nil {
				if pe, err = c.Signer.SignPE(pe); err != nil {
					return nil, err
				}
			}
			b.signedES[arch] = pe
		}
	}
	return b, nil
}

// Config returns the builder's configuration with defaults filled in.
func (b *Builder) Config() Config { return b.c }

// Script returns the stage-0 script Build would use for h and token.
func (b *Builder) Script(h host.Host, token string) ([]byte, error) {
	s := b.c.Stage0
	s.Host, s.Token, s.ServerURL = h, token, b.c.ServerURL
	return ipxe.Stage0(s)
}

// Build writes h's ISO to w, with token as the host's boot token.
func (b *Builder) Build(w io.Writer, h host.Host, token string) (Artifact, error) {
	h.MACs, h.DNS = slices.Clone(h.MACs), slices.Clone(h.DNS) // Normalize writes in place
	if err := h.Normalize(); err != nil {
		return Artifact{}, err
	}
	script, err := b.Script(h, token)
	if err != nil {
		return Artifact{}, err
	}
	var files []espFile
	for _, arch := range b.c.Arches {
		name, _ := ipxe.EFIBootName(arch)
		var pe []byte
		if b.c.Mode == ModeESPScript {
			pe = b.signedES[arch]
		} else {
			pe, err = b.patchAndSign(arch, script)
			if err != nil {
				return Artifact{}, err
			}
		}
		if b.c.Shim != nil {
			files = append(files, b.shimFiles(pe)...)
		} else {
			files = append(files, espFile{Path: "EFI/BOOT/" + name, Data: pe})
		}
	}
	if b.c.Mode == ModeESPScript {
		sig, err := signCMS(b.c.ScriptSigner, script, b.c.CACert)
		if err != nil {
			return Artifact{}, err
		}
		files = append(files, espFile{Path: "EFI/BOOT/host.ipxe", Data: script}, espFile{Path: "EFI/BOOT/host.ipxe.sig", Data: sig})
	}
	hf := fnv.New32a()
	hf.Write([]byte(h.Name))
	esp, err := buildFAT12(files, h.Name, hf.Sum32(), b.c.Epoch)
	if err != nil {
		return Artifact{}, err
	}
	defer releaseESP(esp)
	sum := sha256.New()
	if err := writeISO(io.MultiWriter(w, sum), esp, h.Name, b.c.Epoch); err != nil {
		return Artifact{}, err
	}
	a := Artifact{
		Size:          isoSize(len(esp)),
		SHA256:        hex.EncodeToString(sum.Sum(nil)),
		CAFingerprint: hex.EncodeToString(b.caFP[:]),
		Mode:          string(b.c.Mode),
		Layout:        LayoutIPXE,
		ShimSHA256:    b.shimSum,
	}
	if b.c.Shim != nil {
		a.Layout = LayoutShim
	}
	if b.c.Signer != nil {
		a.SignerFingerprint = b.c.Signer.Fingerprint()
	}
	return a, nil
}

func (b *Builder) patchAndSign(arch string, script []byte) ([]byte, error) {
	bin := b.bins[arch]
	bp, _ := b.bufs.Get().(*[]byte)
	if bp == nil || len(*bp) != bin.Size() {
		buf := make([]byte, bin.Size())
		bp = &buf
	}
	defer b.bufs.Put(bp)
	if err := bin.PatchInto(*bp, script, b.caFP); err != nil {
		return nil, err
	}
	if b.c.Signer == nil {
		return bytes.Clone(*bp), nil
	}
	return b.c.Signer.SignPE(*bp)
}
