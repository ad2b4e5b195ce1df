package inference

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// BatchChoice records how the batch size and thread count were chosen.
type BatchChoice struct {
	BatchSize int64 `json:"batch_size"`
	Threads   int   `json:"threads"`
	// Source is flag, model (a fixed batch dim), calibrated, cached or small-input.
	Source string  `json:"source"`
	Trials []Trial `json:"trials,omitempty"`
}

// Trial is one measured setting of a calibration.
type Trial struct {
	BatchSize     int64   `json:"batch_size"`
	Threads       int     `json:"threads"`
	SamplesPerSec float64 `json:"samples_per_sec"`
}

// chooseBatch settles the batch size and, when calibrating, the thread count
// (replacing *sess by a session with the winning threads).
func chooseBatch(ctx context.Context, job Job, layout *Layout, sess **Session, outputs []OutputSpec, head []byte, headN int64) (BatchChoice, error) {
	threads := (*sess).Threads
	switch {
	case job.Model.Input.Shape[0] > 0:
		return BatchChoice{BatchSize: job.Model.Input.Shape[0], Threads: threads, Source: "model"}, nil
	case job.BatchSize > 0:
		return BatchChoice{BatchSize: job.BatchSize, Threads: threads, Source: "flag"}, nil
	case layout.Samples <= 32:
		// Calibrating would cost more than the whole job.
		return BatchChoice{BatchSize: layout.Samples, Threads: threads, Source: "small-input"}, nil
	}
	key := calibrationKey(job, layout, (*sess).Device)
	cache := loadCalibrations()
	if c, ok := cache[key]; ok {
		c.Source = "cached"
		if c.Threads != threads {
			if err := replaceSession(job, sess, c.Threads); err != nil {
				return BatchChoice{}, err
			}
		}
		return c, nil
	}

	candidates := []int{threads}
	if job.Threads == 0 {
		candidates = slices.Compact([]int{DefaultThreads(), runtime.NumCPU()})
	}
	best := Trial{}
	var trials []Trial
	for _, t := range candidates {
		if t != (*sess).Threads {
			if err := replaceSession(job, sess, t); err != nil {
				return BatchChoice{}, err
			}
		}
		measured, err := measureBatches(ctx, *sess, layout, outputs, head, headN)
		if err != nil {
			return BatchChoice{}, err
		}
		for _, m := range measured {
			if m.SamplesPerSec > best.SamplesPerSec {
				best = m
			}
		}
		trials = append(trials, measured...)
	}
	if best.Threads != (*sess).Threads {
		if err := replaceSession(job, sess, best.Threads); err != nil {
			return BatchChoice{}, err
		}
	}
	choice := BatchChoice{BatchSize: best.BatchSize, Threads: best.Threads, Source: "calibrated", Trials: trials}
	cache[key] = choice
	saveCalibrations(cache, job)
	return choice, nil
}

func replaceSession(job Job, sess **Session, threads int) error {
	next, err := job.Model.NewSession(job.Device, threads)
	if err != nil {
		return err
	}
	(*sess).Close()
	*sess = next
	return nil
}

// measureBatches times doubling batch sizes on the first samples and stops
// once throughput has clearly passed its peak (it is single-peaked in practice:
// ~1,150 samples/s at 16 but ~400 at 256 for PaddleOCR's classifier on 2 cores).
func measureBatches(ctx context.Context, sess *Session, layout *Layout, outputs []OutputSpec, head []byte, headN int64) ([]Trial, error) {
	var trials []Trial
	best := 0.0
	for b := int64(1); b <= headN; b *= 2 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rate, err := measure(sess, layout, outputs, head, b)
		if err != nil {
			return nil, err
		}
		trials = append(trials, Trial{BatchSize: b, Threads: sess.Threads, SamplesPerSec: rate})
		best = max(best, rate)
		if rate < 0.75*best {
			break
		}
	}
	return trials, nil
}

// measure runs batch b once to warm up, then until at least minRuns runs and
// minTime have passed, and returns samples per second.
func measure(sess *Session, layout *Layout, outputs []OutputSpec, head []byte, b int64) (float64, error) {
	const minRuns, minTime = 3, 40 * time.Millisecond
	in, err := newInputTensor(layout, b, head)
	if err != nil {
		return 0, err
	}
	defer in.Destroy()
	bufs := make([][]byte, len(outputs))
	for i, o := range outputs {
		bufs[i] = make([]byte, b*o.SampleBytes())
	}
	out, err := newOutputTensors(outputs, b, bufs)
	if err != nil {
		return 0, err
	}
	defer destroyAll(out)
	if err := sess.Run(in, out); err != nil {
		return 0, fmt.Errorf("calibration run at batch %d: %s", b, oneLine(err))
	}
	start, runs := time.Now(), 0
	for runs < minRuns || time.Since(start) < minTime {
		if err := sess.Run(in, out); err != nil {
			return 0, fmt.Errorf("calibration run at batch %d: %s", b, oneLine(err))
		}
		runs++
	}
	return float64(runs) * float64(b) / time.Since(start).Seconds(), nil
}

// calibrationKey names what a calibration depends on: the model, the sample
// shape, the device, the thread setting and the machine.
func calibrationKey(job Job, layout *Layout, device Device) string {
	host, _ := os.Hostname()
	h := sha256.New()
	fmt.Fprintf(h, "%s|%v|%s|%d|%d|%s|%s", job.Model.SHA256, layout.SampleShape, device, job.Threads, runtime.NumCPU(), host, ortEnv.version)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func calibrationFile() string { return filepath.Join(CacheDir(), "calibration.json") }

func loadCalibrations() map[string]BatchChoice {
	cache := map[string]BatchChoice{}
	if data, err := os.ReadFile(calibrationFile()); err == nil {
		_ = json.Unmarshal(data, &cache) // a corrupt cache only costs a recalibration
	}
	return cache
}

// saveCalibrations writes the cache atomically; failing to cache is not an error.
func saveCalibrations(cache map[string]BatchChoice, job Job) {
	data, _ := json.MarshalIndent(cache, "", "  ")
	if err := writeFileAtomic(calibrationFile(), data); err != nil && job.Logger != nil {
		job.Logger.Warn("cannot cache calibration", "err", err)
	}
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it into place, so readers see the old file or the new, never a part.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
