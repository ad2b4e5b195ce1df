package testenv

import (
	"bytes"
	"io"
	"slices"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// ListTable is the table most tests feed a model from: an int64 "id"
// (FirstID, FirstID+1, ...) and a list<float> column of K values a row,
// taken from X in order.
type ListTable struct {
	Column       string // the list column's name
	X            []float32
	K            int
	FirstID      int64
	RowGroupRows int64 // 0: 16,384
	// NullRows are rows whose list is null, to be refused.
	NullRows []int
}

// WriteParquet writes t as Parquet written by arrow-go (Snappy), the way
// a data pipeline would, 8,192 rows a record; it closes w if w is an
// io.Closer (arrow-go's writer does).
func (t ListTable) WriteParquet(w io.Writer) error {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: t.Column, Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
	}, nil)
	rowGroup := t.RowGroupRows
	if rowGroup == 0 {
		rowGroup = 16384
	}
	fw, err := pqarrow.NewFileWriter(schema, w, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy),
		parquet.WithMaxRowGroupLength(rowGroup)), pqarrow.DefaultWriterProps())
	if err != nil {
		return err
	}
	rows := len(t.X) / t.K
	for start := 0; start < rows; start += 8192 {
		rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		lists := rb.Field(1).(*array.ListBuilder)
		values := lists.ValueBuilder().(*array.Float32Builder)
		for i := start; i < min(rows, start+8192); i++ {
			rb.Field(0).(*array.Int64Builder).Append(t.FirstID + int64(i))
			if slices.Contains(t.NullRows, i) {
				lists.AppendNull()
				continue
			}
			lists.Append(true)
			values.AppendValues(t.X[i*t.K:(i+1)*t.K], nil)
		}
		rec := rb.NewRecordBatch()
		err := fw.WriteBuffered(rec)
		rec.Release()
		rb.Release()
		if err != nil {
			return err
		}
	}
	return fw.Close()
}

// ReadParquet reads a whole Parquet file back with arrow-go, as a user's
// pyarrow would; the caller releases the table.
func ReadParquet(tb testing.TB, data []byte) arrow.Table {
	tb.Helper()
	rdr, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("read parquet: %v", err)
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		tb.Fatalf("read parquet: %v", err)
	}
	tbl, err := fr.ReadTable(tb.Context())
	if err != nil {
		tb.Fatalf("read parquet: %v", err)
	}
	return tbl
}

// WriteFloatCSV writes rows of k floats from x as a CSV with a header
// c0..c(k-1), each value in the fewest digits that read back as its
// float32, in pieces of about 512 KiB.
func WriteFloatCSV(w io.Writer, x []float32, k int) error {
	buf := make([]byte, 0, 1<<20)
	for j := range k {
		if j > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, 'c')
		buf = strconv.AppendInt(buf, int64(j), 10)
	}
	buf = append(buf, '\n')
	for i := range len(x) / k {
		for j := range k {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendFloat(buf, float64(x[i*k+j]), 'g', -1, 32)
		}
		buf = append(buf, '\n')
		if len(buf) > 1<<19 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}
