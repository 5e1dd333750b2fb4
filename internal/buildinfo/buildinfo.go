// Package buildinfo says which build of the coordinator is running: the
// version set at link time (the Dockerfile passes -ldflags "-X
// .../internal/buildinfo.version=v1.2.3"), else the module version and VCS
// revision the Go toolchain stamps into the binary.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// version and revision are set with -ldflags "-X
// github.com/delegation-program/uptime-coordinator/internal/buildinfo.version=VALUE"
// (and .revision=COMMIT): the Docker build has no .git to stamp from.
var version, revision string

// Info describes one build.
type Info struct {
	Version   string // release version, module version, or "devel"
	Revision  string // VCS revision, "" when unknown
	Time      string // VCS commit time (RFC 3339), "" when unknown
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string
}

// Get returns the running binary's build information.
func Get() Info { return fromBuildInfo(version, revision, debug.ReadBuildInfo) }

func fromBuildInfo(linkedVersion, linkedRevision string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: linkedVersion, Revision: linkedRevision}
	bi, ok := read()
	if ok {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// Short is the version with the abbreviated revision, e.g.
// "devel (3f2a1c9d0b7e, modified)" or "v1.2.0".
func (i Info) Short() string {
	var extra []string
	if i.Revision != "" {
		extra = append(extra, abbrev(i.Revision))
	}
	if i.Modified {
		extra = append(extra, "modified")
	}
	if len(extra) == 0 {
		return i.Version
	}
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(extra, ", "))
}

// String is the multi-line form `coordinator version` prints.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "coordinator %s\n", i.Version)
	if i.Revision != "" {
		mod := ""
		if i.Modified {
			mod = " (modified)"
		}
		fmt.Fprintf(&b, "revision    %s%s\n", i.Revision, mod)
	}
	if i.Time != "" {
		fmt.Fprintf(&b, "commit time %s\n", i.Time)
	}
	if i.GoVersion != "" {
		fmt.Fprintf(&b, "go          %s\n", i.GoVersion)
	}
	return b.String()
}

func abbrev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
