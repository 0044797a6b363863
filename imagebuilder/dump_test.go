package imagebuilder_test

import (
	"os"
	"testing"

	"github.com/bootpilot/bootpilot/imagebuilder"
)

func TestDumpISO(t *testing.T) {
	out := os.Getenv("DUMP_ISO")
	if out == "" {
		t.Skip()
	}
	c := signedConfig(t)
	if os.Getenv("DUMP_MODE") == "esp" {
		c.Mode, c.ScriptSigner = imagebuilder.ModeESPScript, mustPKI(t).Code
	}
	img, _ := mustBuild(t, c, testToken)
	os.WriteFile(out, img, 0o644)
}
