package qemutest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/testenv"
)

// NewDBKey makes a self-signed RSA-2048 code-signing key and certificate:
// a Secure Boot db key for the firmware tests (enrol it with EnrollDB or
// EnrollMOK).
func NewDBKey(tb testing.TB, cn string) *imagebuilder.Signer {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &imagebuilder.Signer{Key: key, Cert: cert}
}

// ResignKernel copies a signed kernel (Debian's) into dir, removes its
// signature with sbattach --remove and signs it with s; it returns the
// path of the re-signed copy, dir/vmlinuz-signed.
func ResignKernel(tb testing.TB, dir, kernel string, s *imagebuilder.Signer) string {
	tb.Helper()
	sbattach := testenv.Tool(tb, "sbattach")
	raw, err := os.ReadFile(kernel)
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, "vmlinuz-unsigned")
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(sbattach, "--remove", p).CombinedOutput(); err != nil {
		tb.Fatalf("sbattach --remove: %v\n%s", err, out)
	}
	unsigned, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	signed, err := s.SignPE(unsigned)
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(dir, "vmlinuz-signed")
	if err := os.WriteFile(out, signed, 0o644); err != nil {
		tb.Fatal(err)
	}
	return out
}
