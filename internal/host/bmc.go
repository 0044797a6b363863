package host

import "time"

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
}

// BMCInfo is what the API shows of a host's BMC: never the password.
type BMCInfo struct {
	Host          string    `json:"host"`                 // "node01"
	URL           string    `json:"url"`                  // "https://10.0.0.10"
	Username      string    `json:"username"`             // "admin"
	HasPassword   bool      `json:"has_password"`         // a sealed password is stored
	HasCA         bool      `json:"has_ca"`               // a CA bundle pins the BMC's certificate
	Insecure      bool      `json:"insecure"`             // TLS verification is off
	Session       bool      `json:"session"`              // Redfish session auth
	MediaInserted bool      `json:"media_inserted"`       // our ISO is in the virtual CD
	MediaSince    time.Time `json:"media_since,omitzero"` // when it was inserted
	UpdatedAt     time.Time `json:"updated_at"`
}
