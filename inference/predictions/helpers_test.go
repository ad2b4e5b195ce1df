package predictions

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"
)

// keptFields are kept columns of the kinds a table input has: an id, a
// nullable string, a zoned timestamp with nulls, a float list.
var keptFields = []arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "feat", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
}

// testOutputs cover every element type and the three column shapes.
var testOutputs = []Output{
	{Name: "score", Type: arrow.PrimitiveTypes.Float32},                       // [N]
	{Name: "label", Type: arrow.PrimitiveTypes.Int64, Shape: []int64{1}},      // [N,1]
	{Name: "probs", Type: arrow.PrimitiveTypes.Float32, Shape: []int64{3}},    // [N,3]
	{Name: "mask", Type: arrow.FixedWidthTypes.Boolean, Shape: []int64{2, 2}}, // [N,2,2]
	{Name: "h", Type: arrow.FixedWidthTypes.Float16, Shape: []int64{2}},       // float16
	{Name: "d", Type: arrow.PrimitiveTypes.Float64, Shape: []int64{2, 1, 2}},  // rank 3
	{Name: "i8", Type: arrow.PrimitiveTypes.Int8}, {Name: "i16", Type: arrow.PrimitiveTypes.Int16},
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32}, {Name: "u8", Type: arrow.PrimitiveTypes.Uint8},
	{Name: "u16", Type: arrow.PrimitiveTypes.Uint16}, {Name: "u32", Type: arrow.PrimitiveTypes.Uint32},
	{Name: "u64", Type: arrow.PrimitiveTypes.Uint64, Shape: []int64{2}},
}

// rows is a deterministic table of n rows: the kept columns and each
// output's raw bytes, as the engine would hand them over.
type rows struct {
	kept arrow.RecordBatch
	outs [][]byte
	n    int
}

func makeRows(t *testing.T, fields []arrow.Field, outputs []Output, n int) rows {
	t.Helper()
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	defer b.Release()
	for c, f := range fields {
		for i := range n {
			switch bb := b.Field(c).(type) {
			case *array.Int64Builder:
				bb.Append(int64(i)*7 - 3)
			case *array.StringBuilder:
				if i%5 == 3 {
					bb.AppendNull()
				} else {
					bb.Append(fmt.Sprintf("row-%d-%s", i, string(bytes.Repeat([]byte{'x'}, i%17))))
				}
			case *array.TimestampBuilder:
				if i%4 == 1 {
					bb.AppendNull()
				} else {
					bb.Append(arrow.Timestamp(1_700_000_000_000_000 + int64(i)*1_000_003))
				}
			case *array.ListBuilder:
				if i%6 == 2 {
					bb.AppendNull()
					continue
				}
				bb.Append(true)
				vb := bb.ValueBuilder().(*array.Float32Builder)
				for k := range i % 4 {
					vb.Append(float32(i) + float32(k)/4)
				}
			default:
				t.Fatalf("no generator for kept column %s", f.Type)
			}
		}
	}
	r := rows{kept: b.NewRecordBatch(), n: n}
	t.Cleanup(r.kept.Release)
	if len(fields) == 0 {
		r.kept.Release()
		r.kept = nil
	}
	for oi, o := range outputs {
		c, err := resolveOutput(o)
		require.NoError(t, err)
		raw := make([]byte, int64(n)*c.rowBytes)
		elem := int(c.rowBytes) / c.width
		for e := range n * c.width {
			v := uint64(e)*2654435761 + uint64(oi)
			p := raw[e*elem : (e+1)*elem]
			switch o.Type.ID() {
			case arrow.FLOAT32:
				binary.LittleEndian.PutUint32(p, math.Float32bits(float32(v%1000)/7))
			case arrow.FLOAT64:
				binary.LittleEndian.PutUint64(p, math.Float64bits(float64(v%100000)/13))
			case arrow.FLOAT16:
				binary.LittleEndian.PutUint16(p, uint16(0x3c00+v%512)) // 1.0 and up, finite
			case arrow.BOOL:
				p[0] = byte(v % 2)
			default:
				for k := range p {
					p[k] = byte(v >> (8 * k))
				}
			}
		}
		r.outs = append(r.outs, raw)
	}
	return r
}

// slice is rows [i, j) of r.
func (r rows) slice(i, j int) (arrow.RecordBatch, [][]byte, int) {
	var kept arrow.RecordBatch
	if r.kept != nil {
		kept = r.kept.NewSlice(int64(i), int64(j))
	}
	outs := make([][]byte, len(r.outs))
	for k, o := range r.outs {
		per := len(o) / r.n
		outs[k] = o[i*per : j*per]
	}
	return kept, outs, j - i
}

// writeIn writes rows [from, to) to wr in batches of the given size.
func writeIn(t *testing.T, wr *Writer, r rows, from, to, batch int) {
	t.Helper()
	for i := from; i < to; i += batch {
		kept, outs, n := r.slice(i, min(i+batch, to))
		require.NoError(t, wr.Write(kept, outs, n))
		if kept != nil {
			kept.Release()
		}
	}
}

// writeAll writes every row in one run and returns the file.
func writeAll(t *testing.T, r rows, fields []arrow.Field, outputs []Output, opts Options, batch int) []byte {
	t.Helper()
	var buf bytes.Buffer
	wr, err := New(&buf, fields, outputs, opts)
	require.NoError(t, err)
	writeIn(t, wr, r, 0, r.n, batch)
	require.NoError(t, wr.Close())
	require.Equal(t, int64(buf.Len()), wr.Stats().Offset)
	return buf.Bytes()
}

// readBack reads a file with arrow-go's own reader, page by page.
func readBack(t *testing.T, b []byte) (arrow.Table, *file.Reader) {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(b))
	require.NoError(t, err)
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1000}, memory.DefaultAllocator)
	require.NoError(t, err)
	tbl, err := fr.ReadTable(t.Context())
	require.NoError(t, err)
	t.Cleanup(tbl.Release)
	return tbl, pf
}

func column(t *testing.T, tbl arrow.Table, i int) arrow.Array {
	t.Helper()
	arr, err := array.Concatenate(tbl.Column(i).Data().Chunks(), memory.DefaultAllocator)
	require.NoError(t, err)
	t.Cleanup(arr.Release)
	return arr
}
