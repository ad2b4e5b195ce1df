package inference

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime release `make setup` installs and the oldest
// this build accepts: onnxruntime_go v1.27 needs C API 24, first in ORT 1.24.
const ORTVersion = "1.24.1"

// LibEnv names the environment variable that points at libonnxruntime.so.
const LibEnv = "INFERSTACK_ORT_LIB"

// CacheDir is where set-up puts downloads and the engine keeps its calibration
// cache: $INFERSTACK_CACHE, else the user cache dir (~/.cache/inferstack).
func CacheDir() string {
	if dir := os.Getenv("INFERSTACK_CACHE"); dir != "" {
		return dir
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "inferstack")
}

// DefaultLibPath is $INFERSTACK_ORT_LIB, else where `make setup` installs the library.
func DefaultLibPath() string {
	if p := os.Getenv(LibEnv); p != "" {
		return p
	}
	return filepath.Join(CacheDir(), "ort", ORTVersion, "libonnxruntime.so.1")
}

// ORT holds the process-wide ONNX Runtime environment; ORT allows one per process.
var ortEnv struct {
	sync.Mutex
	lib     string
	version string
	// cudaMissing remembers why CUDA failed, so device auto probes it once per
	// process rather than at every session (calibration creates several).
	cudaMissing string
	// loadTime is what InitRuntime took, reported by the process's first run.
	loadTime     time.Duration
	loadReported bool
}

// InitRuntime loads ONNX Runtime from libPath ("" means DefaultLibPath) once per
// process and returns its version. Later calls with the same path are no-ops;
// a different path is an error, since the library cannot be swapped in-process.
func InitRuntime(libPath string) (string, error) {
	if libPath == "" {
		libPath = DefaultLibPath()
	}
	ortEnv.Lock()
	defer ortEnv.Unlock()
	if ortEnv.lib != "" {
		if ortEnv.lib != libPath {
			return "", fmt.Errorf("onnx runtime already loaded from %s, cannot switch to %s", ortEnv.lib, libPath)
		}
		return ortEnv.version, nil
	}
	start := time.Now()
	const fix = "run `make setup` or point " + LibEnv + " (--ort-lib) at libonnxruntime.so from ONNX Runtime >= 1.24"
	if _, err := os.Stat(libPath); err != nil {
		return "", withKind(ErrUnavailable, "onnx runtime library not found at %s: %s", libPath, fix)
	}
	ort.SetSharedLibraryPath(libPath)
	// ORT's own log would print every failed CUDA probe as an error on stderr;
	// failures reach us as returned statuses, so only fatal ones are logged.
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
		return "", withKind(ErrUnavailable, "cannot load onnx runtime from %s (%v): %s", libPath, oneLine(err), fix)
	}
	ortEnv.lib, ortEnv.version, ortEnv.loadTime = libPath, ort.GetVersion(), time.Since(start)
	return ortEnv.version, nil
}

// runtimeVersion is the loaded ONNX Runtime's version ("" before InitRuntime).
func runtimeVersion() string {
	ortEnv.Lock()
	defer ortEnv.Unlock()
	return ortEnv.version
}
