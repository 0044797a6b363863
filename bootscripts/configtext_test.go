package bootscripts_test

import (
	"errors"
	"testing"

	"github.com/bootpilot/bootpilot/bootscripts"
	"github.com/bootpilot/bootpilot/internal/host"
)

// TestConfigTemplateText: a profile's config must render to text. A NUL
// cuts the file short for C-string readers, an escape sequence reaches
// whoever views the config in a terminal — whether the template holds the
// byte or makes it.
func TestConfigTemplateText(t *testing.T) {
	for _, src := range []string{
		"a\x00b",
		"# benign\n\x1b[2J",
		`{{printf "%c" 27}}[2J`,
		`{{"\x00"}}`,
		"bidi \u202e txt",
		"c1 \u009b2J",
		"bad utf8 \xff",
	} {
		err := bootscripts.CheckConfigTemplate(src)
		var ve *host.ValidationError
		if !errors.As(err, &ve) || ve.Field != "config" {
			t.Errorf("CheckConfigTemplate(%q) = %v, want a validation error on config", src, err)
		}
	}
	for _, src := range []string{"a\tb\r\nc\n", "héllo wörld ✓\n", "{{.Name}}\n"} {
		if err := bootscripts.CheckConfigTemplate(src); err != nil {
			t.Errorf("CheckConfigTemplate(%q) = %v, want nil", src, err)
		}
	}
}
