package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// Tables written by DuckDB (inference/tables/testdata).
const (
	duckdbParquet = "../../inference/tables/testdata/mixed_snappy.parquet"
	duckdbCSV     = "../../inference/tables/testdata/small.csv.gz"
)

// `inferstack run` on a table: --feed maps columns to the model's inputs,
// --keep carries columns to predictions.parquet, and each way a table or a
// flag can be wrong ends with its exit code and one line naming it.
func TestRunOnATable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, err := onnxmodel.NewTabular(4, 200, 11).Model()
	require.NoError(t, err)
	model := filepath.Join(dir, "tabular.onnx")
	require.NoError(t, os.WriteFile(model, data, 0o644))
	feed := []string{"--feed", "float_input=f32,f64,i16,u8", "--feed", "category=u8"}

	out := filepath.Join(dir, "out")
	r := run(t, nil, append([]string{"run", "--model", model, "--input", duckdbParquet, "--keep", "id,colour", "--output", out, "--json"}, feed...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var m inference.Manifest
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &m))
	require.Equal(t, int64(5000), m.Samples)
	require.Equal(t, map[string][]string{"float_input": {"f32", "f64", "i16", "u8"}, "category": {"u8"}}, m.Input.Table.Feed)
	require.FileExists(t, filepath.Join(out, inference.PredictionsFile))
	require.FileExists(t, filepath.Join(out, inference.ManifestFile))

	npyOut := filepath.Join(dir, "npy")
	r = run(t, nil, append([]string{"run", "--model", model, "--input", duckdbParquet, "--output-format", "npy", "--output", npyOut}, feed...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.FileExists(t, filepath.Join(npyOut, "score.npy"))

	npyIn := filepath.Join(dir, "x.npy")
	require.NoError(t, os.WriteFile(npyIn, []byte("not read"), 0o644))
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a null in a fed column", []string{"--input", duckdbCSV, "--feed", "float_input=f32,f64,i32,maybe", "--feed", "category=i64"}, exitBadInput, `row 3, column "maybe": null`},
		{"a column the table lacks", append([]string{"--input", duckdbParquet, "--keep", "idd"}, feed...), exitBadInput, `"idd"`},
		{"a type that would change", []string{"--input", duckdbParquet, "--feed", "float_input=f32,f64,i32,u8", "--feed", "category=u8"}, exitBadInput, "i32"},
		{"feed on a .npy", []string{"--input", npyIn, "--feed", "x=a"}, exitUsage, "not a table"},
		{"keep into .npy", append([]string{"--input", duckdbParquet, "--keep", "id", "--output-format", "npy"}, feed...), exitUsage, "--keep copies columns"},
		{"a bad feed", []string{"--input", duckdbParquet, "--feed", "float_input"}, exitUsage, "INPUT=COLUMN"},
	} {
		r := run(t, nil, append([]string{"run", "--model", model, "--output", filepath.Join(dir, "bad")}, c.args...)...)
		require.Equal(t, c.code, r.code, "%s: %s", c.name, r.stderr)
		require.Contains(t, r.stderr, c.want, c.name)
		require.NoFileExists(t, filepath.Join(dir, "bad", inference.ManifestFile), c.name)
	}
}
