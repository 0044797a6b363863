package version_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/bootpilot/bootpilot/internal/testenv"
	"github.com/bootpilot/bootpilot/internal/version"
)

// TestLdflags builds a probe with the -X flags the package comment documents
// and checks that they land, so a renamed variable cannot go unnoticed.
func TestLdflags(t *testing.T) {
	goTool := testenv.Tool(t, "go")
	bin := filepath.Join(t.TempDir(), "probe")
	const pkg = "github.com/bootpilot/bootpilot/internal/version"
	build := exec.Command(goTool, "build", "-o", bin,
		"-ldflags", "-X "+pkg+".Version=v1.2.3 -X "+pkg+".Commit=0123abcd",
		"./testdata/probe")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	var got version.Info
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	if got.Version != "v1.2.3" || got.Commit != "0123abcd" || got.GoVersion != runtime.Version() {
		t.Errorf("probe built with -X = %+v, want v1.2.3, 0123abcd, %s", got, runtime.Version())
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		in   version.Info
		want string
	}{
		{version.Info{Version: "dev", GoVersion: "go1.26.8"}, "dev (go1.26.8)"},
		{version.Info{Version: "v1.0.0", Commit: "abc", GoVersion: "go1.26.8"}, "v1.0.0 (commit abc, go1.26.8)"},
		{version.Info{Version: "v1.0.0"}, "v1.0.0"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}
