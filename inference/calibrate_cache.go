package inference

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/internal/atomicfile"
)

// calibrationKey names what a calibration depends on: the model, the sample
// shape, the device asked for, the thread setting, the machine and the
// search's rules.
func calibrationKey(job Pass, src Source) string {
	host, _ := os.Hostname()
	h := sha256.New()
	fmt.Fprintf(h, "%s|%v|%s|%d|%d|%s|%s|%d", job.Model.SHA256, src.Feeds(), job.Device, job.Threads, runtime.NumCPU(), host, runtimeVersion(), calibration.Version)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func calibrationFile() string { return filepath.Join(CacheDir(), "calibration.json") }

// loadCalibration returns the cached search for key, nil if there is none.
func loadCalibration(key string) *calibration.State {
	cache := loadCalibrations()
	if c, ok := cache[key]; ok && c.Best.Threads > 0 && c.Best.BatchSize > 0 {
		return &c
	}
	return nil
}

func loadCalibrations() map[string]calibration.State {
	cache := map[string]calibration.State{}
	if data, err := os.ReadFile(calibrationFile()); err == nil {
		_ = json.Unmarshal(data, &cache) // a corrupt cache only costs a recalibration
	}
	return cache
}

// saveCalibration writes the cache atomically; failing to cache is not an
// error, only a warning on log.
func saveCalibration(key string, state *calibration.State, log *slog.Logger) {
	cache := loadCalibrations()
	cache[key] = *state
	data, _ := json.MarshalIndent(cache, "", "  ")
	// Not synced: a cache lost in a crash costs one recalibration, an fsync
	// costs every calibrating run.
	if err := atomicfile.Write(calibrationFile(), data, false); err != nil {
		log.Warn("cannot cache calibration", "err", err)
	}
}
