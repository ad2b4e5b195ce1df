package inference

import (
	"context"
	"time"

	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/inference/manifest"
)

// BatchChoice records how the batch size and thread count were chosen.
type BatchChoice = manifest.BatchChoice

// Trial is one measured setting of a calibration.
type Trial = manifest.Trial

// needsCalibration says whether the engine, not the model or the caller, sets
// the batch size: a small input runs as one batch, calibrating would cost
// more than the whole job.
func needsCalibration(job Pass, src Source) bool {
	return job.Model.BatchDim() <= 0 && job.BatchSize == 0 && src.Samples() > smallInput
}

const smallInput = 32

// fixedChoice is the batch choice of a run that does not calibrate.
func fixedChoice(job Pass, src Source, threads int) BatchChoice {
	switch {
	case job.Model.BatchDim() > 0:
		return BatchChoice{BatchSize: job.Model.BatchDim(), Threads: threads, Source: "model"}
	case job.BatchSize > 0:
		return BatchChoice{BatchSize: job.BatchSize, Threads: threads, Source: "flag"}
	}
	return BatchChoice{BatchSize: src.Samples(), Threads: threads, Source: "small-input"}
}

// calibrationShare is the share of the job's time its run may spend on the
// search: job.calibrationShare where a test set it.
func calibrationShare(job Pass) float64 {
	if job.calibrationShare != nil {
		return *job.calibrationShare
	}
	return calibration.DefaultShare
}

// The largest batch calibration tries, which bounds how much of the input it
// reads: at most maxCalibrationSamples, and on a CPU no more than a default
// chunk (targetChunkBytes) of input, since a batch that outgrows the chunk
// grows every chunk in flight with it, and on a CPU larger batches stop
// paying well before that. A GPU needs larger batches to fill its cores.
const (
	maxCalibrationSamples = 4096
	gpuCalibrationBytes   = 128 << 20
)

// maxBatch is the largest batch calibration tries on src and device: a
// power of two.
func maxBatch(src Source, device Device) int64 {
	budget := int64(targetChunkBytes)
	if device == DeviceGPU {
		budget = gpuCalibrationBytes
	}
	limit := min(src.Samples(), maxCalibrationSamples, max(1, budget/max(1, sampleBytes(src.Feeds()))))
	b := int64(1)
	for b*2 <= limit {
		b *= 2
	}
	return b
}

// cachedChoice is the choice of a completed search that ran on device.
func cachedChoice(state *calibration.State, device Device) (BatchChoice, bool) {
	if state == nil || !state.Done() || state.Device != device {
		return BatchChoice{}, false
	}
	return BatchChoice{BatchSize: state.Best.BatchSize, Threads: state.Best.Threads, Source: "cached", Trials: state.Trials}, true
}

// tuner runs a search beside the pipeline: the infer stage runs its chunks
// at the settings the search asks for until it ends, then at its best.
type tuner struct {
	job     Pass
	key     string
	bench   *pipelineBench
	search  calibration.Search
	state   *calibration.State
	fresh   bool // a new search: saved whatever it measures
	outcome calibration.Outcome
	done    chan struct{} // closed when the search ended: state is the pipeline's from then on
}

// newTuner goes on with the search from the cached state (nil: a new search)
// with sess, the session the run already has, among its candidates; the
// run's probe ran warm samples in probe.
func newTuner(job Pass, src Source, sess *Session, cached *calibration.State, warm int64, probe time.Duration) *tuner {
	t := &tuner{job: job, key: calibrationKey(job, src), bench: newPipelineBench(job, sess), done: make(chan struct{})}
	t.search = calibration.Search{
		Samples:    src.Samples(),
		Share:      calibrationShare(job),
		MaxBatch:   maxBatch(src, sess.Device),
		Candidates: t.bench.candidates,
	}
	t.state, t.fresh = calibration.Resume(cached, sess.Device, sess.Threads, warm, probe, t.search.MaxBatch)
	return t
}

// plan is the run's plan while searching: chunks of about 8 MiB (or the
// job's) in whole batches of every size the search may try, starting at the
// search's best setting so far. The sizes are powers of two, the largest the
// search's limit for this input or a kept search's best, found on a larger
// input.
func (t *tuner) plan(src Source, chunk int64) Plan {
	largest := max(t.search.MaxBatch, t.state.Best.BatchSize)
	plan := NewPlan(src.Samples(), largest, chunk, sampleBytes(src.Feeds()))
	plan.BatchSize = t.state.Best.BatchSize
	t.search.Chunk = plan.ChunkSamples
	return plan
}

// run is the search, run beside the pipeline; it ends when its grant is
// spent, it completes or the job has no chunk left.
func (t *tuner) run() error {
	defer close(t.done)
	out, err := t.search.Run(t.state, t.bench)
	t.outcome = out
	return err
}

// best is the setting the search ended at.
func (t *tuner) best() (chunkSetting, error) {
	sess, err := t.bench.session(t.state.Best.Threads)
	return chunkSetting{batch: t.state.Best.BatchSize, sess: sess}, err
}

// finish keeps the search's state and returns the run's choice and the
// session it ended with; d gets the sessions it created and what it cost.
func (t *tuner) finish(ctx context.Context, d *Durations) (BatchChoice, *Session, error) {
	best := t.state.Best
	choice := BatchChoice{BatchSize: best.BatchSize, Threads: best.Threads, Source: "cached", Trials: t.state.Trials, Partial: !t.state.Done()}
	switch {
	case t.outcome.Measured:
		choice.Source = "calibrated"
	case len(t.state.Trials) == 0:
		choice.Source = "default"
	}
	if t.fresh || t.outcome.Changed {
		// Not keeping it costs later runs a search, not this one its result.
		if err := calibrations(t.job).Save(ctx, t.key, t.state); err != nil {
			t.job.Logger.Warn("cannot keep the calibration", "err", err)
		}
	}
	d.Sessions += t.bench.sessTime.Seconds()
	d.Calibrate = max(0, t.outcome.Spent-t.bench.sessTime).Seconds()
	s, err := t.best()
	return choice, s.sess, err
}
