package inference

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// float32 rounding of a 24-wide and a 32-wide dot product stays far below this.
const tol = 1e-5

func TestOutputsMatchPureGoReference(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mlp, model := testMLP(t, dir)
	x := randomFloats(1000*24, 2)
	input := writeNpy(t, dir, "x.npy", []int64{1000, 24}, x)

	m, out := mustRun(t, Pass{Model: model, BatchSize: 64, ChunkSamples: 128}, input)

	wantLogits, wantProbs := mlp.Reference(x)
	shape, logits := readFloats(t, filepath.Join(out, "logits.npy"))
	require.Equal(t, []int64{1000, 5}, shape)
	requireClose(t, wantLogits, logits, tol, "logits")
	_, probs := readFloats(t, filepath.Join(out, "probs.npy"))
	requireClose(t, wantProbs, probs, tol, "probs")

	require.EqualValues(t, 1000, m.Samples)
	require.EqualValues(t, 8, m.Chunks) // 7 chunks of 128 and one of 104
	require.Equal(t, "flag", m.BatchChoice.Source)
	require.Equal(t, DeviceCPU, m.Device.Used)
	require.Equal(t, model.SHA256, m.Model.SHA256)
	require.FileExists(t, filepath.Join(out, ManifestFile))
}

// At one batch size the outputs must be byte-identical however the file is
// chunked or split, since batches are fixed sample ranges.
func TestOutputsAreByteIdenticalAcrossChunkingsAndSplits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, model := testMLP(t, dir)
	const n, batch = 1003, 16
	x := randomFloats(n*24, 3)
	input := writeNpy(t, dir, "x.npy", []int64{n, 24}, x)
	job := Pass{Model: model, BatchSize: batch, Threads: 1}

	_, ref := mustRun(t, job, input)
	_, refProbs := readNpy(t, filepath.Join(ref, "probs.npy"))
	for _, chunk := range []int64{16, 17, 48, 512, 100000} {
		job.ChunkSamples = chunk
		m, out := mustRun(t, job, input)
		require.Zero(t, m.ChunkSamples%batch, "chunk %d is not whole batches", chunk)
		_, probs := readNpy(t, filepath.Join(out, "probs.npy"))
		require.True(t, bytes.Equal(refProbs, probs), "chunk size %d changed the output bytes", chunk)
	}

	// Split the file at a batch boundary, run each half, and join the outputs.
	split := int64(batch * 40)
	first := writeNpy(t, dir, "first.npy", []int64{split, 24}, x[:split*24])
	second := writeNpy(t, dir, "second.npy", []int64{n - split, 24}, x[split*24:])
	job.ChunkSamples = 0
	_, out1 := mustRun(t, job, first)
	_, out2 := mustRun(t, job, second)
	_, p1 := readNpy(t, filepath.Join(out1, "probs.npy"))
	_, p2 := readNpy(t, filepath.Join(out2, "probs.npy"))
	require.True(t, bytes.Equal(refProbs, append(p1, p2...)), "split run differs from whole run")
}

func TestOutputsAgreeAcrossBatchSizes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mlp, model := testMLP(t, dir)
	x := randomFloats(777*24, 4)
	input := writeNpy(t, dir, "x.npy", []int64{777, 24}, x)
	_, want := mlp.Reference(x)
	for _, batch := range []int64{1, 7, 64, 777, 4096} {
		_, out := mustRun(t, Pass{Model: model, BatchSize: batch}, input)
		_, probs := readFloats(t, filepath.Join(out, "probs.npy"))
		requireClose(t, want, probs, tol, "probs")
	}
}

// Every input encoding of the same samples gives the same outputs.
func TestInputFormatsAndDTypes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, model := testMLP(t, dir)
	const n = 300
	// Small integers are exact in every dtype, so all encodings hold the same values.
	x := make([]float32, n*24)
	for i := range x {
		x[i] = float32(i%23 - 11)
	}
	job := Pass{Model: model, BatchSize: 32, Threads: 1}
	_, ref := mustRun(t, job, writeNpy(t, dir, "f4.npy", []int64{n, 24}, x))
	_, want := readNpy(t, filepath.Join(ref, "probs.npy"))

	encode := func(dt npy.DType, put func(b []byte, v float32)) []byte {
		b := make([]byte, len(x)*dt.Size)
		for i, v := range x {
			put(b[i*dt.Size:], v)
		}
		return b
	}
	inputs := map[string][]byte{
		"raw.bin": npy.FromFloat32(x),
		"f8.npy": append(npy.EncodeHeader(npy.DType{Kind: 'f', Size: 8}, []int64{n, 24}),
			encode(npy.DType{Kind: 'f', Size: 8}, func(b []byte, v float32) { putU64(b, math.Float64bits(float64(v))) })...),
		"i2.npy": append(npy.EncodeHeader(npy.DType{Kind: 'i', Size: 2}, []int64{n, 24}),
			encode(npy.DType{Kind: 'i', Size: 2}, func(b []byte, v float32) { b[0], b[1] = byte(int16(v)), byte(uint16(int16(v))>>8) })...),
		"i1.npy": append(npy.EncodeHeader(npy.DType{Kind: 'i', Size: 1}, []int64{n, 24}),
			encode(npy.DType{Kind: 'i', Size: 1}, func(b []byte, v float32) { b[0] = byte(int8(v)) })...),
	}
	for name, data := range inputs {
		m, out := mustRun(t, job, writeFile(t, dir, name, data))
		_, got := readNpy(t, filepath.Join(out, "probs.npy"))
		require.True(t, bytes.Equal(want, got), "%s gives other outputs than f4.npy", name)
		require.EqualValues(t, n, m.Samples, name)
	}
}

func putU64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

func TestWindowingASignal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	det := onnxmodel.EnergyDetector{Window: 64, Threshold: 1.5, Scale: 4}
	data, err := det.Model()
	model := writeModel(t, dir, "det.onnx", data, err)
	signal := randomFloats(10000, 5)
	const hop = 48
	for i := 2000; i < 2064; i++ {
		signal[i] *= 3
	}
	windows := (10000-64)/hop + 1
	gathered := make([]float32, 0, windows*64)
	for w := range windows {
		gathered = append(gathered, signal[w*hop:w*hop+64]...)
	}
	want := det.Reference(gathered)

	for _, name := range []string{"signal.npy", "signal.bin"} {
		path := writeNpy(t, dir, name, []int64{10000}, signal)
		if name == "signal.bin" {
			path = writeFile(t, dir, name, npy.FromFloat32(signal))
		}
		m, out := mustRun(t, Pass{Model: model, Windowing: Windowing{Window: 64, Hop: hop}, BatchSize: 10, ChunkSamples: 30}, path)
		require.EqualValues(t, windows, m.Samples)
		shape, probs := readFloats(t, filepath.Join(out, "probs.npy"))
		require.Equal(t, []int64{int64(windows), 2}, shape)
		event := make([]float32, windows)
		for i := range event {
			event[i] = probs[2*i+1]
		}
		requireClose(t, want, event, tol, name+" event probability")
	}
}

// A [T,C] signal windowed into [W,C] samples, and an npy whose dynamic dims
// come from the file, both through a model with a dynamic length axis.
func TestDynamicDimsAndMultichannelWindows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, err := onnxmodel.ChannelMean(3)
	model := writeModel(t, dir, "mean.onnx", data, err)

	signal := randomFloats(500*3, 6)
	m, out := mustRun(t, Pass{Model: model, Windowing: Windowing{Window: 20, Hop: 20}, BatchSize: 4}, writeNpy(t, dir, "sig.npy", []int64{500, 3}, signal))
	require.Equal(t, []int64{20, 3}, m.Input.SampleShape)
	_, mean := readFloats(t, filepath.Join(out, "mean.npy"))
	want := make([]float64, 0, 25*3)
	for w := range 25 {
		for c := range 3 {
			var s float64
			for i := range 20 {
				s += float64(signal[(w*20+i)*3+c])
			}
			want = append(want, s/20)
		}
	}
	requireClose(t, want, mean, tol, "window means")

	samples := randomFloats(7*11*3, 7)
	m, _ = mustRun(t, Pass{Model: model, BatchSize: 2}, writeNpy(t, dir, "x.npy", []int64{7, 11, 3}, samples))
	require.Equal(t, []int64{11, 3}, m.Input.SampleShape)
	require.Equal(t, []int64{7, 3}, m.Outputs[0].Shape)
}

func TestFixedBatchModelPadsTheLastBatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mlp := onnxmodel.NewMLP(24, 32, 5, 1)
	data, err := mlp.ModelWithBatch(8)
	model := writeModel(t, dir, "fixed.onnx", data, err)
	x := randomFloats(21*24, 8)
	m, out := mustRun(t, Pass{Model: model}, writeNpy(t, dir, "x.npy", []int64{21, 24}, x))
	require.Equal(t, "model", m.BatchChoice.Source)
	require.EqualValues(t, 8, m.BatchSize)
	_, want := mlp.Reference(x)
	_, probs := readFloats(t, filepath.Join(out, "probs.npy"))
	requireClose(t, want, probs, tol, "probs")
}

func TestCalibrationChoosesAndCaches(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("INFERSTACK_CACHE", t.TempDir())
	// Wide enough that a chunk of 4,096 rows takes milliseconds, so that a
	// job of some tenths of a second holds a step's measurements (at least
	// minMeasure each).
	data, err := onnxmodel.NewMLP(24, 1024, 5, 1).Model()
	model := writeModel(t, dir, "wide.onnx", data, err)
	// Chunks of 4,096 rows, not 8 MiB: more measurements in a small job.
	job := Pass{Model: model, ChunkSamples: 4096}

	// A small job spends its share, no more: the search goes on in later
	// runs (unless its steps won enough to pay for the rest).
	const rows = 200_000
	small := writeNpy(t, dir, "small.npy", []int64{rows, 24}, randomFloats(rows*24, 9))
	m, _ := mustRun(t, job, small)
	require.Contains(t, []string{"calibrated", "default"}, m.BatchChoice.Source)
	require.Less(t, m.Durations.Calibrate, 0.5*m.Durations.Total+0.01, "calibration dwarfs a small job")

	// Later small jobs go on from where it stopped, each spending its share,
	// until the search completes; from then on the choice is cached.
	// Each uses the default or a setting it measured. A share the size of
	// the job keeps this to a few runs (TestSearchBudget has the pace at the
	// default share, on a fake clock).
	job.calibrationShare = share(1)
	runs := 1
	for m.BatchChoice.Partial {
		m, _ = mustRun(t, job, small)
		runs++
		require.Less(t, runs, 200, "small jobs never complete the search: %+v", m.BatchChoice)
		if m.BatchChoice.Source != "default" {
			require.NotZero(t, calibration.RateOf(m.BatchChoice.Trials, m.BatchSize, m.Threads), "run %d uses a setting it did not measure: %+v", runs, m.BatchChoice)
		}
	}
	require.Greater(t, len(m.BatchChoice.Trials), 2)
	require.NotZero(t, calibration.RateOf(m.BatchChoice.Trials, m.BatchSize, m.Threads), "the choice was measured")
	require.True(t, comparedThreads(m.BatchChoice.Trials), "the search completed without comparing every thread count at one batch size: %+v", m.BatchChoice.Trials)
	t.Logf("the search completed on run %d: %+v", runs, m.BatchChoice)
	done := m.BatchChoice

	// A fresh process with the cached choice creates one session only: the
	// one it runs with.
	fresh, err := LoadModel(model.Path)
	require.NoError(t, err)
	t.Cleanup(fresh.Close)
	cached, _ := mustRun(t, Pass{Model: fresh}, small)
	require.Equal(t, "cached", cached.BatchChoice.Source)
	require.Equal(t, done.BatchSize, cached.BatchSize)
	require.Equal(t, done.Threads, cached.Threads)
	require.Equal(t, done.Trials, cached.BatchChoice.Trials)
	require.Len(t, fresh.sessions, 1)
	require.Zero(t, cached.Durations.Calibrate)

	// Given the budget of a long job, one run completes the search, on
	// enough chunks.
	t.Setenv("INFERSTACK_CACHE", t.TempDir())
	job.calibrationShare = share(1000) // a budget no step exceeds
	const n = 2_000_000
	big := writeNpy(t, dir, "big.npy", []int64{n, 24}, randomFloats(n*24, 9))
	first, _ := mustRun(t, job, big)
	require.Equal(t, "calibrated", first.BatchChoice.Source)
	require.False(t, first.BatchChoice.Partial, "trials: %+v", first.BatchChoice.Trials)
	second, _ := mustRun(t, job, big)
	require.Equal(t, "cached", second.BatchChoice.Source)
	require.Equal(t, first.BatchSize, second.BatchSize)
	require.Equal(t, first.Threads, second.Threads)
}

func TestPretrainedClassifierGivesProbabilities(t *testing.T) {
	t.Parallel()
	model, err := LoadModel(pretrainedModel(t))
	require.NoError(t, err)
	require.Len(t, model.Inputs, 1)
	require.Equal(t, "x", model.Inputs[0].Name)
	require.Equal(t, []int64{-1, 3, -1, -1}, model.Inputs[0].Shape)

	dir := t.TempDir()
	const n = 37
	x := randomFloats(n*3*48*192, 10)
	m, out := mustRun(t, Pass{Model: model, BatchSize: 8}, writeNpy(t, dir, "crops.npy", []int64{n, 3, 48, 192}, x))
	require.Len(t, m.Outputs, 1)
	shape, probs := readFloats(t, filepath.Join(out, m.Outputs[0].File))
	require.Equal(t, []int64{n, 2}, shape)
	for i := range n {
		p0, p1 := probs[2*i], probs[2*i+1]
		require.True(t, p0 >= 0 && p1 >= 0, "sample %d: negative probability", i)
		require.InDelta(t, 1, p0+p1, 1e-5, "sample %d: probabilities sum to %v", i, p0+p1)
	}
}

func TestDeviceSelection(t *testing.T) {
	t.Parallel()
	_, model := testMLP(t, t.TempDir())
	// This machine has no CUDA provider: auto falls back and says why; gpu refuses.
	s, err := model.NewSession(DeviceAuto, 1)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, DeviceCPU, s.Device)
	require.NotEmpty(t, s.Fallback)

	_, err = model.NewSession(DeviceGPU, 1)
	require.ErrorIs(t, err, ErrUnavailable)
	require.Contains(t, err.Error(), "cuda")
}

func TestBadInputsFailCleanly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, model := testMLP(t, dir)
	good := writeNpy(t, dir, "good.npy", []int64{10, 24}, randomFloats(240, 11))
	full, _ := os.ReadFile(good)
	cases := []struct {
		name, file string
		data       []byte
		windowing  Windowing
		kind       error
		message    string
	}{
		{"truncated npy", "trunc.npy", full[:len(full)-7], Windowing{}, ErrBadInput, "truncated"},
		{"truncated header", "hdr.npy", full[:20], Windowing{}, ErrBadInput, "npy"},
		{"absurd size", "huge.npy", append(npy.EncodeHeader(npy.Float32, []int64{1 << 40, 24}), full[128:]...), Windowing{}, ErrBadInput, "header promises"},
		{"shape mismatch", "wide.npy", append(npy.EncodeHeader(npy.Float32, []int64{8, 30}), make([]byte, 8*30*4)...), Windowing{}, ErrBadInput, "model needs 24"},
		{"rank mismatch", "rank.npy", append(npy.EncodeHeader(npy.Float32, []int64{240}), make([]byte, 240*4)...), Windowing{}, ErrBadInput, "rank"},
		{"raw not whole rows", "x.bin", make([]byte, 24*4*3+5), Windowing{}, ErrBadInput, "not a whole number"},
		{"bool dtype", "b.npy", append(npy.EncodeHeader(npy.DType{Kind: 'b', Size: 1}, []int64{2, 24}), make([]byte, 48)...), Windowing{}, ErrBadInput, "boolean"},
		{"empty", "empty.npy", npy.EncodeHeader(npy.Float32, []int64{0, 24}), Windowing{}, ErrBadInput, "no samples"},
		{"window longer than signal", "short.bin", make([]byte, 10*4), Windowing{Window: 24, Hop: 1}, ErrBadInput, "no samples"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, tc.file, tc.data)
			_, out, err := runFile(t, Pass{Model: model, BatchSize: 4, Windowing: tc.windowing}, path)
			require.ErrorIs(t, err, tc.kind)
			require.Contains(t, err.Error(), tc.message)
			require.NotContains(t, err.Error(), "\n")
			require.NoFileExists(t, filepath.Join(out, ManifestFile))
		})
	}
}

func TestBadModelIsRefused(t *testing.T) {
	t.Parallel()
	path := writeFile(t, t.TempDir(), "not.onnx", []byte("this is not a model"))
	_, err := LoadModel(path)
	require.ErrorIs(t, err, ErrBadModel)
	require.Contains(t, err.Error(), "not a valid onnx model")
	require.NotContains(t, err.Error(), "\n")
}

// brokenDisk fails every read past failAt, like a disk or a network mount
// going away in the middle of a job.
type brokenDisk struct {
	io.ReaderAt
	failAt int64
}

func (b brokenDisk) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > b.failAt {
		return 0, errors.New("input/output error")
	}
	return b.ReaderAt.ReadAt(p, off)
}

// A re-run that fails midway into a directory holding an earlier result must
// leave neither that manifest nor its own partial outputs.
func TestFailedRunLeavesNoManifestNorPartialOutputs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, model := testMLP(t, dir)
	const n = 4000
	input := writeNpy(t, dir, "x.npy", []int64{n, 24}, randomFloats(n*24, 12))
	out := filepath.Join(dir, "out")
	job := Pass{Model: model, BatchSize: 16, ChunkSamples: 256}
	_, err := runInto(t, job, input, NewDirSink(out))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(out, ManifestFile))

	f, err := os.Open(input)
	require.NoError(t, err)
	defer f.Close()
	job.Input, job.InputSize, job.InputName, job.Device = brokenDisk{f, n / 2 * 24 * 4}, int64(n*24*4+128), input, DeviceCPU
	_, err = Run(t.Context(), job, NewDirSink(out))
	require.ErrorContains(t, err, "input/output error")
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Empty(t, entries, "a failed run left files behind")
}

func TestUnwritableOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, model := testMLP(t, dir)
	good := writeNpy(t, dir, "good.npy", []int64{10, 24}, randomFloats(240, 13))
	blocker := writeFile(t, dir, "file", []byte("x"))
	_, err := runInto(t, Pass{Model: model, BatchSize: 4}, good, NewDirSink(filepath.Join(blocker, "out")))
	require.ErrorIs(t, err, ErrOutput)
}

func TestOutputFileNamesAreSafeAndUnique(t *testing.T) {
	t.Parallel()
	taken := map[string]bool{"manifest": true}
	require.Equal(t, "probs", uniqueFileName("probs", taken))
	require.Equal(t, "probs_2", uniqueFileName("probs", taken))
	require.Equal(t, "_x_y_0", uniqueFileName("/x/y:0", taken))
	require.Equal(t, "manifest_2", uniqueFileName("manifest", taken))
	require.Equal(t, "output", uniqueFileName("..", taken))
}

// memSink keeps every chunk's output rows by chunk start.
type memSink struct{ chunks map[int64][][]byte }

func (m *memSink) Start(Plan, []OutputSpec) error {
	m.chunks = map[int64][][]byte{}
	return nil
}
func (m *memSink) WriteChunk(start int64, rows [][]byte) error {
	copied := make([][]byte, len(rows))
	for i, r := range rows {
		copied[i] = bytes.Clone(r)
	}
	m.chunks[start] = copied
	return nil
}
func (m *memSink) Finish(*Manifest) error { return nil }
func (m *memSink) Abort()                 {}

func TestResumeWritesTheRemainingChunksIdentically(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, model := testMLP(t, dir)
	input := writeNpy(t, dir, "x.npy", []int64{1000, 24}, randomFloats(1000*24, 14))
	job := Pass{Model: model, BatchSize: 16, ChunkSamples: 128, Threads: 1}
	full := &memSink{}
	_, err := runInto(t, job, input, full)
	require.NoError(t, err)
	require.Len(t, full.chunks, 8)

	job.StartChunk = 5
	resumed := &memSink{}
	m, err := runInto(t, job, input, resumed)
	require.NoError(t, err)
	require.EqualValues(t, 5, m.ResumedAt)
	require.Len(t, resumed.chunks, 3, "only the chunks after the checkpoint run")
	for start, rows := range resumed.chunks {
		require.Equal(t, full.chunks[start], rows, "chunk at %d", start)
	}

	job.StartChunk = 9
	_, err = runInto(t, job, input, &memSink{})
	require.ErrorContains(t, err, "the plan has 8 chunks")
}
