package inference

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// memSource is a source over rows already in memory, one buffer per feed:
// what a table reader hands the pipeline.
type memSource struct {
	feeds []Feed
	data  [][]byte
	n     int64
}

func (m *memSource) Samples() int64 { return m.n }
func (m *memSource) Feeds() []Feed  { return m.feeds }
func (m *memSource) Describe() manifest.Layout {
	return manifest.Layout{Format: "memory", Samples: m.n}
}
func (m *memSource) Read(start, end int64, dst [][]byte) error {
	for i, f := range m.feeds {
		copy(dst[i], m.data[i][start*f.SampleBytes():end*f.SampleBytes()])
	}
	return nil
}

func le[T float32 | float64 | int64 | int32](v []T) []byte {
	out, err := binary.Append(nil, binary.LittleEndian, v)
	if err != nil {
		panic(err)
	}
	return out
}

// A model with a float32 [N,K] and an int64 [N] input gets a tensor of each
// type, batch after batch, chunk after chunk, and its outputs are the
// reference's, however the batches fall (a short last batch included).
func TestSeveralTypedInputsFeedTheirOwnTensors(t *testing.T) {
	t.Parallel()
	const n, k, c = 1003, 4, 5
	tab := onnxmodel.NewTabular(k, c, 7)
	data, err := tab.Model()
	dir := t.TempDir()
	model := writeModel(t, dir, "tabular.onnx", data, err)
	require.Len(t, model.Inputs, 2)

	x := randomFloats(n*k, 8)
	category := make([]int64, n)
	for i := range category {
		category[i] = int64(i*7) % c
	}
	src := &memSource{n: n, data: [][]byte{le(x), le(category)}, feeds: []Feed{
		{Name: "float_input", DType: "float32", SampleShape: []int64{k}},
		{Name: "category", DType: "int64", SampleShape: []int64{}},
	}}
	out := filepath.Join(dir, "out")
	m, err := Run(t.Context(), Pass{Model: model, Source: src, InputName: "rows", Device: DeviceCPU, BatchSize: 64, ChunkSamples: 256}, NewDirSink(out))
	require.NoError(t, err)
	require.Equal(t, int64(n), m.Samples)
	require.Equal(t, "memory", m.Input.Format)

	wantScore, wantProbs, err := tab.Reference(x, category)
	require.NoError(t, err)
	shape, score := readFloats(t, filepath.Join(out, "score.npy"))
	require.Equal(t, []int64{n, 1}, shape)
	requireClose(t, wantScore, score, 1e-6, "score")
	shape, probs := readFloats(t, filepath.Join(out, "probs.npy"))
	require.Equal(t, []int64{n, 2}, shape)
	requireClose(t, wantProbs, probs, 1e-6, "probs")
}

// float64, bool and int32 inputs, and float64 and bool outputs.
func TestInputsAndOutputsOfOtherTypes(t *testing.T) {
	t.Parallel()
	const n, k = 300, 3
	mixed := onnxmodel.NewMixedTypes(k, 9)
	data, err := mixed.Model()
	dir := t.TempDir()
	model := writeModel(t, dir, "mixed.onnx", data, err)

	x := make([]float64, n*k)
	for i, v := range randomFloats(n*k, 10) {
		x[i] = float64(v)
	}
	flag, flagBytes, offset := make([]bool, n), make([]byte, n), make([]int32, n)
	for i := range n {
		flag[i] = i%3 != 0
		if flag[i] {
			flagBytes[i] = 1
		}
		offset[i] = int32(i%11 - 5)
	}
	src := &memSource{n: n, data: [][]byte{le(x), flagBytes, le(offset)}, feeds: []Feed{
		{Name: "x", DType: "float64", SampleShape: []int64{k}},
		{Name: "flag", DType: "bool", SampleShape: []int64{}},
		{Name: "offset", DType: "int32", SampleShape: []int64{}},
	}}
	out := filepath.Join(dir, "out")
	_, err = Run(t.Context(), Pass{Model: model, Source: src, InputName: "rows", Device: DeviceCPU, BatchSize: 32}, NewDirSink(out))
	require.NoError(t, err)

	wantY, wantPositive, err := mixed.Reference(x, flag, offset)
	require.NoError(t, err)
	shape, raw := readNpy(t, filepath.Join(out, "y.npy"))
	require.Equal(t, []int64{n}, shape)
	for i := range n {
		got := math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		require.InDelta(t, wantY[i], got, 1e-12, "y[%d]", i)
	}
	shape, raw = readNpy(t, filepath.Join(out, "positive.npy"))
	require.Equal(t, []int64{n}, shape)
	for i := range n {
		require.Equal(t, wantPositive[i], raw[i] == 1, "positive[%d]", i)
	}
}

// A file of samples feeds one input: a model with several is refused with
// the way out, before anything runs.
func TestSeveralInputsFromANpyFileAreRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, err := onnxmodel.NewTabular(4, 5, 7).Model()
	model := writeModel(t, dir, "tabular.onnx", data, err)
	_, _, err = runFile(t, Pass{Model: model, Device: DeviceCPU}, writeNpy(t, dir, "x.npy", []int64{10, 4}, randomFloats(40, 1)))
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "the model has 2 inputs (float_input, category)")
	require.ErrorContains(t, err, "give a table")
}

// A .npy of the input's own type feeds a model whose one input is not
// float32, byte for byte; another dtype, or a raw file, is refused naming
// both types.
func TestANpyOfTheInputsTypeFeedsIt(t *testing.T) {
	t.Parallel()
	const n, k = 50, 6
	dir := t.TempDir()
	data, err := onnxmodel.IntSum(k)
	model := writeModel(t, dir, "sum.onnx", data, err)
	ids := make([]int64, n*k)
	for i := range ids {
		ids[i] = int64(i*31%1000) - 500
	}
	in := writeFile(t, dir, "ids.npy", npy.EncodeHeader(npy.DType{Kind: 'i', Size: 8}, []int64{n, k}), le(ids))
	m, out := mustRun(t, Pass{Model: model, Device: DeviceCPU, BatchSize: 8}, in)
	require.Equal(t, "<i8", m.Input.DType)
	shape, raw := readNpy(t, filepath.Join(out, "sum.npy"))
	require.Equal(t, []int64{n}, shape)
	for r := range n {
		var want int64
		for _, v := range ids[r*k : (r+1)*k] {
			want += v
		}
		require.Equal(t, want, int64(binary.LittleEndian.Uint64(raw[8*r:])), "row %d", r)
	}

	narrow := writeFile(t, dir, "ids32.npy", npy.EncodeHeader(npy.DType{Kind: 'i', Size: 4}, []int64{n, k}), make([]byte, n*k*4))
	_, _, err = runFile(t, Pass{Model: model, Device: DeviceCPU}, narrow)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, `dtype <i4 does not feed model input "ids", which is int64`)
	rawFile := writeFile(t, dir, "ids.bin", le(ids))
	_, _, err = runFile(t, Pass{Model: model, Device: DeviceCPU}, rawFile)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "a raw file is float32")
}
