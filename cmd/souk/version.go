package main

import (
	"runtime/debug"
	"strings"
)

// version is the release this binary was built from. Builds without the
// repository at hand (a container image's, whose context has no .git)
// set it with -ldflags "-X main.version=v1.2.3"; otherwise it comes from
// the build info the go command records.
var version string

// versionString is what --version prints: the module version, and the VCS
// revision and commit time when the go command recorded them, marked
// "modified" for a build from a tree with uncommitted changes.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "souk " + orDevel(version)
	}
	v := version
	if v == "" {
		v = info.Main.Version
	}
	parts := []string{"souk", orDevel(v)}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		parts = append(parts, rev)
		if t := settings["vcs.time"]; t != "" {
			parts = append(parts, t)
		}
		if settings["vcs.modified"] == "true" {
			parts = append(parts, "modified")
		}
	}
	return strings.Join(append(parts, info.GoVersion), " ")
}

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}
