package redfish

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"
)

// SecureBootState is what a BMC says about UEFI Secure Boot.
type SecureBootState struct {
	Enabled     bool   // SecureBootEnable: enabled at the next boot
	CurrentBoot string // SecureBootCurrentBoot: "Enabled", "Disabled", "" when not said
	Mode        string // SecureBootMode: "SetupMode", "UserMode", "AuditMode", "DeployedMode", ""
	Databases   bool   // the BMC has SecureBootDatabases (db enrolment possible)
	DB          []Cert // certificates in db; nil when !Databases
}

// Cert is a certificate in a Secure Boot database.
type Cert struct {
	Subject  string // "CN=Microsoft Corporation UEFI CA 2011,O=Microsoft Corporation,…"
	Issuer   string // "CN=Microsoft Corporation Third Party Marketplace Root,…"
	SHA256   string // lower-case hex SHA-256 of the DER; "" when the BMC gives neither the certificate nor a SHA-256 fingerprint
	NotAfter time.Time
}

// secureBootJSON is the part of a SecureBoot resource (v1.1) we read.
type secureBootJSON struct {
	SecureBootEnable      bool
	SecureBootCurrentBoot string
	SecureBootMode        string
	SecureBootDatabases   odataID
}

// certJSON is the part of a Certificate resource we read. Subject and
// Issuer are Redfish Identifier objects, used only when there is no
// CertificateString.
type certJSON struct {
	ID                       string `json:"@odata.id"`
	CertificateString        string
	CertificateType          string
	Fingerprint              string
	FingerprintHashAlgorithm string
	ValidNotAfter            string
	Subject, Issuer          map[string]any
}

// readSecureBoot finds the system's SecureBoot resource and reads it. It
// fails with an *Error wrapping ErrUnsupported when there is none.
func (c *Client) readSecureBoot(ctx context.Context, step string) (string, secureBootJSON, error) {
	var sb secureBootJSON
	b, err := c.getJSON(ctx, step, c.sys)
	if err != nil {
		return "", sb, err
	}
	var s struct{ SecureBoot odataID }
	json.Unmarshal(b, &s)
	if s.SecureBoot.ID == "" {
		return "", sb, &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: no SecureBoot resource", ErrUnsupported)}
	}
	b, err = c.getJSON(ctx, step, s.SecureBoot.ID)
	if err != nil {
		return "", sb, err
	}
	if err := json.Unmarshal(b, &sb); err != nil {
		return "", sb, c.fail(step, fmt.Errorf("decode %s: %w", s.SecureBoot.ID, err))
	}
	return s.SecureBoot.ID, sb, nil
}

// dbCertificates returns the @odata.id of the db database's Certificates
// collection. It fails with an *Error wrapping ErrUnsupported naming what
// the BMC lacks: SecureBootDatabases, a db database, or its Certificates.
func (c *Client) dbCertificates(ctx context.Context, step string, sb secureBootJSON) (string, error) {
	missing := func(what string) error {
		return &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: %s (Redfish SecureBoot v1.1 db enrolment)", ErrUnsupported, what)}
	}
	if sb.SecureBootDatabases.ID == "" {
		return "", missing("no SecureBootDatabases")
	}
	ids, err := c.members(ctx, step, sb.SecureBootDatabases.ID)
	if err != nil {
		return "", err
	}
	// Members are named by DatabaseId on every BMC seen; read the one
	// called db first, then the others.
	for i, id := range ids {
		if path.Base(id) == "db" {
			ids[0], ids[i] = ids[i], ids[0]
			break
		}
	}
	for _, id := range ids {
		b, err := c.getJSON(ctx, step, id)
		if err != nil {
			return "", err
		}
		var d struct {
			DatabaseID   string `json:"DatabaseId"`
			Certificates odataID
		}
		json.Unmarshal(b, &d)
		if d.DatabaseID != "db" {
			continue
		}
		if d.Certificates.ID == "" {
			return "", missing("SecureBootDatabases/db has no Certificates collection")
		}
		return d.Certificates.ID, nil
	}
	return "", missing("SecureBootDatabases has no db")
}

// listCerts reads every certificate of a CertificateCollection.
func (c *Client) listCerts(ctx context.Context, step, col string) ([]Cert, error) {
	ids, err := c.members(ctx, step, col)
	if err != nil {
		return nil, err
	}
	certs := []Cert{}
	for _, id := range ids {
		b, err := c.getJSON(ctx, step, id)
		if err != nil {
			return nil, err
		}
		var cj certJSON
		if err := json.Unmarshal(b, &cj); err != nil {
			return nil, c.fail(step, fmt.Errorf("decode %s: %w", id, err))
		}
		certs = append(certs, cj.cert())
	}
	return certs, nil
}

// cert describes cj: from its CertificateString when it parses, else from
// the Fingerprint (when SHA-256), Subject, Issuer and ValidNotAfter
// properties.
func (cj certJSON) cert() Cert {
	if blk, _ := pem.Decode([]byte(cj.CertificateString)); blk != nil {
		if x, err := x509.ParseCertificate(blk.Bytes); err == nil {
			return certOf(x)
		}
	}
	var ct Cert
	switch strings.ToUpper(strings.NewReplacer("_", "", "-", "").Replace(cj.FingerprintHashAlgorithm)) {
	case "TPMALGSHA256", "SHA256":
		ct.SHA256 = strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(cj.Fingerprint))
	}
	ct.Subject, ct.Issuer = identifier(cj.Subject), identifier(cj.Issuer)
	ct.NotAfter, _ = time.Parse(time.RFC3339, cj.ValidNotAfter)
	return ct
}

// certOf describes x.
func certOf(x *x509.Certificate) Cert {
	sum := sha256.Sum256(x.Raw)
	return Cert{Subject: x.Subject.String(), Issuer: x.Issuer.String(), SHA256: hex.EncodeToString(sum[:]), NotAfter: x.NotAfter}
}

// identifier renders a Redfish Identifier object ({"CommonName": …,
// "Organization": …}) like pkix.Name.String does.
func identifier(m map[string]any) string {
	var parts []string
	for _, f := range []struct{ key, attr string }{
		{"CommonName", "CN"}, {"OrganizationalUnit", "OU"}, {"Organization", "O"},
		{"City", "L"}, {"State", "ST"}, {"Country", "C"},
	} {
		if s, _ := m[f.key].(string); s != "" {
			parts = append(parts, f.attr+"="+s)
		}
	}
	return strings.Join(parts, ",")
}

// SecureBootState reads the system's Secure Boot state and, when the BMC
// has SecureBootDatabases with a db certificate collection, the
// certificates in db. It returns an *Error wrapping ErrUnsupported when the
// system has no SecureBoot resource.
func (c *Client) SecureBootState(ctx context.Context) (SecureBootState, error) {
	const step = "read secure boot"
	_, sb, err := c.readSecureBoot(ctx, step)
	if err != nil {
		return SecureBootState{}, err
	}
	st := SecureBootState{Enabled: sb.SecureBootEnable, CurrentBoot: sb.SecureBootCurrentBoot, Mode: sb.SecureBootMode}
	if sb.SecureBootDatabases.ID == "" {
		return st, nil
	}
	col, err := c.dbCertificates(ctx, step, sb)
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			return st, nil
		}
		return SecureBootState{}, err
	}
	st.DB, err = c.listCerts(ctx, step, col)
	if err != nil {
		return SecureBootState{}, err
	}
	st.Databases = true
	return st, nil
}

// EnrollDB adds cert to db unless a certificate with the same SHA-256 is
// there (added=false). The firmware applies the change at the host's next
// restart. A BMC without SecureBootDatabases (or without db/Certificates)
// → *Error wrapping ErrUnsupported whose message names what is missing
// ("SecureBootDatabases").
func (c *Client) EnrollDB(ctx context.Context, cert *x509.Certificate) (added bool, err error) {
	const step = "enroll db certificate"
	if cert == nil || len(cert.Raw) == 0 {
		return false, &Error{BMC: c.bmc, Step: step, Err: fmt.Errorf("%w: no certificate", ErrInvalid)}
	}
	_, sb, err := c.readSecureBoot(ctx, step)
	if err != nil {
		return false, err
	}
	col, err := c.dbCertificates(ctx, step, sb)
	if err != nil {
		return false, err
	}
	want := certOf(cert)
	has := func() (bool, error) {
		certs, err := c.listCerts(ctx, step, col)
		for _, x := range certs {
			if x.SHA256 == want.SHA256 {
				return true, nil
			}
		}
		return false, err
	}
	if ok, err := has(); ok || err != nil {
		return false, err
	}
	payload := map[string]string{
		"CertificateString": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		"CertificateType":   "PEM",
	}
	if err := c.send(ctx, step, http.MethodPost, col, payload); err != nil {
		return false, err
	}
	ok, err := has()
	if err != nil {
		return false, err
	}
	if !ok {
		// Accepted, but some BMCs list a pending certificate only after
		// the restart that applies it.
		c.log.Warn("redfish: db certificate accepted but not listed yet", "bmc", c.bmc, "sha256", want.SHA256)
	}
	return true, nil
}

// SetSecureBoot PATCHes SecureBootEnable, which the firmware applies at
// the host's next restart, and reads it back (ErrVerify on a mismatch). It
// returns an *Error wrapping ErrUnsupported when the system has no
// SecureBoot resource.
func (c *Client) SetSecureBoot(ctx context.Context, enable bool) error {
	const step = "set secure boot"
	id, _, err := c.readSecureBoot(ctx, step)
	if err != nil {
		return err
	}
	if err := c.send(ctx, step, http.MethodPatch, id, map[string]bool{"SecureBootEnable": enable}); err != nil {
		return err
	}
	_, sb, err := c.readSecureBoot(ctx, step)
	if err != nil {
		return err
	}
	if sb.SecureBootEnable != enable {
		return &Error{BMC: c.bmc, Step: step, Message: fmt.Sprintf("SecureBootEnable is %t after the PATCH", sb.SecureBootEnable), Err: ErrVerify}
	}
	return nil
}
