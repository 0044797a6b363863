// Package version holds bootpilot's build version. Release builds set it
// with -ldflags "-X github.com/bootpilot/bootpilot/internal/version.Version=v1.2.3
// -X github.com/bootpilot/bootpilot/internal/version.Commit=<sha>"; otherwise
// the module version and VCS revision recorded by the Go toolchain are used.
package version

import (
	"runtime/debug"
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
		info = Info{Version: Version, Commit: Commit}
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		info.GoVersion = bi.GoVersion
		if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		var rev, modified, vcsTime string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				vcsTime = s.Value
			}
		}
		if info.Commit == "" && rev != "" {
			info.Commit = rev
			if modified == "true" {
				info.Commit += "+dirty"
			}
		}
		info.BuildTime = vcsTime
	})
	return info
}

// String returns a one-line description: "dev (commit 8f79bbd…, go1.26.8)".
func (i Info) String() string {
	s := i.Version
	if i.Commit != "" {
		s += " (commit " + i.Commit
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
