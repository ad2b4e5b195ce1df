package tables

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/testenv"
)

// The tables of BenchmarkTableVsNpy (inference/table_bench_test.go), read and fed without a model:
// what reading alone costs.
const benchRows, benchWidth = 50_000, 256

func benchFloats() []float32 {
	r := rand.New(rand.NewPCG(23, 0))
	x := make([]float32, benchRows*benchWidth)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}

func benchParquet(b *testing.B, x []float32) []byte {
	var buf bytes.Buffer
	require.NoError(b, testenv.ListTable{Column: "features", X: x, K: benchWidth}.WriteParquet(&buf))
	return buf.Bytes()
}

func benchCSV(b *testing.B, x []float32) []byte {
	var buf bytes.Buffer
	require.NoError(b, testenv.WriteFloatCSV(&buf, x, benchWidth))
	return buf.Bytes()
}

func readAndFill(b *testing.B, data []byte, name string, opts Options, inputs []Input, feed map[string][]string) {
	br := bytes.NewReader(data)
	r, err := Open(br, br.Size(), name, opts)
	require.NoError(b, err)
	defer r.Close()
	plan, err := NewPlan(inputs, r.Schema(), feed)
	require.NoError(b, err)
	var ts []Tensor
	n := 0
	for {
		bt, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(b, err)
		ts, err = plan.Fill(bt, ts)
		require.NoError(b, err)
		n += int(bt.Rec.NumRows())
		bt.Rec.Release()
	}
	require.Equal(b, benchRows, n)
}

// BenchmarkReadParquetList: an int64 id and a list<float> of 256, Snappy, row groups of 16,384.
func BenchmarkReadParquetList(b *testing.B) {
	data := benchParquet(b, benchFloats())
	inputs := []Input{{Name: "x", Type: Float32, Shape: []int64{-1, benchWidth}}}
	feed := map[string][]string{"x": {"features"}}
	b.SetBytes(benchRows * benchWidth * 4)
	for b.Loop() {
		readAndFill(b, data, "b.parquet", Options{Columns: []string{"features", "id"}}, inputs, feed)
	}
}

// BenchmarkReadCSVFloats: 256 float columns fed as one [N,256] input.
func BenchmarkReadCSVFloats(b *testing.B) {
	data := benchCSV(b, benchFloats())
	cols := make([]string, benchWidth)
	for i := range cols {
		cols[i] = "c" + strconv.Itoa(i)
	}
	inputs := []Input{{Name: "x", Type: Float32, Shape: []int64{-1, benchWidth}}}
	feed := map[string][]string{"x": cols}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		readAndFill(b, data, "b.csv", Options{Columns: cols, Types: TextTypes(inputs, feed)}, inputs, feed)
	}
}
