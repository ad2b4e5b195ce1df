package inference

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
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
	// Partial says the time budget ended the calibration before the peak.
	Partial bool `json:"partial,omitempty"`
}

// Trial is one measured setting of a calibration.
type Trial struct {
	BatchSize     int64   `json:"batch_size"`
	Threads       int     `json:"threads"`
	SamplesPerSec float64 `json:"samples_per_sec"`
}

// chooseBatch settles the batch size and, when calibrating, the thread count,
// and returns the session with the chosen threads.
func chooseBatch(ctx context.Context, job Job, layout *Layout, sess *Session, outputs []OutputSpec) (BatchChoice, *Session, error) {
	threads := sess.Threads
	switch {
	case job.Model.Input.Shape[0] > 0:
		return BatchChoice{BatchSize: job.Model.Input.Shape[0], Threads: threads, Source: "model"}, sess, nil
	case job.BatchSize > 0:
		return BatchChoice{BatchSize: job.BatchSize, Threads: threads, Source: "flag"}, sess, nil
	case layout.Samples <= 32:
		// Calibrating would cost more than the whole job.
		return BatchChoice{BatchSize: layout.Samples, Threads: threads, Source: "small-input"}, sess, nil
	}
	key := calibrationKey(job, layout, sess.Device)
	cache := loadCalibrations()
	if c, ok := cache[key]; ok {
		c.Source = "cached"
		sess, err := job.Model.Session(job.Device, c.Threads)
		return c, sess, err
	}

	headN := min(layout.Samples, maxCalibrationSamples)
	head := make([]byte, headN*layout.SampleElems()*4)
	if err := layout.read(job.Input, 0, headN, head, &readBuffers{}); err != nil {
		return BatchChoice{}, nil, err
	}

	candidates := []int{threads}
	if job.Threads == 0 {
		candidates = slices.Compact([]int{DefaultThreads(), runtime.NumCPU()})
	}
	cal := &calibrator{ctx: ctx, layout: layout, outputs: outputs, head: head, headN: headN}
	best := Trial{}
	var trials []Trial
	for _, t := range candidates {
		sess, err := job.Model.Session(job.Device, t)
		if err != nil {
			return BatchChoice{}, nil, err
		}
		measured, err := cal.batches(sess)
		if err != nil {
			return BatchChoice{}, nil, err
		}
		for _, m := range measured {
			if m.SamplesPerSec > best.SamplesPerSec {
				best = m
			}
		}
		trials = append(trials, measured...)
	}
	choice := BatchChoice{BatchSize: best.BatchSize, Threads: best.Threads, Source: "calibrated", Trials: trials, Partial: cal.cut}
	if !cal.cut {
		// A calibration the budget cut short suits this job only: not cached.
		cache[key] = choice
		saveCalibrations(cache, job)
	}
	sess, err := job.Model.Session(job.Device, best.Threads)
	return choice, sess, err
}

// Calibration spends at most calibrationShare of the job's estimated time
// (from the batch-1 rate), and never more than maxCalibration, so that it
// pays for itself on small jobs as well as on large ones.
var calibrationShare = 0.1 // a variable so a test can grant a full budget

const maxCalibration = 2 * time.Second

// calibrator times batch sizes on the first samples within a time budget.
type calibrator struct {
	ctx      context.Context
	layout   *Layout
	outputs  []OutputSpec
	head     []byte
	headN    int64
	deadline time.Time // zero until the first trial sets the budget
	cut      bool      // the budget ended the calibration, not the peak
}

// batches times doubling batch sizes and stops once throughput has clearly
// passed its peak (single-peaked in practice: PaddleOCR's classifier on 2
// cores runs ~1,150 samples/s at 16 but ~400 at 256), or the budget is spent.
func (c *calibrator) batches(sess *Session) ([]Trial, error) {
	var trials []Trial
	best := 0.0
	for b := int64(1); b <= c.headN; b *= 2 {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		if !c.deadline.IsZero() && time.Now().After(c.deadline) {
			c.cut = true
			break
		}
		start := time.Now()
		rate, err := measure(sess, c.layout, c.outputs, c.head, b)
		if err != nil {
			return nil, err
		}
		if c.deadline.IsZero() {
			estimate := time.Duration(float64(c.layout.Samples) / rate * float64(time.Second))
			c.deadline = start.Add(min(maxCalibration, time.Duration(calibrationShare*float64(estimate))))
		}
		trials = append(trials, Trial{BatchSize: b, Threads: sess.Threads, SamplesPerSec: rate})
		best = max(best, rate)
		if rate < 0.75*best {
			break
		}
	}
	return trials, nil
}

// measure runs batch b once to warm up, then times at least minRuns runs
// over at least minTime, and returns samples per second of the fastest run:
// on a shared machine the minimum is what the setting can do, the mean is
// what the neighbours let it do.
func measure(sess *Session, layout *Layout, outputs []OutputSpec, head []byte, b int64) (float64, error) {
	const minRuns, minTime = 3, 5 * time.Millisecond
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
	fastest := time.Duration(math.MaxInt64)
	for runs, start := 0, time.Now(); runs < minRuns || time.Since(start) < minTime; runs++ {
		t := time.Now()
		if err := sess.Run(in, out); err != nil {
			return 0, fmt.Errorf("calibration run at batch %d: %s", b, oneLine(err))
		}
		fastest = min(fastest, time.Since(t))
	}
	return float64(b) / max(fastest, time.Microsecond).Seconds(), nil
}

// calibrationKey names what a calibration depends on: the model, the sample
// shape, the device, the thread setting and the machine.
func calibrationKey(job Job, layout *Layout, device Device) string {
	host, _ := os.Hostname()
	h := sha256.New()
	fmt.Fprintf(h, "%s|%v|%s|%d|%d|%s|%s", job.Model.SHA256, layout.SampleShape, device, job.Threads, runtime.NumCPU(), host, runtimeVersion())
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
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name()) // best effort: a stray temp file is harmless
	}
	return err
}
