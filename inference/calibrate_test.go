package inference

import (
	"runtime"
	"slices"
	"testing"

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
		require.EqualValues(t, midBatch, m.BatchSize, "no batch step fitted the budget")
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
