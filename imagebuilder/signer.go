package imagebuilder

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/foxboron/go-uefi/authenticode"
	uefipkcs7 "github.com/foxboron/go-uefi/pkcs7"
	"github.com/smallstep/pkcs7"
)

// Signer is a private key with its certificate (and any intermediates).
type Signer struct {
	Key   crypto.Signer
	Cert  *x509.Certificate
	Chain []*x509.Certificate // intermediates after Cert, may be empty
}

// LoadSigner parses a PEM private key (PKCS#1, PKCS#8 or SEC 1) and a PEM
// certificate file whose first certificate belongs to the key; further
// certificates are kept as the chain.
func LoadSigner(keyPEM, certPEM []byte) (*Signer, error) {
	var key crypto.Signer
	for rest := keyPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
			key = k
		} else if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				key = s
			}
		} else if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
			key = k
		}
		if key != nil {
			break
		}
	}
	if key == nil {
		return nil, fmt.Errorf("imagebuilder: no PEM private key found")
	}
	var certs []*x509.Certificate
	for rest := certPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("imagebuilder: parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("imagebuilder: no PEM certificate found")
	}
	if !samePublicKey(key.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("imagebuilder: the private key does not belong to certificate %q", certs[0].Subject)
	}
	return &Signer{Key: key, Cert: certs[0], Chain: certs[1:]}, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k.(eq).Equal(b)
	}
	return false
}

// Fingerprint returns the hex SHA-256 of the signer's certificate.
func (s *Signer) Fingerprint() string { return CertFingerprint(s.Cert) }

// CertFingerprint returns the hex SHA-256 of a certificate's DER bytes.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SignPE Authenticode-signs an unsigned PE/COFF binary with SHA-256 and no
// signed attributes, so the result is deterministic; an already signed
// binary is refused.
func (s *Signer) SignPE(pe []byte) ([]byte, error) {
	bin, err := authenticode.Parse(bytes.NewReader(pe))
	if err != nil {
		return nil, fmt.Errorf("imagebuilder: parse EFI binary: %w", err)
	}
	if sigs, err := bin.Signatures(); err == nil && len(sigs) > 0 {
		return nil, fmt.Errorf("imagebuilder: the EFI binary is already signed; give an unsigned one")
	}
	if _, err := bin.Sign(s.Key, s.Cert, uefipkcs7.NoAttr()); err != nil {
		return nil, fmt.Errorf("imagebuilder: authenticode sign: %w", err)
	}
	return bin.Bytes(), nil
}

// signCMS returns a detached DER CMS signature of data without signed
// attributes (what `openssl cms -sign -binary -noattr` makes), carrying the
// signer's certificate, its chain and extra certificates.
func signCMS(s *Signer, data []byte, extra ...*x509.Certificate) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		return nil, fmt.Errorf("imagebuilder: cms: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.SignWithoutAttr(s.Cert, s.Key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("imagebuilder: cms sign: %w", err)
	}
	for _, c := range append(append([]*x509.Certificate(nil), s.Chain...), extra...) {
		sd.AddCertificate(c)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("imagebuilder: cms finish: %w", err)
	}
	return der, nil
}
