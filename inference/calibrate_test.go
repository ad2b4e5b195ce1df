package inference

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A budget too small for any batch-size step still compares every thread
// count; the next run uses that partial choice without measuring again.
func TestCalibrationAlwaysTriesEveryThreadCount(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("INFERSTACK_CACHE", t.TempDir())
	_, model := testMLP(t, dir)
	share := calibrationShare
	calibrationShare = 0
	t.Cleanup(func() { calibrationShare = share })
	input := writeNpy(t, dir, "x.npy", []int64{5000, 24}, randomFloats(5000*24, 10))
	for i, source := range []string{"calibrated", "cached"} {
		m, _ := mustRun(t, Job{Model: model}, input)
		require.Equal(t, source, m.BatchChoice.Source, "run %d", i+1)
		require.True(t, m.BatchChoice.Partial)
		require.Equal(t, threadCandidates(runtime.NumCPU()), threadsTried(m.BatchChoice.Trials))
		require.Equal(t, m.BatchChoice.Trials[0].BatchSize, m.BatchSize, "no batch step fitted the budget: the threads' batch")
	}
}

// Threads are compared at batch 16, or, for a model so light that 16
// samples run in under a millisecond, at a batch that takes that long.
func TestThreadsBatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		probe   time.Duration // for 16 samples
		samples int64
		want    int64
	}{
		{12 * time.Millisecond, 100_000, 16}, // a classifier
		{time.Millisecond, 100_000, 16},
		{300 * time.Microsecond, 100_000, 64},
		{20 * time.Microsecond, 100_000, maxCalibrationSamples}, // an MLP: as far as calibration reads
		{20 * time.Microsecond, 100, 100},                       // never past the input
	} {
		require.Equal(t, tc.want, threadsBatch(16, tc.probe, tc.samples), "%v", tc)
	}
}

func TestThreadCandidates(t *testing.T) {
	t.Parallel()
	for cpus, want := range map[int][]int{1: {1}, 2: {1, 2}, 3: {1, 2, 3}, 4: {1, 2, 3, 4}, 16: {1, 8, 15, 16}} {
		require.Equal(t, want, threadCandidates(cpus), "%d cpus", cpus)
	}
}

// threadsTried lists the distinct thread counts of trials in ascending order.
func threadsTried(trials []Trial) []int {
	var threads []int
	for _, tr := range trials {
		threads = append(threads, tr.Threads)
	}
	slices.Sort(threads)
	return slices.Compact(threads)
}

func rateOf(trials []Trial, batch int64, threads int) float64 {
	for _, tr := range trials {
		if tr.BatchSize == batch && tr.Threads == threads {
			return tr.SamplesPerSec
		}
	}
	return 0
}

// The manifest accounts for a run's fixed costs: the model's load and its
// sessions are paid, and reported, by the first run that uses them; a later
// run of the same model reports none, and no run reports a cost twice.
func TestManifestReportsFixedCostsOncePerModel(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("INFERSTACK_CACHE", t.TempDir())
	_, loaded := testMLP(t, dir)
	model, err := LoadModel(loaded.Path) // fresh: no run has used it
	require.NoError(t, err)
	t.Cleanup(model.Close)
	input := writeNpy(t, dir, "x.npy", []int64{5000, 24}, randomFloats(5000*24, 11))

	first, _ := mustRun(t, Job{Model: model}, input)
	d := first.Durations
	require.Positive(t, d.ModelLoad, "the first run of a model reports its load")
	require.Positive(t, d.Sessions)
	require.Positive(t, d.Probe)
	require.Positive(t, d.Calibrate)
	require.Less(t, d.Sessions+d.Probe+d.Calibrate, d.Total, "set-up is part of the run's total")

	second, _ := mustRun(t, Job{Model: model}, input)
	d = second.Durations
	require.Zero(t, d.ModelLoad, "loaded once, reported once")
	require.Less(t, d.Sessions, first.Durations.Sessions/10, "the model's sessions are kept: a lookup, not a creation")
	require.Zero(t, d.RuntimeLoad, "the process's ONNX Runtime load is reported by one run at most")
	require.Positive(t, d.Probe)
}
