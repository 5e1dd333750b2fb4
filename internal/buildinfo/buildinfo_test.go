package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{
			GoVersion: "go1.26.0",
			Main:      debug.Module{Path: "github.com/delegation-program/uptime-coordinator", Version: "(devel)"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
				{Key: "vcs.time", Value: "2026-12-01T15:00:00Z"},
				{Key: "vcs.modified", Value: "true"},
			},
		}, true
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	installed := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.3.1"}}, true
	}

	for _, tc := range []struct {
		name     string
		linked   string
		revision string
		read     func() (*debug.BuildInfo, bool)
		short    string
		long     string
	}{
		{"vcs stamp", "", "", stamped, "devel (0123456789ab, modified)",
			"coordinator devel\nrevision    0123456789abcdef0123456789abcdef01234567 (modified)\ncommit time 2026-12-01T15:00:00Z\ngo          go1.26.0\n"},
		{"linked version wins", "v1.4.0", "", stamped, "v1.4.0 (0123456789ab, modified)",
			"coordinator v1.4.0\nrevision    0123456789abcdef0123456789abcdef01234567 (modified)\ncommit time 2026-12-01T15:00:00Z\ngo          go1.26.0\n"},
		{"go install", "", "", installed, "v0.3.1", "coordinator v0.3.1\ngo          go1.26.0\n"},
		{"nothing known", "", "", none, "devel", "coordinator devel\n"},
		{"docker build", "v1.4.0", "fedcba987654321", func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}, true
		}, "v1.4.0 (fedcba987654)", "coordinator v1.4.0\nrevision    fedcba987654321\ngo          go1.26.0\n"},
	} {
		got := fromBuildInfo(tc.linked, tc.revision, tc.read)
		if got.Short() != tc.short {
			t.Errorf("%s: Short() = %q, want %q", tc.name, got.Short(), tc.short)
		}
		if got.String() != tc.long {
			t.Errorf("%s: String() = %q, want %q", tc.name, got.String(), tc.long)
		}
	}
}
