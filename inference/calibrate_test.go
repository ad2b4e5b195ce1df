package inference

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/inference/manifest"
)

// Until the bank affords a step, runs use the default (all cores at the
// start batch) and measure nothing.
func TestCalibrationRunsTheDefaultUntilItCanAffordAStep(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("INFERSTACK_CACHE", t.TempDir())
	_, model := testMLP(t, dir)
	input := writeNpy(t, dir, "x.npy", []int64{5000, 24}, randomFloats(5000*24, 10))
	var start int64
	for i := range 2 {
		m, _ := mustRun(t, Pass{Model: model, calibrationShare: share(0)}, input)
		require.Equal(t, "default", m.BatchChoice.Source, "run %d", i+1)
		require.True(t, m.BatchChoice.Partial)
		require.Empty(t, m.BatchChoice.Trials, "no budget, no measurement")
		require.Equal(t, DefaultThreads(), m.Threads)
		if i == 0 {
			start = m.BatchSize
			require.GreaterOrEqual(t, start, int64(calibration.MidBatch), "the start batch")
		}
		require.Equal(t, start, m.BatchSize, "run %d: the start batch", i+1)
	}
}

// share is a job's calibration share for a test.
func share(s float64) *float64 { return &s }

// comparedThreads says whether some batch size saw every thread count.
func comparedThreads(trials []Trial) bool {
	byBatch := map[int64][]Trial{}
	for _, tr := range trials {
		byBatch[tr.BatchSize] = append(byBatch[tr.BatchSize], tr)
	}
	for _, at := range byBatch {
		if slices.Equal(calibration.ThreadCandidates(runtime.NumCPU()), threadsTried(at)) {
			return true
		}
	}
	return false
}

// Calibration's batches stop at a power of two within the input, within
// maxCalibrationSamples and, on a CPU, within one default chunk of input.
func TestMaxBatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		samples int64
		shape   []int64
		device  Device
		want    int64
	}{
		{2048, []int64{3, 48, 192}, DeviceCPU, 64},    // 110 KB crops: 8 MiB holds 75
		{100_000, []int64{3, 64, 64}, DeviceCPU, 128}, // 48 KB images: 170
		{400_000, []int64{256}, DeviceCPU, maxCalibrationSamples},
		{100, []int64{256}, DeviceCPU, 64},
		{10, []int64{1 << 22}, DeviceCPU, 1}, // 16 MiB samples: one at a time
		{100_000, []int64{3, 224, 224}, DeviceCPU, 8},
		{100_000, []int64{3, 224, 224}, DeviceGPU, 128}, // a GPU gets 128 MiB
	} {
		layout := &Layout{Layout: manifest.Layout{Samples: tc.samples, SampleShape: tc.shape},
			feed: Feed{Name: "x", DType: "float32", SampleShape: tc.shape}}
		require.Equal(t, tc.want, maxBatch(layout, tc.device), "%+v", tc)
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

	// Chunks of 1,000 rows: the search's first chunk warms up, unmeasured.
	first, _ := mustRun(t, Pass{Model: model, ChunkSamples: 1000}, input)
	d := first.Durations
	require.Positive(t, d.ModelLoad, "the first run of a model reports its load")
	require.Positive(t, d.Sessions)
	require.Positive(t, d.Probe)
	require.Equal(t, "calibrated", first.BatchChoice.Source)
	require.GreaterOrEqual(t, d.Calibrate, 0.0, "what the search's chunks lost, if anything")
	require.Less(t, d.Sessions+d.Probe+d.Calibrate, d.Total, "set-up is part of the run's total")

	second, _ := mustRun(t, Pass{Model: model, ChunkSamples: 1000}, input)
	d = second.Durations
	require.Zero(t, d.ModelLoad, "loaded once, reported once")
	require.Less(t, d.Sessions, first.Durations.Sessions/10, "the model's sessions are kept: a lookup, not a creation")
	require.Zero(t, d.RuntimeLoad, "the process's ONNX Runtime load is reported by one run at most")
	require.Positive(t, d.Probe)
}

// The local cache keeps each search under its key, so a later run resumes
// it, and a save merges with what another run saved meanwhile.
func TestLocalCalibrationsKeepTheSearch(t *testing.T) {
	t.Setenv("INFERSTACK_CACHE", t.TempDir())
	ctx := t.Context()
	store := localCalibrations{}
	kept, err := store.Load(ctx, "a")
	require.NoError(t, err)
	require.Nil(t, kept)
	best := Trial{BatchSize: 64, Threads: 2, SamplesPerSec: 1500}
	state := &calibration.State{Device: DeviceCPU, Best: best, Trials: []Trial{best}, Start: 16, Bank: 0.25}
	require.NoError(t, store.Save(ctx, "a", state))
	require.NoError(t, store.Save(ctx, "b", &calibration.State{Device: DeviceCPU}))
	kept, err = store.Load(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, state, kept)

	other := Trial{BatchSize: 32, Threads: 2, SamplesPerSec: 1400}
	require.NoError(t, store.Save(ctx, "a", &calibration.State{Device: DeviceCPU, Best: other, Trials: []Trial{other}, Start: 16}))
	kept, err = store.Load(ctx, "a")
	require.NoError(t, err)
	require.ElementsMatch(t, []Trial{best, other}, kept.Trials)
}

// calibrationsFn is a CalibrationStore of functions.
type calibrationsFn struct {
	load func(key string) (*calibration.State, error)
	save func(key string, state *calibration.State) error
}

func (c calibrationsFn) Load(_ context.Context, key string) (*calibration.State, error) {
	return c.load(key)
}

func (c calibrationsFn) Save(_ context.Context, key string, state *calibration.State) error {
	return c.save(key, state)
}

// A run reads its search from the job's store; a kept state without a best
// setting is no search, and a store that fails costs a search, not the run.
func TestCachedCalibrationReadsTheJobsStore(t *testing.T) {
	t.Parallel()
	model := &Model{ModelInfo: ModelInfo{SHA256: "abc", Inputs: []manifest.Tensor{{Name: "x", DType: "float32", Shape: []int64{-1, 24}}}}}
	src := &memSource{feeds: []Feed{{Name: "x", DType: "float32", SampleShape: []int64{24}}}, n: 1000}
	best := Trial{BatchSize: 64, Threads: 2, SamplesPerSec: 1500}
	for name, tc := range map[string]struct {
		kept *calibration.State
		err  error
		want *calibration.State
	}{
		"a search":       {kept: &calibration.State{Device: DeviceCPU, Best: best, Start: 16}, want: &calibration.State{Device: DeviceCPU, Best: best, Start: 16}},
		"none":           {},
		"no best":        {kept: &calibration.State{Device: DeviceCPU}},
		"a failed store": {err: errors.New("denied")},
	} {
		var asked string
		job := Pass{Model: model, Device: DeviceCPU, Logger: slog.New(slog.DiscardHandler), Calibrations: calibrationsFn{
			load: func(key string) (*calibration.State, error) { asked = key; return tc.kept, tc.err },
		}}
		require.Equal(t, tc.want, cachedCalibration(t.Context(), job, src), name)
		require.Equal(t, calibrationKey(job, src), asked, name)
	}
}

// The key names the model, the sample shape, the device, the thread
// setting, the hardware and the versions, and nothing else: not the host,
// which on ECS is new for every task.
func TestCalibrationKey(t *testing.T) {
	t.Parallel()
	model := &Model{ModelInfo: ModelInfo{SHA256: "abc"}}
	src := &memSource{feeds: []Feed{{Name: "x", DType: "float32", SampleShape: []int64{24}}}}
	hw := Hardware{Arch: "amd64", CPU: "AMD EPYC 7R13 Processor", CPUs: 4, GPUs: []string{"NVIDIA A10G"}}
	job := Pass{Model: model, Device: DeviceAuto, Threads: 0}
	id := newCalibrationIdentity(job, src, hw)
	require.Equal(t, newCalibrationIdentity(job, src, hostHardware()).key(), calibrationKey(job, src))
	host, err := os.Hostname()
	require.NoError(t, err)
	data, err := json.Marshal(newCalibrationIdentity(job, src, hostHardware()))
	require.NoError(t, err)
	require.NotContains(t, string(data), `"`+host+`"`, "the key names the host")

	for name, other := range map[string]calibrationIdentity{
		"model":   newCalibrationIdentity(Pass{Model: &Model{ModelInfo: ModelInfo{SHA256: "abd"}}, Device: DeviceAuto}, src, hw),
		"shape":   newCalibrationIdentity(job, &memSource{feeds: []Feed{{Name: "x", DType: "float32", SampleShape: []int64{25}}}}, hw),
		"device":  newCalibrationIdentity(Pass{Model: model, Device: DeviceGPU}, src, hw),
		"threads": newCalibrationIdentity(Pass{Model: model, Device: DeviceAuto, Threads: 2}, src, hw),
		"cpu":     newCalibrationIdentity(job, src, Hardware{Arch: "amd64", CPU: "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", CPUs: 4, GPUs: hw.GPUs}),
		"cpus":    newCalibrationIdentity(job, src, Hardware{Arch: "amd64", CPU: hw.CPU, CPUs: 2, GPUs: hw.GPUs}),
		"gpu":     newCalibrationIdentity(job, src, Hardware{Arch: "amd64", CPU: hw.CPU, CPUs: 4, GPUs: []string{"Tesla T4"}}),
	} {
		require.NotEqual(t, id.key(), other.key(), name)
	}
	// A CPU search does not depend on the GPUs beside it.
	cpu := Pass{Model: model, Device: DeviceCPU}
	require.Equal(t, newCalibrationIdentity(cpu, src, hw).key(), newCalibrationIdentity(cpu, src, Hardware{Arch: "amd64", CPU: hw.CPU, CPUs: 4}).key())
}

// A kept search goes on on an input smaller than the one it was found on,
// from a best batch larger than this input's limit: the search's chunks
// hold that batch whole, and the results are the model's.
func TestAKeptSearchGoesOnOnASmallerInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mlp, model := testMLP(t, dir)
	var saved *calibration.State
	store := calibrationsFn{
		load: func(string) (*calibration.State, error) {
			best := Trial{BatchSize: 512, Threads: DefaultThreads(), SamplesPerSec: 1e7}
			return &calibration.State{Device: DeviceCPU, Best: best, Trials: []Trial{best}, Step: "up", Start: 16, Bank: 1}, nil
		},
		save: func(_ string, state *calibration.State) error { saved = state; return nil },
	}
	const n = 300 // a batch limit of 256
	x := randomFloats(n*24, 12)
	m, out := mustRun(t, Pass{Model: model, Device: DeviceCPU, Calibrations: store}, writeNpy(t, dir, "x.npy", []int64{n, 24}, x))
	require.Equal(t, int64(512), m.ChunkSamples)
	require.NotNil(t, saved, "the search went on and was kept")
	_, want := mlp.Reference(x)
	_, probs := readFloats(t, filepath.Join(out, "probs.npy"))
	requireClose(t, want, probs, tol, "probs")
}
