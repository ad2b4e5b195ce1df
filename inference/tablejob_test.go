package inference

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// duckdbTable is a Parquet file DuckDB wrote (inference/tables/testdata:
// 5,000 rows in 3 row groups, Snappy, a dictionary-encoded string id).
const duckdbTable = "tables/testdata/mixed_snappy.parquet"

// readResult reads a whole Parquet result.
func readResult(t *testing.T, path string) arrow.Table {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	pf, err := file.NewParquetReader(f)
	require.NoError(t, err)
	r, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	require.NoError(t, err)
	tbl, err := r.ReadTable(context.Background())
	require.NoError(t, err)
	t.Cleanup(tbl.Release)
	return tbl
}

// A table another writer wrote feeds a model with a float32 [N,4] input,
// built from four scalar columns of four types, and an int64 input from a
// uint8 column; the result holds the kept columns in input order beside the
// predictions, which are the reference's.
func TestATableFeedsAModelAndKeepsItsRows(t *testing.T) {
	t.Parallel()
	const rows, categories = 5000, 200
	tab := onnxmodel.NewTabular(4, categories, 11)
	data, err := tab.Model()
	dir := t.TempDir()
	model := writeModel(t, dir, "tabular.onnx", data, err)

	f, err := os.Open(duckdbTable)
	require.NoError(t, err)
	defer f.Close()
	info, err := f.Stat()
	require.NoError(t, err)
	src, err := OpenTable(f, info.Size(), duckdbTable, model, TableOptions{
		Feed: map[string][]string{"float_input": {"f32", "f64", "i16", "u8"}, "category": {"u8"}},
		Keep: []string{"id", "colour"},
	})
	require.NoError(t, err)
	defer src.Close()
	out := filepath.Join(dir, "out")
	m, err := Run(t.Context(), Pass{Model: model, Source: src, InputName: duckdbTable, Device: DeviceCPU, BatchSize: 256, ChunkSamples: 1500}, // chunks across batches and row groups
		NewParquetDirSink(out, src.KeptFields()))
	require.NoError(t, err)
	require.Equal(t, int64(rows), m.Samples)
	require.Equal(t, "parquet", m.Input.Format)
	require.Equal(t, []string{"f32", "f64", "i16", "u8", "id", "colour"}, m.Input.Table.Columns)
	require.Equal(t, []string{"id", "colour"}, m.Input.Table.Kept)
	require.NotEmpty(t, m.Input.Table.Conversions, "f64, i16 and u8 change type on their way")

	// What the generator wrote (gen.mjs), as the model sees it.
	x, category := make([]float32, rows*4), make([]int64, rows)
	for i := range rows {
		x[4*i], x[4*i+1], x[4*i+2], x[4*i+3] = float32(i%97)/4, float32(float64(i%89)/8), float32(i%100), float32(i%200)
		category[i] = int64(i % 200)
	}
	wantScore, _, err := tab.Reference(x, category)
	require.NoError(t, err)

	tbl := readResult(t, filepath.Join(out, PredictionsFile))
	require.Equal(t, int64(rows), tbl.NumRows())
	var names []string
	for _, fld := range tbl.Schema().Fields() {
		names = append(names, fld.Name)
	}
	require.Equal(t, []string{"id", "colour", "score", "probs"}, names)
	row := 0
	for _, chunk := range tbl.Column(0).Data().Chunks() {
		ids := chunk.(*array.String)
		for i := range ids.Len() {
			require.Equal(t, fmt.Sprintf("id%05d", row), ids.Value(i), "kept id, in input order")
			row++
		}
	}
	row = 0
	for _, chunk := range tbl.Column(2).Data().Chunks() {
		scores := chunk.(*array.Float32)
		for i := range scores.Len() {
			require.InDelta(t, wantScore[row], scores.Value(i), 1e-6, "score of row %d", row)
			row++
		}
	}
	require.Equal(t, rows, row)
}

// A null in a fed column, a column the table does not have and an input the
// model does not have are refused as bad input, naming what is wrong,
// and leave no result behind.
func TestTableRefusals(t *testing.T) {
	t.Parallel()
	tab := onnxmodel.NewTabular(4, 200, 11)
	data, err := tab.Model()
	dir := t.TempDir()
	model := writeModel(t, dir, "tabular.onnx", data, err)
	f, err := os.Open(duckdbTable)
	require.NoError(t, err)
	defer f.Close()
	info, _ := f.Stat()
	for _, c := range []struct {
		name string
		opts TableOptions
		want string
	}{
		{"null", TableOptions{Feed: map[string][]string{"float_input": {"f32", "f64", "i16", "maybe"}, "category": {"u8"}}}, "null"},
		{"missing column", TableOptions{Feed: map[string][]string{"float_input": {"f32", "f64", "i16", "nope"}, "category": {"u8"}}}, "nope"},
		{"no such input", TableOptions{Feed: map[string][]string{"floats": {"f32"}}}, `no input "floats"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			src, err := OpenTable(f, info.Size(), duckdbTable, model, c.opts)
			if err == nil {
				defer src.Close()
				_, err = Run(t.Context(), Pass{Model: model, Source: src, InputName: duckdbTable, Device: DeviceCPU, BatchSize: 256}, NewParquetDirSink(out, src.KeptFields()))
			}
			require.ErrorIs(t, err, ErrBadInput)
			require.ErrorContains(t, err, c.want)
			_, statErr := os.Stat(filepath.Join(out, ManifestFile))
			require.True(t, os.IsNotExist(statErr), "no manifest after a refusal")
		})
	}
}

// A table given as plain bytes is never read as raw float32 (which would
// yield numbers, and wrong ones): without a table source it is refused.
func TestATableWithoutATableSourceIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, err := onnxmodel.NewTabular(4, 200, 11).Model()
	model := writeModel(t, dir, "tabular.onnx", data, err)
	_, _, err = runFile(t, Pass{Model: model, Device: DeviceCPU}, duckdbTable)
	require.ErrorIs(t, err, ErrBadInput)
	require.ErrorContains(t, err, "is a table")
}
