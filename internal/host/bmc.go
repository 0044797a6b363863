package host

import (
	"crypto/x509"
	"net/url"
	"time"
)

// BMCSettings is how an admin sets a host's BMC (PUT /api/v1/hosts/{name}/bmc).
// The password travels once, over HTTPS, and is stored only encrypted; an
// empty Password keeps the stored one.
type BMCSettings struct {
	URL      string `json:"url"`                // "https://10.0.0.10"
	Username string `json:"username"`           // "admin"
	Password string `json:"password,omitempty"` // never printed, logged or stored in clear
	CAPEM    string `json:"ca_pem,omitempty"`   // PEM CA bundle of the BMC's certificate
	Insecure bool   `json:"insecure,omitempty"` // skip TLS verification (audited)
	Session  bool   `json:"session,omitempty"`  // Redfish session instead of basic auth
	// InsecurePlaintext allows an http:// URL: the BMC then receives the
	// credentials (Basic or session login) in clear. Audited.
	InsecurePlaintext bool `json:"insecure_plaintext,omitempty"`
}

// BMCInfo is what the API shows of a host's BMC: never the password.
type BMCInfo struct {
	Host              string    `json:"host"`                 // "node01"
	URL               string    `json:"url"`                  // "https://10.0.0.10"
	Username          string    `json:"username"`             // "admin"
	HasPassword       bool      `json:"has_password"`         // a sealed password is stored
	HasCA             bool      `json:"has_ca"`               // a CA bundle pins the BMC's certificate
	Insecure          bool      `json:"insecure"`             // TLS verification is off
	InsecurePlaintext bool      `json:"insecure_plaintext"`   // http:// allowed: credentials travel in clear
	Session           bool      `json:"session"`              // Redfish session auth
	MediaInserted     bool      `json:"media_inserted"`       // our ISO is in the virtual CD
	MediaSince        time.Time `json:"media_since,omitzero"` // when it was inserted
	UpdatedAt         time.Time `json:"updated_at"`
}

// CheckBMCURL validates a BMC endpoint URL: absolute, no credentials, query
// or fragment, and https — http:// only with insecurePlaintext, because the
// BMC would receive its credentials in clear. It is the one place this rule
// lives: the API, the CLI and the Redfish client all call it.
func CheckBMCURL(field, raw string, insecurePlaintext bool) error {
	if err := CheckURL(field, raw); err != nil {
		return err
	}
	u, _ := url.Parse(raw) // CheckURL parsed it
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return Invalid(field, "must not carry a query or fragment")
	}
	if u.Scheme == "http" && !insecurePlaintext {
		return Invalid(field, "http:// would send the BMC credentials in clear: use https:// "+
			"(pin a private CA with ca_pem, CLI --bmc-ca-cert), or, on an isolated management network only, "+
			"set insecure_plaintext (CLI --insecure-plaintext), which is recorded in the audit log")
	}
	return nil
}

// Validate checks s before it is stored: the URL (CheckBMCURL), the user
// name, and TLS options that fit the URL's scheme. It does not check the
// password, which may be empty to keep the stored one.
func (s BMCSettings) Validate() error {
	if err := CheckBMCURL("url", s.URL, s.InsecurePlaintext); err != nil {
		return err
	}
	if s.Username == "" || len(s.Username) > 255 {
		return Invalid("username", "must be 1-255 characters")
	}
	if u, _ := url.Parse(s.URL); u.Scheme == "http" {
		switch {
		case s.Insecure:
			return Invalid("insecure", "applies to https:// only; an http:// URL has no TLS to verify")
		case s.CAPEM != "":
			return Invalid("ca_pem", "applies to https:// only; an http:// URL has no TLS to verify")
		}
	} else if s.InsecurePlaintext {
		return Invalid("insecure_plaintext", "applies to http:// URLs only; drop it for an https:// URL")
	}
	if s.CAPEM != "" {
		if s.Insecure {
			return Invalid("insecure", "contradicts ca_pem: give one or the other")
		}
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(s.CAPEM)) {
			return Invalid("ca_pem", "no PEM certificate found")
		}
	}
	return nil
}
