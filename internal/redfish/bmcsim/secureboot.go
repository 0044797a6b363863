package bmcsim

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// SecureBootChange is what the firmware applies at a power cycle: the
// Secure Boot changes made through the BMC since the last one.
type SecureBootChange struct {
	Restart bool     // the system was on (a restart), not powered on from off
	Enable  bool     // SecureBootEnable for this boot
	DB      [][]byte // db's certificates (DER) after the change, in order
	Added   [][]byte // certificates added to db since the last power cycle
	Removed [][]byte // certificates removed from db since the last power cycle
}

// Secure Boot databases in SecureBootDatabases, in the order the
// collection lists them. The *Default ones are read-only.
var sbDatabases = []string{"PK", "KEK", "db", "dbx", "PKDefault", "KEKDefault", "dbDefault", "dbxDefault"}

var resetKeysTypes = []string{"ResetAllKeysToDefault", "DeleteAllKeys", "DeletePK"}

// sbCert is one certificate in a database.
type sbCert struct {
	id  string
	der []byte
}

// sbDB is one UEFI Secure Boot database.
type sbDB struct {
	certs []sbCert
	next  int // last certificate id
}

func (d *sbDB) add(der []byte) string {
	d.next++
	id := fmt.Sprint(d.next)
	d.certs = append(d.certs, sbCert{id: id, der: der})
	return id
}

func (d *sbDB) ders() [][]byte {
	var out [][]byte
	for _, c := range d.certs {
		out = append(out, c.der)
	}
	return out
}

// secureBoot is the Secure Boot state: what the BMC lists (pending
// changes included) and what the firmware applied at the last power cycle.
type secureBoot struct {
	enable    bool // SecureBootEnable: pending, applies at the next power cycle
	current   bool // SecureBootCurrentBoot
	pkDeleted bool // the PK was deleted: SetupMode
	dbs       map[string]*sbDB
	applied   [][]byte // db as the firmware has it
	applyErr  string   // the last OnSecureBoot error
}

func newSecureBoot(cfg Config) secureBoot {
	sb := secureBoot{enable: cfg.SecureBoot, current: cfg.SecureBoot, dbs: map[string]*sbDB{}}
	for _, name := range sbDatabases {
		sb.dbs[name] = &sbDB{}
	}
	for _, der := range cfg.SecureBootDB {
		sb.dbs["db"].add(der)
		sb.dbs["dbDefault"].add(der)
	}
	sb.applied = sb.dbs["db"].ders()
	return sb
}

// secureBootChangeLocked returns the pending change, or nil when there is
// none. b.mu must be held.
func (b *BMC) secureBootChangeLocked(restart bool) *SecureBootChange {
	db := b.sb.dbs["db"].ders()
	c := &SecureBootChange{Restart: restart, Enable: b.sb.enable, DB: db}
	has := func(set [][]byte, der []byte) bool {
		return slices.ContainsFunc(set, func(x []byte) bool { return bytes.Equal(x, der) })
	}
	for _, der := range db {
		if !has(b.sb.applied, der) {
			c.Added = append(c.Added, der)
		}
	}
	for _, der := range b.sb.applied {
		if !has(db, der) {
			c.Removed = append(c.Removed, der)
		}
	}
	if c.Enable == b.sb.current && len(c.Added) == 0 && len(c.Removed) == 0 {
		return nil
	}
	return c
}

// applySecureBoot runs OnSecureBoot for a power cycle's change; on success
// the change is the firmware's, else it stays pending.
func (b *BMC) applySecureBoot(c *SecureBootChange) {
	if c == nil {
		return
	}
	var err error
	if b.cfg.OnSecureBoot != nil {
		err = b.cfg.OnSecureBoot(*c)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.sb.applyErr = err.Error()
		return
	}
	b.sb.applyErr = ""
	b.sb.current, b.sb.applied = c.Enable, c.DB
}

// routeSecureBoot serves Systems/1/SecureBoot and below; nil, false when p
// is not one of its resources.
func (b *BMC) routeSecureBoot(w http.ResponseWriter, r *http.Request, p string) (*apiError, bool) {
	base := root + "/Systems/1/SecureBoot"
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case p == base && get:
		writeJSON(w, 200, b.secureBootJSON())
		return nil, true
	case p == base && r.Method == http.MethodPatch:
		return b.patchSecureBoot(w, r), true
	case p == base+"/Actions/SecureBoot.ResetKeys" && r.Method == http.MethodPost:
		return b.resetKeys(w, r, sbDatabases[:4]), true
	}
	dbsPath := base + "/SecureBootDatabases"
	if !strings.HasPrefix(p, dbsPath) {
		return nil, false
	}
	if b.cfg.NoSecureBootDatabases {
		return errf(404, "Base.1.8.ResourceMissingAtURI", "no resource at %s", p), true
	}
	if p == dbsPath && get {
		var ids []string
		for _, name := range sbDatabases {
			ids = append(ids, dbsPath+"/"+name)
		}
		writeJSON(w, 200, collection(p, "#SecureBootDatabaseCollection.SecureBootDatabaseCollection", ids...))
		return nil, true
	}
	rest := strings.Split(strings.TrimPrefix(p, dbsPath+"/"), "/")
	name := rest[0]
	if !slices.Contains(sbDatabases, name) {
		return nil, false
	}
	dbPath := dbsPath + "/" + name
	readOnly := strings.HasSuffix(name, "Default")
	switch {
	case len(rest) == 1 && get:
		writeJSON(w, 200, b.databaseJSON(dbPath, name))
		return nil, true
	case len(rest) == 3 && rest[1] == "Actions" && rest[2] == "SecureBootDatabase.ResetKeys" && r.Method == http.MethodPost:
		if readOnly {
			return errf(400, "Base.1.8.ActionNotSupported", "the default database %s cannot be reset", name), true
		}
		return b.resetKeys(w, r, []string{name}), true
	case len(rest) == 2 && rest[1] == "Signatures" && get:
		writeJSON(w, 200, collection(p, "#SignatureCollection.SignatureCollection"))
		return nil, true
	case len(rest) == 2 && rest[1] == "Certificates" && get:
		b.mu.Lock()
		var ids []string
		for _, c := range b.sb.dbs[name].certs {
			ids = append(ids, p+"/"+c.id)
		}
		b.mu.Unlock()
		writeJSON(w, 200, collection(p, "#CertificateCollection.CertificateCollection", ids...))
		return nil, true
	case len(rest) == 2 && rest[1] == "Certificates" && r.Method == http.MethodPost:
		if readOnly {
			return errf(405, "Base.1.8.OperationNotAllowed", "the default database %s is read-only", name), true
		}
		return b.addCertificate(w, r, p, name), true
	case len(rest) == 3 && rest[1] == "Certificates":
		return b.certificate(w, r, p, name, rest[2], readOnly), true
	}
	return nil, false
}

func (b *BMC) secureBootJSON() map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := root + "/Systems/1/SecureBoot"
	m := odata(p, "#SecureBoot.v1_1_0.SecureBoot")
	m["Id"], m["Name"] = "SecureBoot", "UEFI Secure Boot"
	m["SecureBootEnable"] = b.sb.enable
	m["SecureBootCurrentBoot"] = map[bool]string{true: "Enabled", false: "Disabled"}[b.sb.current]
	m["SecureBootMode"] = map[bool]string{true: "SetupMode", false: "DeployedMode"}[b.sb.pkDeleted]
	if !b.cfg.NoSecureBootDatabases {
		m["SecureBootDatabases"] = link(p + "/SecureBootDatabases")
	}
	m["Actions"] = map[string]any{"#SecureBoot.ResetKeys": map[string]any{
		"target":                                p + "/Actions/SecureBoot.ResetKeys",
		"ResetKeysType@Redfish.AllowableValues": resetKeysTypes,
	}}
	return m
}

func (b *BMC) databaseJSON(p, name string) map[string]any {
	m := odata(p, "#SecureBootDatabase.v1_0_3.SecureBootDatabase")
	m["Id"], m["Name"], m["DatabaseId"] = name, name+" database", name
	m["Certificates"] = link(p + "/Certificates")
	m["Signatures"] = link(p + "/Signatures")
	if !strings.HasSuffix(name, "Default") {
		m["Actions"] = map[string]any{"#SecureBootDatabase.ResetKeys": map[string]any{
			"target":                                p + "/Actions/SecureBootDatabase.ResetKeys",
			"ResetKeysType@Redfish.AllowableValues": resetKeysTypes[:2],
		}}
	}
	return m
}

func (b *BMC) patchSecureBoot(w http.ResponseWriter, r *http.Request) *apiError {
	var in map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return errf(400, "Base.1.8.MalformedJSON", "body must be a JSON object")
	}
	var enable *bool
	for k, v := range in {
		switch k {
		case "SecureBootEnable":
			var e bool
			if json.Unmarshal(v, &e) != nil {
				return errf(400, "Base.1.8.PropertyValueTypeError", "the value %s for SecureBootEnable is not a boolean", v)
			}
			enable = &e
		case "SecureBootCurrentBoot", "SecureBootMode", "SecureBootDatabases":
			return errf(400, "Base.1.8.PropertyNotWritable", "the property %s is read-only", k)
		default:
			return errf(400, "Base.1.8.PropertyUnknown", "the property %s is not known", k)
		}
	}
	if enable == nil {
		return errf(400, "Base.1.8.PropertyMissing", "PATCH must set SecureBootEnable")
	}
	b.mu.Lock()
	b.sb.enable = *enable
	b.mu.Unlock()
	writeJSON(w, 200, b.secureBootJSON())
	return nil
}

// resetKeys runs a ResetKeys action on the named databases.
func (b *BMC) resetKeys(w http.ResponseWriter, r *http.Request, names []string) *apiError {
	var in struct{ ResetKeysType string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ResetKeysType == "" {
		return errf(400, "Base.1.8.ActionParameterMissing", "the action ResetKeys requires the parameter ResetKeysType")
	}
	allowed := resetKeysTypes
	if len(names) == 1 {
		allowed = resetKeysTypes[:2]
	}
	if !slices.Contains(allowed, in.ResetKeysType) {
		return errf(400, "Base.1.8.ActionParameterValueNotInList", "the value %q for ResetKeysType is not in the list of acceptable values", in.ResetKeysType)
	}
	return b.run(w, nil, func() *apiError {
		b.mu.Lock()
		defer b.mu.Unlock()
		if in.ResetKeysType == "DeletePK" {
			names = []string{"PK"}
		}
		for _, name := range names {
			d := b.sb.dbs[name]
			d.certs = nil
			if in.ResetKeysType == "ResetAllKeysToDefault" {
				for _, der := range b.sb.dbs[name+"Default"].ders() {
					d.add(der)
				}
			}
			if name == "PK" {
				b.sb.pkDeleted = in.ResetKeysType != "ResetAllKeysToDefault"
			}
		}
		return nil
	})
}

// addCertificate POSTs a PEM certificate to a database's Certificates.
func (b *BMC) addCertificate(w http.ResponseWriter, r *http.Request, col, name string) *apiError {
	var in struct{ CertificateString, CertificateType, UefiSignatureOwner string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return errf(400, "Base.1.8.MalformedJSON", "body must be a JSON object")
	}
	if in.CertificateString == "" || in.CertificateType == "" {
		return errf(400, "Base.1.8.PropertyMissing", "a certificate needs CertificateString and CertificateType")
	}
	if in.CertificateType != "PEM" {
		return errf(400, "Base.1.8.PropertyValueNotInList", "the value %q for CertificateType is not in the list of acceptable values (PEM)", in.CertificateType)
	}
	blk, rest := pem.Decode([]byte(in.CertificateString))
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return errf(400, "Base.1.8.PropertyValueFormatError", "CertificateString must hold one PEM CERTIFICATE")
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return errf(400, "Base.1.8.PropertyValueFormatError", "CertificateString does not parse: %v", err)
	}
	var id string
	add := func() *apiError {
		b.mu.Lock()
		defer b.mu.Unlock()
		d := b.sb.dbs[name]
		if slices.ContainsFunc(d.certs, func(c sbCert) bool { return bytes.Equal(c.der, blk.Bytes) }) {
			return errf(400, "Base.1.8.ResourceAlreadyExists", "the certificate is already in %s", name)
		}
		id = d.add(blk.Bytes)
		return nil
	}
	if b.cfg.AsyncTasks {
		return b.run(w, nil, add)
	}
	if e := add(); e != nil {
		return e
	}
	w.Header().Set("Location", col+"/"+id)
	writeJSON(w, http.StatusCreated, b.certJSON(col+"/"+id, id, blk.Bytes))
	return nil
}

// certificate serves GET and DELETE of one certificate.
func (b *BMC) certificate(w http.ResponseWriter, r *http.Request, p, name, id string, readOnly bool) *apiError {
	b.mu.Lock()
	d := b.sb.dbs[name]
	i := slices.IndexFunc(d.certs, func(c sbCert) bool { return c.id == id })
	var der []byte
	if i >= 0 {
		der = d.certs[i].der
		if r.Method == http.MethodDelete && !readOnly {
			d.certs = slices.Delete(d.certs, i, i+1)
		}
	}
	b.mu.Unlock()
	switch {
	case i < 0:
		return errf(404, "Base.1.8.ResourceMissingAtURI", "no certificate %s in %s", id, name)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		writeJSON(w, 200, b.certJSON(p, id, der))
		return nil
	case r.Method == http.MethodDelete && !readOnly:
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errf(405, "Base.1.8.OperationNotAllowed", "%s not allowed on %s", r.Method, p)
}

// certJSON renders a Certificate resource. With the NoCertificateString
// quirk it carries only the fingerprint and the identifiers.
func (b *BMC) certJSON(p, id string, der []byte) map[string]any {
	m := odata(p, "#Certificate.v1_8_0.Certificate")
	m["Id"], m["Name"] = id, "Certificate "+id
	sum := sha256.Sum256(der)
	var fp []string
	for _, x := range sum {
		fp = append(fp, fmt.Sprintf("%02X", x))
	}
	m["Fingerprint"], m["FingerprintHashAlgorithm"] = strings.Join(fp, ":"), "TPM_ALG_SHA256"
	m["UefiSignatureOwner"] = "b0077b11-0000-4000-8000-000000000001"
	if !b.cfg.NoCertificateString {
		m["CertificateString"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		m["CertificateType"] = "PEM"
	}
	if x, err := x509.ParseCertificate(der); err == nil {
		m["Subject"], m["Issuer"] = identifier(x.Subject), identifier(x.Issuer)
		m["ValidNotBefore"] = x.NotBefore.UTC().Format(time.RFC3339)
		m["ValidNotAfter"] = x.NotAfter.UTC().Format(time.RFC3339)
		m["SerialNumber"] = fmt.Sprintf("%X", x.SerialNumber)
	}
	return m
}

// identifier renders a name as a Redfish Identifier object.
func identifier(n pkix.Name) map[string]any {
	m := map[string]any{"CommonName": n.CommonName}
	for k, v := range map[string][]string{"Organization": n.Organization, "OrganizationalUnit": n.OrganizationalUnit,
		"City": n.Locality, "State": n.Province, "Country": n.Country} {
		if len(v) > 0 {
			m[k] = v[0]
		}
	}
	return m
}
