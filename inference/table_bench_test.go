package inference

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/testenv"
)

// BenchmarkTableVsNpy: the same samples through the same light model (the
// MLP 256-256-10 of BenchmarkCalibrationGain, where reading dominates) from
// a .npy, from Parquet (Snappy, an id column and one list<float> column,
// result predictions.parquet with the id kept) and from CSV (256 float
// columns fed as one input), in alternating rounds; each side is scored by
// its median whole run at a fixed batch size and threads.
func BenchmarkTableVsNpy(b *testing.B) {
	const rows, k, rounds = 50_000, 256, 5
	dir := b.TempDir()
	b.Setenv("INFERSTACK_CACHE", b.TempDir())
	data, err := onnxmodel.NewMLP(k, 256, 10, 5).Model()
	require.NoError(b, err)
	model, err := LoadModel(writeFile(b, dir, "mlp.onnx", data))
	require.NoError(b, err)
	defer model.Close()
	x := randomFloats(rows*k, 23)
	npyPath := writeNpy(b, dir, "rows.npy", []int64{rows, k}, x)
	parquetPath := writeListParquet(b, dir, x, rows, k)
	csvPath := writeCSV(b, dir, x, rows, k)
	cols := make([]string, k)
	for i := range cols {
		cols[i] = "c" + strconv.Itoa(i)
	}

	type side struct {
		name string
		run  func() error
	}
	open := func(path string, opts TableOptions) (*TableSource, *os.File, int64) {
		f, err := os.Open(path)
		require.NoError(b, err)
		info, _ := f.Stat()
		src, err := OpenTable(f, info.Size(), path, model, opts)
		require.NoError(b, err)
		return src, f, info.Size()
	}
	base := Pass{Model: model, Device: DeviceCPU, BatchSize: 1024, Threads: 2}
	sides := []side{
		{"npy", func() error {
			_, _, err := runFile(b, base, npyPath)
			return err
		}},
		{"parquet", func() error {
			src, f, _ := open(parquetPath, TableOptions{Feed: map[string][]string{"x": {"features"}}, Keep: []string{"id"}})
			defer f.Close()
			defer src.Close()
			j := base
			j.Source, j.InputName = src, parquetPath
			_, err := Run(b.Context(), j, NewParquetDirSink(b.TempDir(), src.KeptFields()))
			return err
		}},
		{"csv", func() error {
			src, f, _ := open(csvPath, TableOptions{Feed: map[string][]string{"x": cols}})
			defer f.Close()
			defer src.Close()
			j := base
			j.Source, j.InputName = src, csvPath
			_, err := Run(b.Context(), j, NewParquetDirSink(b.TempDir(), nil))
			return err
		}},
	}
	for b.Loop() {
		times := map[string][]time.Duration{}
		for r := range rounds {
			for i := range sides {
				s := sides[(i+r)%len(sides)]
				start := time.Now()
				require.NoError(b, s.run(), s.name)
				times[s.name] = append(times[s.name], time.Since(start))
			}
		}
		npy := median(times["npy"])
		for _, s := range sides {
			m := median(times[s.name])
			b.ReportMetric(float64(rows)/m.Seconds(), s.name+"-samples/s")
			b.ReportMetric(npy.Seconds()/m.Seconds(), s.name+"/npy")
			b.Logf("%s: %v", s.name, times[s.name])
		}
	}
}

// writeListParquet writes rows of k floats as Parquet: an int64 id and a
// list<float> "features" (Snappy, row groups of 16,384 rows, by arrow-go).
func writeListParquet(b *testing.B, dir string, x []float32, rows, k int) string {
	path := filepath.Join(dir, "rows.parquet")
	f, err := os.Create(path)
	require.NoError(b, err)
	// The Parquet writer closes f with itself.
	require.NoError(b, testenv.ListTable{Column: "features", X: x[:rows*k], K: k}.WriteParquet(f))
	return path
}

// writeCSV writes rows of k floats as a CSV with a header c0..c(k-1).
func writeCSV(b *testing.B, dir string, x []float32, rows, k int) string {
	path := filepath.Join(dir, "rows.csv")
	f, err := os.Create(path)
	require.NoError(b, err)
	require.NoError(b, testenv.WriteFloatCSV(f, x[:rows*k], k))
	require.NoError(b, f.Close())
	return path
}

// BenchmarkTablePeakRSS: `inferstack run` over a 1 GiB Parquet input (an
// id and a list<float> of 256, 64 row groups) into predictions.parquet
// with the id kept; the process's peak RSS from its manifest. Target:
// under 256 MiB.
func BenchmarkTablePeakRSS(b *testing.B) {
	const k, rows = 256, 1 << 20 // 1 KiB of floats a row, 1 GiB in all
	dir := b.TempDir()
	bin := buildCLI(b, dir)
	data, err := onnxmodel.NewMLP(k, 32, 5, 3).Model()
	require.NoError(b, err)
	model := writeFile(b, dir, "mlp.onnx", data)
	input := writeListParquet(b, dir, randomFloats(rows*k, 21), rows, k)
	info, err := os.Stat(input)
	require.NoError(b, err)
	for b.Loop() {
		cmd := exec.Command(bin, "run", "--model", model, "--input", input, "--feed", "x=features", "--keep", "id",
			"--output", filepath.Join(dir, "out"), "--device", "cpu", "--batch-size", "1024", "--json")
		out, err := cmd.Output()
		require.NoError(b, err)
		var m Manifest
		require.NoError(b, json.Unmarshal(out, &m))
		require.EqualValues(b, rows, m.Samples)
		b.ReportMetric(float64(m.PeakRSSBytes)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(info.Size())/(1<<30), "input-GiB")
		b.ReportMetric(m.SamplesPerSecond, "samples/s")
	}
}
