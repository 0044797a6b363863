package imagebuilder_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/host"
)

// testPKI is a CA, a Secure Boot db signer and a code-signing signer.
type testPKI struct {
	CA           *x509.Certificate
	CAKey        *rsa.PrivateKey
	DB, Code     *imagebuilder.Signer
	CAPEM, DBPEM []byte
	DBKeyPEM     []byte
	CodePEM      []byte
	CodeKeyPEM   []byte
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func mustPKI(tb testing.TB) testPKI {
	tb.Helper()
	pkiOnce.Do(func() {
		caKey := mustKey(tb)
		caTmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bootpilot test CA"},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		ca, _ := x509.ParseCertificate(caDER)
		dbKey := mustKey(tb)
		dbTmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bootpilot test db"},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		}
		dbDER, err := x509.CreateCertificate(rand.Reader, dbTmpl, dbTmpl, &dbKey.PublicKey, dbKey)
		if err != nil {
			tb.Fatal(err)
		}
		codeKey := mustKey(tb)
		codeTmpl := &x509.Certificate{
			SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "bootpilot test script signer"},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		}
		codeDER, err := x509.CreateCertificate(rand.Reader, codeTmpl, ca, &codeKey.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		pki = testPKI{CA: ca, CAKey: caKey,
			CAPEM:      pemBlock("CERTIFICATE", caDER),
			DBPEM:      pemBlock("CERTIFICATE", dbDER),
			DBKeyPEM:   pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(dbKey)),
			CodePEM:    pemBlock("CERTIFICATE", codeDER),
			CodeKeyPEM: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(codeKey)),
		}
		if pki.DB, err = imagebuilder.LoadSigner(pki.DBKeyPEM, pki.DBPEM); err != nil {
			tb.Fatal(err)
		}
		if pki.Code, err = imagebuilder.LoadSigner(pki.CodeKeyPEM, pki.CodePEM); err != nil {
			tb.Fatal(err)
		}
	})
	if pki.CA == nil {
		tb.Fatal("test PKI setup failed")
	}
	return pki
}

func mustKey(tb testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func testHost() host.Host {
	return host.Host{Name: "node01", MACs: []string{"52:54:00:12:34:56"}, IPv4: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}
}

const testToken = "00112233445566778899aabbccddeeff"

// writeFile writes b to dir/name and returns the path.
func writeFile(tb testing.TB, dir, name string, b []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// run runs a command and returns its combined output, failing tb on error.
func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// runFail runs a command that is expected to fail and returns its output
// and error.
func runFail(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
