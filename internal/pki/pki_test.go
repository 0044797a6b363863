package pki_test

import (
	"crypto/rsa"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/pki"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	f := pki.FilesIn(dir)
	now := time.Now()
	b1, err := pki.Ensure(f, []string{"10.0.2.100"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(b1.TLS.Certificate) != 2 || !b1.CA.IsCA {
		t.Fatalf("chain has %d certificates, want leaf + CA", len(b1.TLS.Certificate))
	}
	if _, ok := b1.TLS.PrivateKey.(*rsa.PrivateKey); !ok {
		t.Errorf("server key is %T, want RSA (iPXE accepts RSA only)", b1.TLS.PrivateKey)
	}
	leaf := b1.TLS.Leaf
	for _, h := range []string{"10.0.2.100", "127.0.0.1", "localhost"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("leaf does not cover %s: %v", h, err)
		}
	}
	if !leaf.NotBefore.Before(now.Add(-23 * time.Hour)) {
		t.Errorf("notBefore %v is not backdated a day", leaf.NotBefore)
	}
	pool := x509.NewCertPool()
	pool.AddCert(b1.CA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.0.2.100"}); err != nil {
		t.Errorf("leaf does not chain to the CA: %v", err)
	}
	for _, p := range []string{f.CAKey, f.Key} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", p, fi.Mode().Perm(), err)
		}
	}

	// A second start reuses everything.
	b2, err := pki.Ensure(f, []string{"10.0.2.100"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !b2.CA.Equal(b1.CA) || !b2.TLS.Leaf.Equal(leaf) {
		t.Error("second Ensure re-made the CA or the leaf")
	}
	// A new external address re-issues the leaf from the same CA.
	b3, err := pki.Ensure(f, []string{"boot.example.org"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !b3.CA.Equal(b1.CA) || b3.TLS.Leaf.Equal(leaf) || b3.TLS.Leaf.VerifyHostname("boot.example.org") != nil {
		t.Error("a new SAN did not re-issue the leaf from the same CA")
	}
	if fp := pki.Fingerprint(b1.CA); len(fp) != 64 {
		t.Errorf("Fingerprint = %q, want 64 hex digits", fp)
	}
}
