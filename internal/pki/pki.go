// Package pki makes and loads the server's certificate authority, its
// HTTPS certificate and the Secure Boot db key that signs ISOs. Everything is RSA-2048: the iPXE build we ship accepts
// RSA server certificates only (FACTS), and it keeps only the root's
// fingerprint, so the server always presents the full chain including the CA.
package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files are the PKI files inside the data directory.
type Files struct {
	CACert, CAKey, Cert, Key string
}

// FilesIn returns the default file names inside dir.
func FilesIn(dir string) Files {
	return Files{
		CACert: filepath.Join(dir, "ca.pem"),
		CAKey:  filepath.Join(dir, "ca-key.pem"),
		Cert:   filepath.Join(dir, "server.pem"),
		Key:    filepath.Join(dir, "server-key.pem"),
	}
}

// Bundle is a loaded CA and server certificate.
type Bundle struct {
	CA    *x509.Certificate
	CAKey *rsa.PrivateKey // nil when the CA key is kept elsewhere
	TLS   tls.Certificate // leaf + CA chain
}

// Fingerprint returns the hex SHA-256 of a certificate's DER, the value
// iPXE's trusted-root slot and the agent's bootpilot.ca= hold.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// CAPEM returns the CA certificate as PEM.
func (b *Bundle) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.CA.Raw})
}

// Ensure loads the CA and server certificate from f, creating whatever is
// missing: a self-made CA on first start, and a server certificate whose SANs
// cover hosts (IPs or DNS names) plus localhost and 127.0.0.1. A server
// certificate that no longer covers hosts, or expires within 30 days, is
// re-issued from the CA. now is backdated one day for notBefore, because
// booting hosts often have wrong clocks.
func Ensure(f Files, hosts []string, now time.Time) (*Bundle, error) {
	hosts = append([]string{"localhost", "127.0.0.1"}, hosts...)
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)

	ca, caKey, err := loadPair(f.CACert, f.CAKey)
	if errors.Is(err, os.ErrNotExist) {
		ca, caKey, err = newCA(now)
		if err == nil {
			err = writePair(f.CACert, f.CAKey, ca, caKey)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pki: CA: %w", err)
	}
	leaf, key, err := loadPair(f.Cert, f.Key)
	if err == nil && (!covers(leaf, hosts) || now.Add(30*24*time.Hour).After(leaf.NotAfter) || leaf.CheckSignatureFrom(ca) != nil) {
		err = os.ErrNotExist
	}
	if errors.Is(err, os.ErrNotExist) {
		if caKey == nil {
			return nil, errors.New("pki: server certificate missing or stale, and no CA key to issue one")
		}
		leaf, key, err = newLeaf(ca, caKey, hosts, now)
		if err == nil {
			err = writePair(f.Cert, f.Key, leaf, key)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	return &Bundle{CA: ca, CAKey: caKey, TLS: tls.Certificate{
		Certificate: [][]byte{leaf.Raw, ca.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}}, nil
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

func newCA(now time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "bootpilot CA", Organization: []string{"bootpilot"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

// IssueServer issues an RSA-2048 server certificate for hosts from the CA.
func (b *Bundle) IssueServer(hosts []string, now time.Time) (tls.Certificate, error) {
	leaf, key, err := newLeaf(b.CA, b.CAKey, hosts, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, b.CA.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func newLeaf(ca *x509.Certificate, caKey *rsa.PrivateKey, hosts []string, now time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"bootpilot"}},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(397 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func loadPair(certFile, keyFile string) (*x509.Certificate, *rsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	c, err := ParseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if errors.Is(err, os.ErrNotExist) && c.IsCA {
		return c, nil, nil // an external CA: we can serve but not issue
	}
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM block", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		if k1, err1 := x509.ParsePKCS1PrivateKey(blk.Bytes); err1 == nil {
			return c, k1, nil
		}
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not an RSA key (iPXE accepts RSA only)", keyFile)
	}
	return c, rk, nil
}

// ParseCert parses the first PEM certificate in b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func writePair(certFile, keyFile string, c *x509.Certificate, k *rsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
}

func writeAtomic(name string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
