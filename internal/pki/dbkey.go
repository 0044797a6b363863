package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DBFiles are the Secure Boot db signing files inside the data directory.
// Key is the source of truth: it holds the private key and, after it, the
// certificate, and is published in one step (see EnsureDB). Cert (PEM, for
// sbverify and imagebuilder.LoadSigner) and CertDER (DER, what firmware
// setup menus enrol from a file) are derived from it.
type DBFiles struct {
	Key, Cert, CertDER string
}

// DBFilesIn returns the default db file names inside dir.
func DBFilesIn(dir string) DBFiles {
	return DBFiles{
		Key:     filepath.Join(dir, "db.key"),
		Cert:    filepath.Join(dir, "db.crt"),
		CertDER: filepath.Join(dir, "db.cer"),
	}
}

// DB is a Secure Boot db signing key and its self-signed certificate.
type DB struct {
	Key  *rsa.PrivateKey
	Cert *x509.Certificate
}

// KeyPEM returns the private key (PKCS#8 PEM).
func (d *DB) KeyPEM() []byte {
	kb, _ := x509.MarshalPKCS8PrivateKey(d.Key)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// CertPEM returns the certificate as PEM.
func (d *DB) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.Cert.Raw})
}

// EnsureDB loads the Secure Boot db key from f, or makes one on first start
// and reports created. The key is RSA-2048 (what UEFI firmware verifies)
// with a self-signed certificate for Authenticode signing: keyUsage
// digitalSignature, extKeyUsage codeSigning, not a CA, valid 10 years.
//
// Replicas sharing a data directory do not race: the key and certificate
// are written together to a temporary file (mode 0600) that is then
// hard-linked to f.Key, which fails if another replica published first; the
// loser drops its key and loads the winner's. The derived certificate files
// are (re)written atomically from f.Key when missing or different.
func EnsureDB(f DBFiles, now time.Time) (db *DB, created bool, err error) {
	db, err = loadDB(f.Key)
	if errors.Is(err, os.ErrNotExist) {
		created, err = createDB(f.Key, now)
		if err == nil {
			db, err = loadDB(f.Key)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("pki: Secure Boot db key: %w", err)
	}
	if err := writeIfChanged(f.Cert, db.CertPEM(), 0o644); err != nil {
		return nil, false, fmt.Errorf("pki: Secure Boot db certificate: %w", err)
	}
	if err := writeIfChanged(f.CertDER, db.Cert.Raw, 0o644); err != nil {
		return nil, false, fmt.Errorf("pki: Secure Boot db certificate: %w", err)
	}
	return db, created, nil
}

// loadDB reads the key file: a PKCS#8 RSA key followed by its certificate.
func loadDB(keyFile string) (*DB, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	db := &DB{}
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", keyFile, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%s: not an RSA key", keyFile)
			}
			db.Key = rk
		case "CERTIFICATE":
			if db.Cert == nil {
				if db.Cert, err = x509.ParseCertificate(blk.Bytes); err != nil {
					return nil, fmt.Errorf("%s: %w", keyFile, err)
				}
			}
		}
	}
	if db.Key == nil || db.Cert == nil {
		return nil, fmt.Errorf("%s: want a PEM private key followed by its certificate", keyFile)
	}
	if !db.Key.PublicKey.Equal(db.Cert.PublicKey) {
		return nil, fmt.Errorf("%s: the certificate does not belong to the key", keyFile)
	}
	return db, nil
}

// createDB makes a key and certificate and publishes them as keyFile unless
// it exists; created is false when another writer published first.
func createDB(keyFile string, now time.Time) (created bool, err error) {
	db, err := newDB(now)
	if err != nil {
		return false, err
	}
	body := append(db.KeyPEM(), db.CertPEM()...)
	tmp, err := os.CreateTemp(filepath.Dir(keyFile), ".tmp-db-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	// link(2) fails when keyFile exists: exactly one writer publishes, and
	// nobody ever sees a half-written key file.
	if err := os.Link(tmp.Name(), keyFile); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func newDB(now time.Time) (*DB, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "bootpilot Secure Boot db", Organization: []string{"bootpilot"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &DB{Key: key, Cert: c}, nil
}

// writeIfChanged atomically writes b to name unless it already holds b.
func writeIfChanged(name string, b []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return writeAtomic(name, b, mode)
}
