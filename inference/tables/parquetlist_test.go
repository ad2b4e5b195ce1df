package tables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"
)

// writeListTable writes 3000 rows in row groups of 1000 (one unsliced record each): an id and lists of
// the four numeric types a listLeaf reads, clean in the first and last row group and, in the middle one,
// with ragged lengths, a null list, an empty list and a null element.
func writeListTable(t *testing.T) []byte {
	t.Helper()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "f", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "d", Type: arrow.ListOfNonNullable(arrow.PrimitiveTypes.Float64)},
		{Name: "i", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "l", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64), Nullable: true},
		{Name: "fx", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Float32), Nullable: true},
	}, nil)
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(sc, &buf,
		parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(1000),
			parquet.WithDataPageSize(4096)), // many pages a row group
		pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	require.NoError(t, err)
	for g := range 3 {
		b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
		for i := g * 1000; i < (g+1)*1000; i++ {
			b.Field(0).(*array.Int64Builder).Append(int64(i))
			n := 5
			switch g {
			case 1:
				n = i%7 + 1
			case 2:
				n = 8
			}
			f := b.Field(1).(*array.ListBuilder)
			if i == 1500 {
				f.AppendNull()
			} else {
				f.Append(true)
				for k := range n {
					f.ValueBuilder().(*array.Float32Builder).Append(float32(i) + float32(k)/8)
				}
			}
			d := b.Field(2).(*array.ListBuilder)
			d.Append(true)
			if i != 1600 {
				d.ValueBuilder().(*array.Float64Builder).AppendValues([]float64{float64(i), -float64(i)}, nil)
			}
			li := b.Field(3).(*array.ListBuilder)
			li.Append(true)
			li.ValueBuilder().(*array.Int32Builder).Append(int32(i))
			if i == 1700 {
				li.ValueBuilder().AppendNull()
			} else {
				li.ValueBuilder().(*array.Int32Builder).Append(int32(-i))
			}
			ll := b.Field(4).(*array.ListBuilder)
			ll.Append(true)
			for k := range n {
				ll.ValueBuilder().(*array.Int64Builder).Append(int64(i*10 + k))
			}
			fx := b.Field(5).(*array.FixedSizeListBuilder)
			fx.Append(true)
			fx.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{float32(i), 0.5, -float32(i)}, nil)
		}
		rec := b.NewRecordBatch()
		require.NoError(t, w.Write(rec))
		rec.Release()
		b.Release()
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// The list columns read by listLeaf come out exactly as pqarrow reads them, batch by batch, clean or
// not (pqarrow takes over from a batch that is not clean), from the start or resumed.
func TestParquetListsReadAsPqarrowReadsThem(t *testing.T) {
	t.Parallel()
	data := writeListTable(t)
	cols := []string{"f", "id", "fx", "d", "i", "l"}
	for _, start := range []int64{0, 700, 1300, 1536, 2999} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			t.Parallel()
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			br := bytes.NewReader(data)
			r, err := Open(br, br.Size(), "lists.parquet", Options{Columns: cols, BatchRows: 256, StartRow: start, Alloc: mem})
			require.NoError(t, err)
			for i, c := range r.(*parquetReader).cols {
				require.Equal(t, cols[i] != "id", c.pqIndex < 0, "column %s read by a listLeaf", cols[i])
			}

			pf, err := file.NewParquetReader(bytes.NewReader(data))
			require.NoError(t, err)
			defer pf.Close()
			fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 256}, memory.DefaultAllocator)
			require.NoError(t, err)
			row := int64(0)
			for g := range pf.NumRowGroups() { // the reader's batches never cross a row group
				rr, err := fr.GetRecordReader(context.Background(), nil, []int{g})
				require.NoError(t, err)
				for rr.Next() {
					want := rr.RecordBatch()
					n := want.NumRows()
					if row+n <= start {
						row += n
						continue
					}
					lo := max(0, start-row)
					got, err := r.Next()
					require.NoError(t, err)
					require.Equal(t, row+lo, got.Row)
					require.Equal(t, n-lo, got.Rec.NumRows())
					for i, c := range cols {
						w := want.Column(want.Schema().FieldIndices(c)[0])
						ws := array.NewSlice(w, lo, n)
						require.True(t, arrow.TypeEqual(ws.DataType(), got.Rec.Column(i).DataType()), "%s: %s vs %s", c, ws.DataType(), got.Rec.Column(i).DataType())
						require.True(t, array.Equal(ws, got.Rec.Column(i)), "column %s, batch at row %d", c, got.Row)
						ws.Release()
					}
					got.Rec.Release()
					row += n
				}
				require.NoError(t, rr.Err())
				rr.Release()
			}
			require.Equal(t, int64(3000), row)
			_, err = r.Next()
			require.ErrorIs(t, err, io.EOF)
			require.NoError(t, r.Close())
		})
	}
}

// What the feed refuses in the lists comes out as before, naming the row: a null list, an empty
// list, a null element, a list of another length.
func TestParquetListRefusals(t *testing.T) {
	t.Parallel()
	data := writeListTable(t)
	for _, tc := range []struct {
		input Input
		want  string
	}{
		{Input{Name: "f", Type: Float32, Shape: []int64{-1, -1}}, `row 1001, column "f": a list of 1 in a batch whose lists hold 7 from row 1000`},
		{Input{Name: "d", Type: Float64, Shape: []int64{-1, 2}}, `row 1600, column "d": a list of 0; input "d" takes 2 values a row`},
		{Input{Name: "i", Type: Int64, Shape: []int64{-1, 2}}, `row 1700, column "i": null list element`},
		{Input{Name: "l", Type: Int64, Shape: []int64{-1, 5}}, `input "l" takes 5 values a row (shape [? 5]); row 1000, column "l" holds a list of 7`},
	} {
		br := bytes.NewReader(data)
		r, err := Open(br, br.Size(), "lists.parquet", Options{Columns: []string{tc.input.Name}, BatchRows: 256})
		require.NoError(t, err)
		plan, err := NewPlan([]Input{tc.input}, r.Schema(), nil)
		require.NoError(t, err)
		var ts []Tensor
		for err == nil {
			var b Batch
			if b, err = r.Next(); err == nil {
				ts, err = plan.Fill(b, ts)
				b.Rec.Release()
			}
		}
		require.False(t, errors.Is(err, io.EOF), tc.input.Name)
		require.Contains(t, err.Error(), tc.want)
		require.NoError(t, r.Close())
	}
}
