package inference

import (
	"runtime/debug"

	"github.com/inferstack/inferstack/inference/manifest"
)

// The manifest and its parts are the contract type of package manifest,
// which readers of results use without linking ONNX Runtime.
type (
	Manifest   = manifest.Manifest
	InputInfo  = manifest.Input
	DeviceInfo = manifest.DeviceInfo
	OutputFile = manifest.OutputFile
	Durations  = manifest.Durations
)

// version is set at link time (-X github.com/inferstack/inferstack/inference.version=...).
var version string

// Version is the link-time version, else the module version or VCS revision
// Go recorded in the binary, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
