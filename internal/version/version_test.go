package version_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
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

// TestFromBuildInfo: a plain `go build` in a git checkout records the
// revision (and whether the tree was modified); the commit is shown and the
// pseudo-version derived from it is not taken for a release.
func TestFromBuildInfo(t *testing.T) {
	const rev = "1e0e623377b28915ceab3cf9fbb1cadd7e94732c"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-12-01T22:44:26Z"}, {Key: "vcs.modified", Value: modified}}
	}
	bi := func(mainVersion string, s []debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/bootpilot/bootpilot", Version: mainVersion}, Settings: s}
	}
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            version.Info
		wantString      string
	}{
		{"plain build, modified tree", "dev", "", bi("v0.0.0-20261201224426-1e0e623377b2+dirty", vcs("true")),
			version.Info{Version: "dev", Commit: rev + "+dirty", GoVersion: "go1.26.8", BuildTime: "2026-12-01T22:44:26Z"},
			"dev (commit 1e0e623377b2+dirty, go1.26.8)"},
		{"plain build, clean tree", "dev", "", bi("v0.0.0-20261201224426-1e0e623377b2", vcs("false")),
			version.Info{Version: "dev", Commit: rev, GoVersion: "go1.26.8", BuildTime: "2026-12-01T22:44:26Z"},
			"dev (commit 1e0e623377b2, go1.26.8)"},
		{"tagged checkout", "dev", "", bi("v1.4.0", vcs("false")),
			version.Info{Version: "v1.4.0", Commit: rev, GoVersion: "go1.26.8", BuildTime: "2026-12-01T22:44:26Z"},
			"v1.4.0 (commit 1e0e623377b2, go1.26.8)"},
		{"ldflags win", "v1.2.3", "0123abcd", bi("(devel)", vcs("true")),
			version.Info{Version: "v1.2.3", Commit: "0123abcd", GoVersion: "go1.26.8", BuildTime: "2026-12-01T22:44:26Z"},
			"v1.2.3 (commit 0123abcd, go1.26.8)"},
		{"-buildvcs=false", "dev", "", bi("(devel)", nil),
			version.Info{Version: "dev", GoVersion: "go1.26.8"}, "dev (go1.26.8)"},
		{"no build info", "dev", "", nil, version.Info{Version: "dev"}, "dev"},
	}
	for _, tt := range tests {
		got := version.FromBuildInfo(tt.version, tt.commit, tt.bi)
		if got != tt.want {
			t.Errorf("%s: FromBuildInfo = %+v, want %+v", tt.name, got, tt.want)
		}
		if s := got.String(); s != tt.wantString {
			t.Errorf("%s: String() = %q, want %q", tt.name, s, tt.wantString)
		}
	}
}

// TestPlainBuild builds the probe the way the README builds bootpilot (go
// build, with the toolchain's default VCS stamping) and checks that the
// commit of this checkout shows.
func TestPlainBuild(t *testing.T) {
	goTool := testenv.Tool(t, "go")
	gitTool := testenv.Tool(t, "git")
	head, err := exec.Command(gitTool, "rev-parse", "HEAD").Output()
	if err != nil {
		testenv.Missing(t, "not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "probe")
	build := exec.Command(goTool, "build", "-buildvcs=auto", "-o", bin, "./testdata/probe")
	build.Env = append(os.Environ(), "GOFLAGS=") // a machine-wide -buildvcs=false is not the plain build
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
	if want := strings.TrimSpace(string(head)); strings.TrimSuffix(got.Commit, "+dirty") != want || got.Version != "dev" {
		t.Errorf("probe from a plain build = %+v, want version dev and commit %s", got, want)
	}
}
