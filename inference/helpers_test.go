package inference

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// TestMain loads the real ONNX Runtime once for the package; without it no
// test here means anything, so its absence fails loudly with the fix.
func TestMain(m *testing.M) {
	// Calibration results must not leak between runs or into the user's cache.
	cache, err := os.MkdirTemp("", "inferstack-test-cache")
	if err != nil {
		panic(err)
	}
	userCache = CacheDir()
	lib := DefaultLibPath()
	os.Setenv(LibEnv, lib)
	os.Setenv("INFERSTACK_CACHE", cache)
	if _, err := InitRuntime(lib); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: these tests need ONNX Runtime %s: %v\n", ORTVersion, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(cache)
	os.Exit(code)
}

// userCache is where `make setup` put the library and the models.
var userCache string

// pretrainedModel is PaddleOCR's text direction classifier that `make setup` fetches.
func pretrainedModel(t testing.TB) string {
	t.Helper()
	path := filepath.Join(userCache, "models", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("pretrained test model missing (%v): run `make setup`", err)
	}
	return path
}

func randomFloats(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func writeFile(t testing.TB, dir, name string, parts ...[]byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, bytes.Join(parts, nil), 0o644))
	return path
}

func writeNpy(t testing.TB, dir, name string, shape []int64, v []float32) string {
	t.Helper()
	return writeFile(t, dir, name, npy.EncodeHeader(npy.Float32, shape), npy.FromFloat32(v))
}

// readNpy returns an output file's shape and its raw data bytes.
func readNpy(t testing.TB, path string) ([]int64, []byte) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h, err := npy.ReadHeader(f)
	require.NoError(t, err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.EqualValues(t, h.DataOffset+h.DataBytes(), len(data), "output %s size", path)
	return h.Shape, data[h.DataOffset:]
}

func readFloats(t testing.TB, path string) ([]int64, []float32) {
	shape, data := readNpy(t, path)
	v := make([]float32, len(data)/4)
	npy.ToFloat32(v, data, npy.Float32)
	return shape, v
}

func writeModel(t testing.TB, dir, name string, model []byte, err error) *Model {
	t.Helper()
	require.NoError(t, err)
	path := writeFile(t, dir, name, model)
	m, err := LoadModel(path)
	require.NoError(t, err)
	t.Cleanup(m.Close)
	return m
}

func testMLP(t testing.TB, dir string) (*onnxmodel.MLP, *Model) {
	mlp := onnxmodel.NewMLP(24, 32, 5, 1)
	data, err := mlp.Model()
	return mlp, writeModel(t, dir, "mlp.onnx", data, err)
}

// runFile runs the engine over the file at path into a fresh directory.
func runFile(t testing.TB, job Pass, path string) (*Manifest, string, error) {
	t.Helper()
	out := t.TempDir()
	m, err := runInto(t, job, path, NewDirSink(out))
	return m, out, err
}

// runInto runs the engine over the file at path into sink, on the CPU unless
// the job says otherwise.
func runInto(t testing.TB, job Pass, path string, sink Sink) (*Manifest, error) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	info, err := f.Stat()
	require.NoError(t, err)
	job.Input, job.InputSize, job.InputName = f, info.Size(), path
	if job.Device == "" {
		job.Device = DeviceCPU
	}
	return Run(context.Background(), job, sink)
}

func mustRun(t testing.TB, job Pass, path string) (*Manifest, string) {
	t.Helper()
	m, out, err := runFile(t, job, path)
	require.NoError(t, err)
	return m, out
}

func requireClose(t testing.TB, want []float64, got []float32, tol float64, what string) {
	t.Helper()
	require.Len(t, got, len(want), what)
	for i := range want {
		if diff := math.Abs(float64(got[i]) - want[i]); diff > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %v, reference %v (diff %.3g > tol %.3g)", what, i, got[i], want[i], diff, tol)
		}
	}
}
