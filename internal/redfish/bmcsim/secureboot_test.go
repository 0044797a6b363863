package bmcsim_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/bootpilot/bootpilot/internal/redfish/bmcsim"
)

func certDER(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemBody(der []byte) string {
	b, _ := json.Marshal(map[string]string{"CertificateType": "PEM",
		"CertificateString": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	return string(b)
}

// TestSecureBootProtocol checks the SecureBoot resources against the
// SecureBoot v1.1, SecureBootDatabase and Certificate schemas.
func TestSecureBootProtocol(t *testing.T) {
	const sb = "/redfish/v1/Systems/1/SecureBoot"
	const dbs = sb + "/SecureBootDatabases"
	ms := certDER(t, "Microsoft Corporation UEFI CA 2011")
	b := bmcsim.New(bmcsim.Config{Username: "u", Password: "p", SecureBoot: true, SecureBootDB: [][]byte{ms}})
	auth := map[string]string{"Authorization": "Basic dTpw"}

	r, m := do(t, b, "GET", sb, "", auth)
	if r.StatusCode != 200 || m["SecureBootEnable"] != true || m["SecureBootCurrentBoot"] != "Enabled" ||
		m["SecureBootMode"] != "DeployedMode" || fmt.Sprint(m["SecureBootDatabases"]) != "map[@odata.id:"+dbs+"]" {
		t.Fatalf("GET SecureBoot = %d %v", r.StatusCode, m)
	}
	_, m = do(t, b, "GET", dbs, "", auth)
	if n, _ := m["Members@odata.count"].(float64); n != 8 || !strings.Contains(fmt.Sprint(m["Members"]), dbs+"/db]") {
		t.Fatalf("SecureBootDatabases = %v, want PK, KEK, db, dbx and the four defaults", m)
	}
	_, m = do(t, b, "GET", dbs+"/db", "", auth)
	if m["DatabaseId"] != "db" || m["Id"] != "db" || !strings.Contains(fmt.Sprint(m["Actions"]), "SecureBootDatabase.ResetKeys") {
		t.Fatalf("db = %v, want DatabaseId db with ResetKeys", m)
	}
	_, m = do(t, b, "GET", dbs+"/db/Certificates/1", "", auth)
	if m["CertificateType"] != "PEM" || !strings.Contains(fmt.Sprint(m["CertificateString"]), "BEGIN CERTIFICATE") ||
		m["FingerprintHashAlgorithm"] != "TPM_ALG_SHA256" || fmt.Sprint(m["Subject"]) != "map[CommonName:Microsoft Corporation UEFI CA 2011]" ||
		m["ValidNotAfter"] == nil {
		t.Fatalf("db certificate 1 = %v", m)
	}

	ours := certDER(t, "bootpilot db")
	for _, c := range []struct {
		method, path, body string
		status             int
		id                 string
	}{
		{"POST", dbs + "/db/Certificates", `{"CertificateString":"x","CertificateType":"PKCS7"}`, 400, "PropertyValueNotInList"},
		{"POST", dbs + "/db/Certificates", `{"CertificateString":"x","CertificateType":"PEM"}`, 400, "PropertyValueFormatError"},
		{"POST", dbs + "/dbDefault/Certificates", pemBody(ours), 405, "OperationNotAllowed"},
		{"POST", dbs + "/db/Certificates", pemBody(ms), 400, "ResourceAlreadyExists"},
		{"POST", dbs + "/db/Certificates", pemBody(ours), 201, ""},
		{"PATCH", sb, `{"SecureBootMode":"SetupMode"}`, 400, "PropertyNotWritable"},
		{"PATCH", sb, `{"SecureBootEnable":"yes"}`, 400, "PropertyValueTypeError"},
		{"PATCH", sb, `{"SecureBootEnable":false}`, 200, ""},
		{"POST", dbs + "/db/Actions/SecureBootDatabase.ResetKeys", `{"ResetKeysType":"DeletePK"}`, 400, "ActionParameterValueNotInList"},
	} {
		r, m := do(t, b, c.method, c.path, c.body, auth)
		if r.StatusCode != c.status || !strings.Contains(fmt.Sprint(m), c.id) {
			t.Errorf("%s %s %s = %d %v, want %d %s", c.method, c.path, c.body, r.StatusCode, m, c.status, c.id)
		}
	}
	if s := b.State(); len(s.SecureBootDB) != 2 || len(s.SecureBootApplied) != 1 || s.SecureBootEnable || !s.SecureBootCurrent {
		t.Fatalf("state %+v: want 2 listed, 1 applied, disabled pending, enabled current", s)
	}
	if r, _ := do(t, b, "DELETE", dbs+"/db/Certificates/2", "", auth); r.StatusCode != 204 || len(b.State().SecureBootDB) != 1 {
		t.Errorf("DELETE db certificate 2 = %d, db %d; want 204, 1", r.StatusCode, len(b.State().SecureBootDB))
	}
	do(t, b, "POST", dbs+"/db/Actions/SecureBootDatabase.ResetKeys", `{"ResetKeysType":"DeleteAllKeys"}`, auth)
	if n := len(b.State().SecureBootDB); n != 0 {
		t.Errorf("after DeleteAllKeys db has %d, want 0", n)
	}
	do(t, b, "POST", dbs+"/db/Actions/SecureBootDatabase.ResetKeys", `{"ResetKeysType":"ResetAllKeysToDefault"}`, auth)
	if s := b.State(); len(s.SecureBootDB) != 1 || string(s.SecureBootDB[0]) != string(ms) {
		t.Errorf("after ResetAllKeysToDefault db = %d certificates, want the default one", len(s.SecureBootDB))
	}
	do(t, b, "POST", sb+"/Actions/SecureBoot.ResetKeys", `{"ResetKeysType":"DeletePK"}`, auth)
	if _, m := do(t, b, "GET", sb, "", auth); m["SecureBootMode"] != "SetupMode" {
		t.Errorf("after DeletePK mode %v, want SetupMode", m["SecureBootMode"])
	}

	old := bmcsim.New(bmcsim.Config{Username: "u", Password: "p", Quirks: bmcsim.Quirks{NoSecureBootDatabases: true}})
	if _, m := do(t, old, "GET", sb, "", auth); m["SecureBootDatabases"] != nil {
		t.Errorf("NoSecureBootDatabases: SecureBoot links %v", m["SecureBootDatabases"])
	}
	for _, method := range []string{"GET", "POST"} {
		if r, _ := do(t, old, method, dbs+"/db/Certificates", pemBody(ours), auth); r.StatusCode != 404 {
			t.Errorf("NoSecureBootDatabases: %s db/Certificates = %d, want 404", method, r.StatusCode)
		}
	}
}
