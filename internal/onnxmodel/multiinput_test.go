package onnxmodel_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// TestMain loads the real ONNX Runtime once, as inference's tests do; these
// tests mean nothing without it, so its absence fails loudly with the fix.
// inference is imported for the library's path and loading only (it does not
// import this package outside its tests, so there is no cycle).
func TestMain(m *testing.M) {
	if _, err := inference.InitRuntime(inference.DefaultLibPath()); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: these tests need ONNX Runtime %s: %v\n", inference.ORTVersion, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// float32Tol bounds ORT's float32 arithmetic against the float64 references
// for values of order 1 and sums of a few dozen terms (measured at most 1.8e-7).
const float32Tol = 1e-6

// session creates a one-thread ORT session (the cores are shared) that feeds
// inputs by name, in the order given, and releases it with the test.
func session(t *testing.T, model []byte, inputs, outputs []string) *ort.DynamicAdvancedSession {
	t.Helper()
	opts, err := ort.NewSessionOptions()
	require.NoError(t, err)
	defer opts.Destroy()
	require.NoError(t, opts.SetIntraOpNumThreads(1))
	require.NoError(t, opts.SetInterOpNumThreads(1))
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, inputs, outputs, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Destroy() })
	return s
}

func tensor[T ort.TensorData](t *testing.T, data []T, dims ...int64) *ort.Tensor[T] {
	t.Helper()
	v, err := ort.NewTensor(ort.NewShape(dims...), data)
	require.NoError(t, err)
	t.Cleanup(func() { v.Destroy() })
	return v
}

func empty[T ort.TensorData](t *testing.T, dims ...int64) *ort.Tensor[T] {
	t.Helper()
	v, err := ort.NewEmptyTensor[T](ort.NewShape(dims...))
	require.NoError(t, err)
	t.Cleanup(func() { v.Destroy() })
	return v
}

// maxDiff is the largest |got-want|; it fails on a length mismatch.
func maxDiff[T float32 | float64](t *testing.T, got []T, want []float64) float64 {
	t.Helper()
	require.Len(t, got, len(want))
	var d float64
	for i, v := range got {
		d = max(d, math.Abs(float64(v)-want[i]))
	}
	return d
}

func timed(t *testing.T, what string, f func() error) {
	t.Helper()
	start := time.Now()
	require.NoError(t, f(), what)
	t.Logf("%s: %v", what, time.Since(start).Round(time.Microsecond))
}

func TestTabularMatchesReference(t *testing.T) {
	const k, c = 6, 7
	m := onnxmodel.NewTabular(k, c, 11)
	model, err := m.Model()
	require.NoError(t, err)
	var s *ort.DynamicAdvancedSession
	timed(t, "tabular session", func() error {
		s = session(t, model, []string{"float_input", "category"}, []string{"score", "probs"})
		return nil
	})
	for _, n := range []int{1, 300} {
		t.Run(fmt.Sprintf("rows=%d", n), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(n), 2))
			x := make([]float32, n*k)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			// Every category, in an order that is not the row order.
			cat := make([]int64, n)
			for i := range cat {
				cat[i] = int64((i * 3) % c)
			}
			r.Shuffle(n, func(i, j int) { cat[i], cat[j] = cat[j], cat[i] })
			score, probs := empty[float32](t, int64(n), 1), empty[float32](t, int64(n), 2)
			timed(t, "tabular run", func() error {
				return s.Run([]ort.Value{tensor(t, x, int64(n), k), tensor(t, cat, int64(n))}, []ort.Value{score, probs})
			})
			wantScore, wantProbs, err := m.Reference(x, cat)
			require.NoError(t, err)
			ds, dp := maxDiff(t, score.GetData(), wantScore), maxDiff(t, probs.GetData(), wantProbs)
			t.Logf("max abs diff: score %.2g, probs %.2g", ds, dp)
			require.Less(t, ds, float32Tol)
			require.Less(t, dp, float32Tol)
		})
	}
}

// TestTabularCategoryRange records how the model (ONNX Gather) and ONNX
// Runtime treat categories outside 0..C-1: -C..-1 count from the end, and
// ORT refuses a run with anything beyond that, so the engine must either
// check categories itself or report ORT's refusal as bad input.
func TestTabularCategoryRange(t *testing.T) {
	const k, c = 3, 4
	m := onnxmodel.NewTabular(k, c, 5)
	model, err := m.Model()
	require.NoError(t, err)
	s := session(t, model, []string{"float_input", "category"}, []string{"score", "probs"})
	x := []float32{0.5, -1, 2}
	run := func(cat int64) ([]float32, error) {
		score, probs := empty[float32](t, 1, 1), empty[float32](t, 1, 2)
		err := s.Run([]ort.Value{tensor(t, x, 1, k), tensor(t, []int64{cat}, 1)}, []ort.Value{score, probs})
		return score.GetData(), err
	}
	last, err := run(c - 1)
	require.NoError(t, err)
	wrapped, err := run(-1)
	require.NoError(t, err)
	require.Equal(t, last, wrapped, "category -1 is the last one")

	for _, cat := range []int64{c, -c - 1, math.MaxInt64} {
		_, err := run(cat)
		require.Error(t, err, "category %d", cat)
		t.Logf("ORT on category %d of %d: %v", cat, c, err)
		_, _, err = m.Reference(x, []int64{cat})
		require.Error(t, err, "reference on category %d", cat)
	}
}

// textRows makes n rows of ids and masks: row 0 has no tokens at all, row 1
// is full, most rows are a prefix of random length (padding at the end, as
// tokenizers pad), every fifth has holes; padded positions hold random ids,
// which the mask must hide.
func textRows(n, length, vocab int, seed uint64) (ids, mask []int64) {
	r := rand.New(rand.NewPCG(seed, 3))
	ids = make([]int64, n*length)
	mask = make([]int64, n*length)
	for i := range ids {
		ids[i] = r.Int64N(int64(vocab))
	}
	for s := range n {
		row := mask[s*length : (s+1)*length]
		switch {
		case s == 0:
		case s == 1:
			for l := range row {
				row[l] = 1
			}
		case s%5 == 0:
			for l := range row {
				row[l] = r.Int64N(2)
			}
		default:
			for l := range r.IntN(length + 1) {
				row[l] = 1
			}
		}
	}
	return ids, mask
}

func TestTextEncoderMatchesReference(t *testing.T) {
	const vocab, length, dim = 50, 8, 16
	m := onnxmodel.NewTextEncoder(vocab, length, dim, 13)
	model, err := m.Model()
	require.NoError(t, err)
	// The inputs are fed in the opposite order to the graph's: ORT binds them
	// by name, which is what a feed mapping relies on.
	var s *ort.DynamicAdvancedSession
	timed(t, "text session", func() error {
		s = session(t, model, []string{"attention_mask", "input_ids"}, []string{"embedding", "score", "tokens"})
		return nil
	})
	for _, n := range []int{1, 300} {
		t.Run(fmt.Sprintf("rows=%d", n), func(t *testing.T) {
			ids, mask := textRows(n, length, vocab, uint64(n))
			emb, score, tokens := empty[float32](t, int64(n), dim), empty[float32](t, int64(n)), empty[int64](t, int64(n))
			timed(t, "text run", func() error {
				return s.Run([]ort.Value{tensor(t, mask, int64(n), length), tensor(t, ids, int64(n), length)},
					[]ort.Value{emb, score, tokens})
			})
			wantEmb, wantScore, wantTokens, err := m.Reference(ids, mask)
			require.NoError(t, err)
			de, ds := maxDiff(t, emb.GetData(), wantEmb), maxDiff(t, score.GetData(), wantScore)
			t.Logf("max abs diff: embedding %.2g, score %.2g", de, ds)
			require.Less(t, de, float32Tol)
			require.Less(t, ds, float32Tol)
			require.Equal(t, wantTokens, tokens.GetData())

			// A row with no tokens pools to zero: its embedding is Tanh(B).
			require.Zero(t, tokens.GetData()[0])
			for j, v := range emb.GetData()[:dim] {
				require.InDelta(t, math.Tanh(float64(m.B[j])), v, float32Tol, "empty row, dim %d", j)
			}
		})
	}
}

func TestMixedTypesMatchesReference(t *testing.T) {
	const k, n = 5, 300
	m := onnxmodel.NewMixedTypes(k, 17)
	model, err := m.Model()
	require.NoError(t, err)
	s := session(t, model, []string{"x", "flag", "offset"}, []string{"y", "positive"})
	r := rand.New(rand.NewPCG(n, 4))
	x := make([]float64, n*k)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	flag, offset := make([]bool, n), make([]int32, n)
	for i := range flag {
		flag[i] = r.IntN(2) == 1
		offset[i] = int32(r.IntN(7) - 3)
	}
	y, positive := empty[float64](t, n), empty[bool](t, n)
	timed(t, "mixed run", func() error {
		return s.Run([]ort.Value{tensor(t, x, n, k), tensor(t, flag, n), tensor(t, offset, n)}, []ort.Value{y, positive})
	})
	wantY, wantPositive, err := m.Reference(x, flag, offset)
	require.NoError(t, err)
	d := maxDiff(t, y.GetData(), wantY)
	t.Logf("max abs diff: y %.2g", d)
	require.Less(t, d, 1e-12)
	for i, p := range positive.GetData() {
		if math.Abs(wantY[i]) > 1e-9 { // the sign of a near-zero y may differ in the last bit
			require.Equal(t, wantPositive[i], p, "row %d (y = %g)", i, wantY[i])
		}
	}
}

var dtypes = map[ort.TensorElementDataType]string{
	ort.TensorElementDataTypeFloat: "float32", ort.TensorElementDataTypeDouble: "float64",
	ort.TensorElementDataTypeInt32: "int32", ort.TensorElementDataTypeInt64: "int64",
	ort.TensorElementDataTypeBool: "bool",
}

func declared(infos []ort.InputOutputInfo) []onnxmodel.Tensor {
	var ts []onnxmodel.Tensor
	for _, i := range infos {
		ts = append(ts, onnxmodel.Tensor{Name: i.Name, DType: dtypes[i.DataType], Shape: []int64(i.Dimensions.Clone())})
	}
	return ts
}

// TestModelFilesDeclare writes each model to a file and checks that ONNX
// Runtime reads back the names, element types and shapes the builder
// declares, and records what inference.LoadModel makes of a multi-input model
// (today it refuses any model without exactly one float32 input; the test
// accepts either answer, so it keeps passing when the engine learns to feed
// several inputs).
func TestModelFilesDeclare(t *testing.T) {
	type spec interface {
		Model() ([]byte, error)
		Inputs() []onnxmodel.Tensor
		Outputs() []onnxmodel.Tensor
	}
	dir := t.TempDir()
	for name, m := range map[string]spec{
		"tabular": onnxmodel.NewTabular(6, 7, 1),
		"text":    onnxmodel.NewTextEncoder(50, 8, 16, 1),
		"mixed":   onnxmodel.NewMixedTypes(5, 1),
	} {
		t.Run(name, func(t *testing.T) {
			data, err := m.Model()
			require.NoError(t, err)
			path := filepath.Join(dir, name+".onnx")
			require.NoError(t, os.WriteFile(path, data, 0o644))
			in, out, err := ort.GetInputOutputInfo(path)
			require.NoError(t, err)
			require.Equal(t, m.Inputs(), declared(in))
			require.Equal(t, m.Outputs(), declared(out))

			loaded, err := inference.LoadModel(path)
			if err != nil {
				require.ErrorIs(t, err, inference.ErrBadModel)
				t.Logf("inference.LoadModel refuses it: %v", err)
				return
			}
			defer loaded.Close()
			t.Logf("inference.LoadModel accepts it: %+v", loaded.ModelInfo)
		})
	}
}

// TestTextEncoderRefusals records what ONNX Runtime says to feeds the engine
// must refuse itself, with a row and a column, before a run: ORT names neither.
func TestTextEncoderRefusals(t *testing.T) {
	const vocab, length, dim = 10, 4, 3
	m := onnxmodel.NewTextEncoder(vocab, length, dim, 3)
	model, err := m.Model()
	require.NoError(t, err)
	s := session(t, model, []string{"input_ids", "attention_mask"}, []string{"embedding", "score", "tokens"})
	outs := func(n int64) []ort.Value {
		return []ort.Value{empty[float32](t, n, dim), empty[float32](t, n), empty[int64](t, n)}
	}
	ids, mask := textRows(2, length, vocab, 1)
	outOfVocab := append([]int64(nil), ids...)
	outOfVocab[length+3] = vocab // row 1, a position its mask may hide
	for name, c := range map[string]struct{ ids, mask ort.Value }{
		"list of the wrong length": {tensor(t, ids[:6], 2, 3), tensor(t, mask[:6], 2, 3)},
		"int32 ids":                {tensor(t, []int32{1, 2, 3, 4, 5, 6, 7, 8}, 2, length), tensor(t, mask, 2, length)},
		"id outside the vocab":     {tensor(t, outOfVocab, 2, length), tensor(t, mask, 2, length)},
	} {
		err := s.Run([]ort.Value{c.ids, c.mask}, outs(2))
		require.Error(t, err, name)
		t.Logf("ORT on %s: %v", name, err)
	}
	_, _, _, err = m.Reference(outOfVocab, mask)
	require.Error(t, err)
}

// TestTextEncoderRowsDoNotDependOnTheBatch compares each row run alone with
// the same row in a batch of 300: the engine's outputs must not depend on how
// a file is cut into batches.
func TestTextEncoderRowsDoNotDependOnTheBatch(t *testing.T) {
	const vocab, length, dim, n = 50, 8, 16, 300
	m := onnxmodel.NewTextEncoder(vocab, length, dim, 13)
	model, err := m.Model()
	require.NoError(t, err)
	s := session(t, model, []string{"input_ids", "attention_mask"}, []string{"embedding", "score", "tokens"})
	ids, mask := textRows(n, length, vocab, 7)
	all := empty[float32](t, n, dim)
	require.NoError(t, s.Run([]ort.Value{tensor(t, ids, n, length), tensor(t, mask, n, length)},
		[]ort.Value{all, empty[float32](t, n), empty[int64](t, n)}))
	var differ int
	var d float64
	for r := range n {
		one := empty[float32](t, 1, dim)
		row := ids[r*length : (r+1)*length]
		require.NoError(t, s.Run([]ort.Value{tensor(t, row, 1, length), tensor(t, mask[r*length:(r+1)*length], 1, length)},
			[]ort.Value{one, empty[float32](t, 1), empty[int64](t, 1)}))
		want := all.GetData()[r*dim : (r+1)*dim]
		for j, v := range one.GetData() {
			if v != want[j] {
				differ++
				d = max(d, math.Abs(float64(v-want[j])))
			}
		}
	}
	t.Logf("%d of %d embedding values differ between batch 1 and batch %d, by at most %.2g", differ, n*dim, n, d)
	require.Less(t, d, float32Tol)
}
