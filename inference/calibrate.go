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

// calibrate goes on with the search from the cached state (nil: a new
// search) on the input's first samples, with sess, the session the run
// already has, among its candidates; the run's probe ran warm samples in
// probe. It returns the choice, the session for it and the time spent
// creating sessions.
func calibrate(ctx context.Context, job Pass, src Source, outputs []OutputSpec, sess *Session, cached *calibration.State, warm int64, probe time.Duration) (BatchChoice, *Session, time.Duration, error) {
	bench := newORTBench(ctx, job, src, outputs, sess)
	defer bench.close()
	search := calibration.Search{
		Samples:    src.Samples(),
		Share:      calibrationShare(job),
		MaxBatch:   maxBatch(src, sess.Device),
		Candidates: bench.candidates,
		Warm:       calibration.Setting{Threads: sess.Threads, Batch: warm},
	}
	state, fresh := calibration.Resume(cached, sess.Device, sess.Threads, warm, probe, search.MaxBatch)
	measured, changed, err := search.Run(state, bench)
	if err != nil {
		return BatchChoice{}, nil, bench.sessTime, err
	}
	best := state.Best
	choice := BatchChoice{BatchSize: best.BatchSize, Threads: best.Threads, Source: "cached", Trials: state.Trials, Partial: !state.Done()}
	switch {
	case measured:
		choice.Source = "calibrated"
	case len(state.Trials) == 0:
		choice.Source = "default"
	}
	if fresh || changed {
		// Not keeping it costs later runs a search, not this one its result.
		if err := calibrations(job).Save(ctx, calibrationKey(job, src), state); err != nil {
			job.Logger.Warn("cannot keep the calibration", "err", err)
		}
	}
	chosen, err := bench.session(best.Threads)
	return choice, chosen, bench.sessTime, err
}
