package inference

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/internal/atomicfile"
)

// CalibrationStore keeps calibration searches by key for the runs after
// this one: by default a file in CacheDir (what `inferstack run` uses); a
// worker keeps them in its bucket, so that what one task learns, every task
// knows.
type CalibrationStore interface {
	// Load returns the search kept under key, nil if there is none.
	Load(ctx context.Context, key string) (*calibration.State, error)
	// Save keeps state under key, merged (calibration.Merge) with what is
	// kept there already, so that concurrent savers keep each other's trials.
	Save(ctx context.Context, key string, state *calibration.State) error
}

// calibrationIdentity is what a calibration depends on: the model, the
// sample shape, the device asked for, the thread setting, the hardware
// (never the host's name), and the runtime's and the search's versions.
type calibrationIdentity struct {
	ModelSHA256 string   `json:"model_sha256"`
	Feeds       []Feed   `json:"feeds"`
	Device      Device   `json:"device"`
	Threads     int      `json:"threads"`
	Hardware    Hardware `json:"hardware"`
	ORT         string   `json:"ort"`
	Version     int      `json:"version"`
}

func newCalibrationIdentity(job Pass, src Source, hw Hardware) calibrationIdentity {
	if job.Device == DeviceCPU {
		hw.GPUs = nil // a CPU search does not depend on them
	}
	return calibrationIdentity{ModelSHA256: job.Model.SHA256, Feeds: src.Feeds(), Device: job.Device, Threads: job.Threads,
		Hardware: hw, ORT: runtimeVersion(), Version: calibration.Version}
}

// key is the identity's hash: a file or object name.
func (id calibrationIdentity) key() string {
	data, err := json.Marshal(id)
	if err != nil {
		panic(err) // strings, numbers and shapes: cannot fail
	}
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:16])
}

// calibrationKey is the key the job's search is kept under on this machine.
func calibrationKey(job Pass, src Source) string {
	return newCalibrationIdentity(job, src, hostHardware()).key()
}

// calibrations is where the job's searches are kept.
func calibrations(job Pass) CalibrationStore {
	if job.Calibrations != nil {
		return job.Calibrations
	}
	return localCalibrations{}
}

// localCalibrations keeps every search in one JSON file under CacheDir.
type localCalibrations struct{}

var _ CalibrationStore = localCalibrations{}

func calibrationFile() string { return filepath.Join(CacheDir(), "calibration.json") }

func (localCalibrations) Load(_ context.Context, key string) (*calibration.State, error) {
	if c, ok := loadCalibrations()[key]; ok {
		return &c, nil
	}
	return nil, nil
}

func loadCalibrations() map[string]calibration.State {
	cache := map[string]calibration.State{}
	if data, err := os.ReadFile(calibrationFile()); err == nil {
		_ = json.Unmarshal(data, &cache) // a corrupt cache only costs a recalibration
	}
	return cache
}

// Save rewrites the file atomically, merging the search with the one the
// file holds (another run may have saved since this one loaded it).
func (localCalibrations) Save(_ context.Context, key string, state *calibration.State) error {
	cache := loadCalibrations()
	var kept *calibration.State
	if c, ok := cache[key]; ok {
		kept = &c
	}
	cache[key] = *calibration.Merge(kept, state)
	data, _ := json.MarshalIndent(cache, "", "  ")
	// Not synced: a cache lost in a crash costs one recalibration, an fsync
	// costs every calibrating run.
	return atomicfile.Write(calibrationFile(), data, false)
}
