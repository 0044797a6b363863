package pki_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/pki"
)

// TestEnsureDB: the first call makes an RSA-2048 Authenticode signing key
// (0600) and its certificate (PEM and DER), which imagebuilder accepts; the
// next call loads the same key and makes nothing.
func TestEnsureDB(t *testing.T) {
	f := pki.DBFilesIn(t.TempDir())
	db, created, err := pki.EnsureDB(f, time.Now())
	if err != nil || !created {
		t.Fatalf("EnsureDB on an empty dir = created %v, %v; want created", created, err)
	}
	c := db.Cert
	if db.Key.N.BitLen() != 2048 {
		t.Errorf("key is %d bits, want 2048", db.Key.N.BitLen())
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}) || c.IsCA {
		t.Errorf("certificate: keyUsage %v, extKeyUsage %v, CA %v; want digitalSignature, [codeSigning], not a CA", c.KeyUsage, c.ExtKeyUsage, c.IsCA)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Errorf("certificate is not self-signed: %v", err)
	}
	if fi, err := os.Stat(f.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", f.Key, fi.Mode(), err)
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(certPEM); blk == nil || !bytes.Equal(blk.Bytes, c.Raw) {
		t.Errorf("%s does not hold the certificate", f.Cert)
	}
	if der, err := os.ReadFile(f.CertDER); err != nil || !bytes.Equal(der, c.Raw) {
		t.Errorf("%s does not hold the certificate as DER (%v)", f.CertDER, err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imagebuilder.LoadSigner(keyPEM, certPEM); err != nil {
		t.Errorf("imagebuilder.LoadSigner(db.key, db.crt) = %v", err)
	}

	os.Remove(f.CertDER) // derived files come back from the key
	again, created, err := pki.EnsureDB(f, time.Now())
	if err != nil || created || !again.Key.Equal(db.Key) || !again.Cert.Equal(c) {
		t.Fatalf("second EnsureDB = created %v, %v, same key %v; want the same key, not created", created, err, again != nil && again.Key.Equal(db.Key))
	}
	if _, err := os.Stat(f.CertDER); err != nil {
		t.Errorf("db.cer not rewritten: %v", err)
	}
}

// TestEnsureDBConcurrent: replicas starting together on one data dir end up
// with one key: exactly one of them makes it, all load it.
func TestEnsureDBConcurrent(t *testing.T) {
	f := pki.DBFilesIn(t.TempDir())
	const n = 6
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		dbs     [n]*pki.DB
		created [n]bool
		errs    [n]error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			dbs[i], created[i], errs[i] = pki.EnsureDB(f, time.Now())
		}()
	}
	close(start)
	wg.Wait()
	makers := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if created[i] {
			makers++
		}
		if !dbs[i].Key.Equal(dbs[0].Key) || !dbs[i].Cert.Equal(dbs[0].Cert) {
			t.Errorf("replica %d loaded another key than replica 0", i)
		}
	}
	if makers != 1 {
		t.Errorf("%d replicas report making the key, want exactly 1", makers)
	}
	certPEM, _ := os.ReadFile(f.Cert)
	if blk, _ := pem.Decode(certPEM); blk == nil || !bytes.Equal(blk.Bytes, dbs[0].Cert.Raw) {
		t.Error("db.crt does not hold the published key's certificate")
	}
}
