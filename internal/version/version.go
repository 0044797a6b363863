// Package version holds bootpilot's build version. Release builds set it
// with -ldflags "-X github.com/bootpilot/bootpilot/internal/version.Version=v1.2.3
// -X github.com/bootpilot/bootpilot/internal/version.Commit=<sha>"; otherwise
// the module version and VCS revision recorded by the Go toolchain are used
// (a plain `go build` in a git checkout records them unless -buildvcs=false):
// the commit, with "+dirty" for a modified tree, and "dev" for the
// pseudo-version the toolchain derives from that commit.
package version

import (
	"runtime/debug"
	"strings"
	"sync"
)

// Set at link time; see the package comment.
var (
	// Version is the release, such as "v0.1.0"; "dev" for a plain build.
	Version = "dev"
	// Commit is the VCS revision the binary was built from, if known.
	Commit = ""
)

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`              // "v0.1.0" or "dev"
	Commit    string `json:"commit,omitempty"`     // "8f79bbd…"; "+dirty" when built from a modified tree
	GoVersion string `json:"go_version"`           // "go1.26.8"
	BuildTime string `json:"build_time,omitempty"` // VCS commit time, RFC 3339
}

var (
	once sync.Once
	info Info
)

// Get returns the build information, filling what -ldflags left unset from
// runtime/debug.ReadBuildInfo.
func Get() Info {
	once.Do(func() {
		bi, _ := debug.ReadBuildInfo()
		info = fromBuildInfo(Version, Commit, bi)
	})
	return info
}

// fromBuildInfo fills what the link-time version and commit leave unset
// from bi (nil when the binary has none).
func fromBuildInfo(version, commit string, bi *debug.BuildInfo) Info {
	i := Info{Version: version, Commit: commit}
	if bi == nil {
		return i
	}
	i.GoVersion = bi.GoVersion
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		case "vcs.time":
			i.BuildTime = s.Value
		}
	}
	if i.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" && !pseudo(bi.Main.Version, rev) {
		i.Version = bi.Main.Version
	}
	if i.Commit == "" && rev != "" {
		i.Commit = rev
		if modified == "true" {
			i.Commit += "+dirty"
		}
	}
	return i
}

// pseudo reports whether v is the pseudo-version the toolchain makes from
// revision rev ("v0.0.0-20261201224426-1e0e623377b2+dirty"): it says no more
// than the commit, so the version stays "dev".
func pseudo(v, rev string) bool {
	if len(rev) < 12 {
		return false
	}
	v = strings.TrimSuffix(v, "+dirty")
	return strings.HasSuffix(v, "-"+rev[:12])
}

// String returns a one-line description: "dev (commit 8f79bbd…, go1.26.8)",
// with the commit cut to 12 hex digits (and "+dirty").
func (i Info) String() string {
	s := i.Version
	if i.Commit != "" {
		c, dirty := strings.CutSuffix(i.Commit, "+dirty")
		if len(c) > 12 {
			c = c[:12]
		}
		if dirty {
			c += "+dirty"
		}
		s += " (commit " + c
		if i.GoVersion != "" {
			s += ", " + i.GoVersion
		}
		return s + ")"
	}
	if i.GoVersion != "" {
		s += " (" + i.GoVersion + ")"
	}
	return s
}
