package inference

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// shardTable writes rows of the tabular model's columns (f0..f3, cat) and a
// kept "id" ("id00007": text) as format: CSV with CRLF lines and no final
// line end, JSON Lines, gzipped CSV, or Parquet in row groups of the given
// sizes.
func shardTable(t *testing.T, format string, groups ...int) []byte {
	t.Helper()
	rows := 0
	for _, g := range groups {
		rows += g
	}
	f := func(i, j int) float32 { return float32(i*4+j) / 8 }
	var sb strings.Builder
	switch format {
	case "csv", "csv.gz":
		sb.WriteString("id,f0,f1,f2,f3,cat\r\n")
		for i := range rows {
			fmt.Fprintf(&sb, "id%05d,%g,%g,%g,%g,%d", i, f(i, 0), f(i, 1), f(i, 2), f(i, 3), i%200)
			if i < rows-1 {
				sb.WriteString("\r\n")
			}
		}
	case "jsonl":
		for i := range rows {
			fmt.Fprintf(&sb, `{"id":"id%05d","f0":%g,"f1":%g,"f2":%g,"f3":%g,"cat":%d}`+"\n", i, f(i, 0), f(i, 1), f(i, 2), f(i, 3), i%200)
		}
	case "parquet":
		fields := []arrow.Field{{Name: "id", Type: arrow.BinaryTypes.String}}
		for j := range 4 {
			fields = append(fields, arrow.Field{Name: fmt.Sprintf("f%d", j), Type: arrow.PrimitiveTypes.Float32})
		}
		schema := arrow.NewSchema(append(fields, arrow.Field{Name: "cat", Type: arrow.PrimitiveTypes.Int64}), nil)
		var buf bytes.Buffer
		fw, err := pqarrow.NewFileWriter(schema, &buf, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
		require.NoError(t, err)
		i := 0
		for _, g := range groups {
			b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
			for range g {
				b.Field(0).(*array.StringBuilder).Append(fmt.Sprintf("id%05d", i))
				for j := range 4 {
					b.Field(1 + j).(*array.Float32Builder).Append(f(i, j))
				}
				b.Field(5).(*array.Int64Builder).Append(int64(i % 200))
				i++
			}
			rec := b.NewRecordBatch()
			require.NoError(t, fw.Write(rec)) // a row group a Write
			rec.Release()
			b.Release()
		}
		require.NoError(t, fw.Close())
		return buf.Bytes()
	}
	if format == "csv.gz" {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, err := zw.Write([]byte(sb.String()))
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		return buf.Bytes()
	}
	return []byte(sb.String())
}

// readShard reads every row of a table (or of one shard of it) through
// OpenTable, in reads of 100 rows: each input's bytes and the kept ids.
func readShard(t *testing.T, data []byte, name string, model *Model, rg *Range) ([][]byte, []string) {
	t.Helper()
	src, err := OpenTable(bytes.NewReader(data), int64(len(data)), name, model, TableOptions{
		Feed:  map[string][]string{"float_input": {"f0", "f1", "f2", "f3"}, "category": {"cat"}},
		Keep:  []string{"id"},
		Range: rg,
	})
	require.NoError(t, err)
	defer src.Close()
	n := src.Samples()
	dst := make([][]byte, len(src.Feeds()))
	for i, f := range src.Feeds() {
		dst[i] = make([]byte, n*f.SampleBytes())
	}
	var ids []string
	for start := int64(0); start < n; start += 100 {
		end := min(start+100, n)
		part := make([][]byte, len(dst))
		for i, f := range src.Feeds() {
			part[i] = dst[i][start*f.SampleBytes() : end*f.SampleBytes()]
		}
		require.NoError(t, src.Read(start, end, part))
		kept := src.Kept()
		require.EqualValues(t, end-start, kept.NumRows())
		col := kept.Column(0).(*array.String)
		for i := range col.Len() {
			ids = append(ids, col.Value(i))
		}
		kept.Release()
	}
	return dst, ids
}

// A table planned into shards and read shard by shard through OpenTable
// gives the model the whole table's rows, each once, in order, and keeps
// the same ids, for every format and number of shards.
func TestTableShardsReadEveryRowOnce(t *testing.T) {
	t.Parallel()
	data, err := onnxmodel.NewTabular(4, 200, 11).Model()
	model := writeModel(t, t.TempDir(), "tabular.onnx", data, err)
	groups := []int{700, 50, 1200, 5, 445} // uneven row groups; 2,400 rows
	for _, c := range []struct {
		format string
		ns     []int
		shards []int // how many shards each n gives
	}{
		{"parquet", []int{1, 2, 3, 5, 9}, []int{1, 2, 3, 4, 5}},
		{"csv", []int{1, 2, 3, 7}, []int{1, 2, 3, 7}},
		{"jsonl", []int{1, 2, 3, 7}, []int{1, 2, 3, 7}},
		{"csv.gz", []int{1, 4}, []int{1, 1}},
	} {
		t.Run(c.format, func(t *testing.T) {
			t.Parallel()
			table := shardTable(t, c.format, groups...)
			name := "rows." + c.format
			want, wantIDs := readShard(t, table, name, model, nil)
			require.Len(t, wantIDs, 2400)
			for k, n := range c.ns {
				shards, err := PlanTableShards(bytes.NewReader(table), int64(len(table)), name, "", n)
				require.NoError(t, err)
				require.Len(t, shards, c.shards[k], "n=%d: %v", n, shards)
				got := make([][]byte, len(want))
				var ids []string
				for _, rg := range shards {
					part, partIDs := readShard(t, table, name, model, &rg)
					for i := range got {
						got[i] = append(got[i], part[i]...)
					}
					ids = append(ids, partIDs...)
				}
				require.Equal(t, wantIDs, ids, "n=%d: every row once, in order", n)
				require.Equal(t, want, got, "n=%d: the same inputs", n)
			}
		})
	}
}

// A cell that does not parse, in a CSV shard past the first, is refused as
// bad input naming the file, the shard's bytes, the row and line in them
// and the column; so is a null in a fed column, which the feed finds.
func TestCSVShardErrorsNameTheShard(t *testing.T) {
	t.Parallel()
	data, err := onnxmodel.NewTabular(4, 200, 11).Model()
	model := writeModel(t, t.TempDir(), "tabular.onnx", data, err)
	const header, line = "id,f0,f1,f2,f3,cat\n", "id00000,1,2,3,4,5\n"
	for _, c := range []struct {
		name, bad string
		row       int
		want      string // %[1]s the shard, %[2]d the row in it, %[3]d its line
	}{
		{"bad cell", "id%05d,1,2,oops,4,5\n", 812, `input bad.csv: bad.csv: %[1]s, row %[2]d (line %[3]d of those bytes), column "f2": "oops" does not parse as float32`},
		{"null", "id%05d,1,2,3,4,\n", 905, `input bad.csv: %[1]s (rows counted from there): row %[2]d, column "cat": null`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var sb strings.Builder
			sb.WriteString(header)
			for i := range 1000 {
				if i == c.row {
					fmt.Fprintf(&sb, c.bad, i)
				} else {
					fmt.Fprintf(&sb, "id%05d,1,2,3,4,5\n", i)
				}
			}
			table := []byte(sb.String())
			shards, err := PlanTableShards(bytes.NewReader(table), int64(len(table)), "bad.csv", "", 4)
			require.NoError(t, err)
			require.Len(t, shards, 4)
			last := shards[3]
			first := (int(last.From) - len(header)) / len(line) // the shard's first table row: all rows before it are as long as line
			require.Less(t, first, c.row)
			src, err := OpenTable(bytes.NewReader(table), int64(len(table)), "bad.csv", model, TableOptions{
				Feed: map[string][]string{"float_input": {"f0", "f1", "f2", "f3"}, "category": {"cat"}}, Range: &last,
			})
			if err == nil { // else refused by the first batch's read
				defer src.Close()
				dst := make([][]byte, len(src.Feeds()))
				for i, f := range src.Feeds() {
					dst[i] = make([]byte, src.Samples()*f.SampleBytes())
				}
				err = src.Read(0, src.Samples(), dst)
			}
			require.ErrorIs(t, err, ErrBadInput)
			require.ErrorContains(t, err, fmt.Sprintf(c.want, last, c.row-first, c.row-first+1))
		})
	}
}
