package host_test

import (
	"errors"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
)

func TestBMCSettingsValidate(t *testing.T) {
	ok := host.BMCSettings{URL: "https://10.0.0.10", Username: "admin"}
	tests := []struct {
		desc  string
		edit  func(*host.BMCSettings)
		field string // "" when valid
	}{
		{"https", func(*host.BMCSettings) {}, ""},
		{"https with port and path", func(s *host.BMCSettings) { s.URL = "https://10.0.0.10:8443/redfish/v1" }, ""},
		{"http refused", func(s *host.BMCSettings) { s.URL = "http://10.0.0.10" }, "url"},
		{"HTTP refused", func(s *host.BMCSettings) { s.URL = "HTTP://10.0.0.10" }, "url"},
		{"http with insecure_plaintext", func(s *host.BMCSettings) { s.URL, s.InsecurePlaintext = "http://10.0.0.10", true }, ""},
		{"insecure_plaintext on https", func(s *host.BMCSettings) { s.InsecurePlaintext = true }, "insecure_plaintext"},
		{"insecure on http", func(s *host.BMCSettings) { s.URL, s.InsecurePlaintext, s.Insecure = "http://10.0.0.10", true, true }, "insecure"},
		{"ca_pem on http", func(s *host.BMCSettings) { s.URL, s.InsecurePlaintext, s.CAPEM = "http://10.0.0.10", true, "x" }, "ca_pem"},
		{"ftp", func(s *host.BMCSettings) { s.URL = "ftp://10.0.0.10" }, "url"},
		{"credentials in url", func(s *host.BMCSettings) { s.URL = "https://admin:pw@10.0.0.10" }, "url"},
		{"query", func(s *host.BMCSettings) { s.URL = "https://10.0.0.10/?x=1" }, "url"},
		{"fragment", func(s *host.BMCSettings) { s.URL = "https://10.0.0.10/#x" }, "url"},
		{"no username", func(s *host.BMCSettings) { s.Username = "" }, "username"},
		{"ca_pem and insecure", func(s *host.BMCSettings) { s.CAPEM, s.Insecure = "any", true }, "insecure"},
		{"ca_pem without a certificate", func(s *host.BMCSettings) { s.CAPEM = "not pem" }, "ca_pem"},
	}
	for _, tt := range tests {
		s := ok
		tt.edit(&s)
		err := s.Validate()
		var ve *host.ValidationError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.desc, err)
		case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
			t.Errorf("%s: Validate() = %v, want a ValidationError on %s", tt.desc, err, tt.field)
		}
	}
}
