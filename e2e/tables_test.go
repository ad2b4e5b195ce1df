package e2e

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/testenv"
)

// features are n rows of the test MLP's 24 inputs.
func features(n int) []float32 {
	x := make([]float32, n*24)
	for i := range x {
		x[i] = float32((i*7919)%1000)/500 - 1
	}
	return x
}

// parquetTable writes n rows as Parquet (written by arrow-go, Snappy, row
// groups of 256 rows): an int64 id, the model's input x as a list<float>,
// and a note the job neither reads nor keeps.
func parquetTable(t *testing.T, n int) string {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "x", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
		{Name: "note", Type: arrow.BinaryTypes.String},
	}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	x := features(n)
	for i := range n {
		rb.Field(0).(*array.Int64Builder).Append(int64(7000 + i))
		lists := rb.Field(1).(*array.ListBuilder)
		lists.Append(true)
		lists.ValueBuilder().(*array.Float32Builder).AppendValues(x[i*24:(i+1)*24], nil)
		rb.Field(2).(*array.StringBuilder).Append(fmt.Sprintf("row %d", i))
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	path := filepath.Join(t.TempDir(), "part-0003.parquet")
	f, err := os.Create(path)
	require.NoError(t, err)
	w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy),
		parquet.WithMaxRowGroupLength(256)), pqarrow.DefaultWriterProps())
	require.NoError(t, err)
	require.NoError(t, w.Write(rec))
	require.NoError(t, w.Close())
	return path
}

// csvTable writes the same rows as a CSV: id, then c0..c23.
func csvTable(t *testing.T, n int) string {
	var b strings.Builder
	b.WriteString("id")
	for j := range 24 {
		fmt.Fprintf(&b, ",c%d", j)
	}
	x := features(n)
	for i := range n {
		fmt.Fprintf(&b, "\n%d", 7000+i)
		for j := range 24 {
			fmt.Fprintf(&b, ",%v", x[i*24+j])
		}
	}
	b.WriteString("\n")
	path := filepath.Join(t.TempDir(), "rows.csv")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// requirePredictions reads downloaded predictions back with arrow-go (a
// predictions.parquet, or a dataset's part files in order, as one table)
// and checks them against the model's pure-Go reference: the kept id
// column first, in input order, then logits and probs.
func requirePredictions(t *testing.T, n int, paths ...string) {
	_, want := onnxmodel.NewMLP(24, 32, 5, 1).Reference(features(n))
	row := 0
	for _, path := range paths {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		tbl := testenv.ReadParquet(t, data)
		var names []string
		for _, f := range tbl.Schema().Fields() {
			names = append(names, f.Name)
		}
		require.Equal(t, []string{"id", "logits", "probs"}, names, path)
		ids := tbl.Column(0).Data().Chunks()
		for c, chunk := range tbl.Column(2).Data().Chunks() {
			probs := chunk.(*array.FixedSizeList)
			values := probs.ListValues().(*array.Float32).Float32Values()
			for i := range probs.Len() {
				require.EqualValues(t, 7000+row, ids[c].(*array.Int64).Value(i), "row %d keeps its id", row)
				for k := range 5 {
					require.InDelta(t, want[row*5+k], float64(values[(probs.Offset()+i)*5+k]), 1e-5, "row %d", row)
				}
				row++
			}
		}
		tbl.Release()
	}
	require.Equal(t, n, row)
	require.False(t, math.IsNaN(want[0]))
}

// TestTablesRunThroughTheLocalStack: a Parquet file copied under inputs/
// with the real AWS CLI starts a job by itself, feeds the model by column
// name and keeps the column the stack's inferstack:keep names; `inferstack
// submit` runs a CSV with --feed and --keep; `inferstack results` downloads
// predictions.parquet, whose rows match the model's reference row by row.
func TestTablesRunThroughTheLocalStack(t *testing.T) {
	cfg := devSettings(t, map[string]string{"keep": "id", "tierCacheTtl": "0s"})
	stack, logs := upLocal(t, cfg)
	_, adminSQS := stack.Clients()
	watch := &eventWatch{t: t, sqs: adminSQS, queue: stack.EventsWatch}
	runLocal(t, stack, nil)

	inferstack := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), stack.Env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "inferstack %v: %s\n%s\n%s", args, out, stderr.String(), logs.String())
		return string(out)
	}

	const key = job.InputPrefix + "day=2026-12-07/part-0003.parquet"
	clientCLI(t, stack)("s3", "cp", parquetTable(t, 1000), "s3://"+stack.Bucket+"/"+key)
	finished := watch.await("the upload's finished", func(e event) bool { return e.Input == key && e.State == job.EventFinished }, logs)
	require.EqualValues(t, 1000, finished.Samples)
	dir := t.TempDir()
	out := inferstack("results", finished.JobID, "--output", dir)
	require.Contains(t, out, filepath.Join(dir, inference.PredictionsFile)+"  column probs: float32 [1000 5]")
	requirePredictions(t, 1000, filepath.Join(dir, inference.PredictionsFile))

	cols := make([]string, 24)
	for j := range cols {
		cols[j] = fmt.Sprintf("c%d", j)
	}
	out = inferstack("submit", csvTable(t, 300), "--feed", "x="+strings.Join(cols, ","), "--keep", "id", "--wait")
	submitted := jobID(t, out)
	dir = t.TempDir()
	inferstack("results", submitted, "--output", dir)
	requirePredictions(t, 300, filepath.Join(dir, inference.PredictionsFile))
}
