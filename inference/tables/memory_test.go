package tables

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"
)

// peakAllocator records the most bytes held at once through it.
type peakAllocator struct {
	mu        sync.Mutex
	cur, peak int
	memory.GoAllocator
}

func (a *peakAllocator) add(d int) {
	a.mu.Lock()
	a.cur += d
	a.peak = max(a.peak, a.cur)
	a.mu.Unlock()
}
func (a *peakAllocator) Allocate(n int) []byte { a.add(n); return a.GoAllocator.Allocate(n) }
func (a *peakAllocator) Reallocate(n int, b []byte) []byte {
	a.add(n - len(b))
	return a.GoAllocator.Reallocate(n, b)
}
func (a *peakAllocator) Free(b []byte) { a.add(-len(b)); a.GoAllocator.Free(b) }

// Memory is bounded by a batch of the chosen columns plus about one decompressed page of each (the
// writer's page size, 1 MiB by default), not by the file or the row group: reading one float64 column
// of a 400,000-row row group (3.2 MB of x, three wider unread columns beside it, 20 MB in all) in
// batches of 4096 rows peaks at 2.16 MB of arrow buffers (measured; 1.67 MB with four row groups of
// 100,000): under the column chunk, though part of it still grows with the row group's size.
func TestParquetMemoryBoundedByBatch(t *testing.T) {
	t.Parallel()
	const rows, group = 400_000, 400_000 // one row group: 3.2 MB of x
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "x", Type: arrow.PrimitiveTypes.Float64},
		{Name: "pad", Type: arrow.FixedSizeListOf(4, arrow.PrimitiveTypes.Float64)},
		{Name: "y", Type: arrow.PrimitiveTypes.Float64},
		{Name: "z", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(sc, &buf,
		parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithDictionaryDefault(false)),
		pqarrow.NewArrowWriterProperties())
	require.NoError(t, err)
	for g := 0; g < rows/group; g++ { // one unsliced record a row group (see TestArrowGoWritesSlicedFixedSizeListsWrong)
		b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
		for i := g * group; i < (g+1)*group; i++ {
			v := float64(i)*1.000001 + 0.5
			b.Field(0).(*array.Float64Builder).Append(v)
			fb := b.Field(1).(*array.FixedSizeListBuilder)
			fb.Append(true)
			fb.ValueBuilder().(*array.Float64Builder).AppendValues([]float64{v, -v, v * 3, v / 3}, nil)
			b.Field(2).(*array.Float64Builder).Append(-v)
			b.Field(3).(*array.Float64Builder).Append(v * 7)
		}
		rec := b.NewRecordBatch()
		require.NoError(t, w.Write(rec))
		rec.Release()
		b.Release()
	}
	require.NoError(t, w.Close())

	alloc := &peakAllocator{}
	br := bytes.NewReader(buf.Bytes())
	r, err := Open(br, br.Size(), "big.parquet", Options{Columns: []string{"x"}, BatchRows: 4096, Alloc: alloc})
	require.NoError(t, err)
	n := 0
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.Equal(t, float64(int(b.Row))*1.000001+0.5, b.Rec.Column(0).(*array.Float64).Value(0))
		n += int(b.Rec.NumRows())
		b.Rec.Release()
	}
	require.NoError(t, r.Close())
	require.Equal(t, rows, n)
	colBytes := group * 8
	t.Logf("file %d bytes; column x: %d bytes a row group; peak arrow allocation while reading it: %d bytes", buf.Len(), colBytes, alloc.peak)
	require.Less(t, alloc.peak, colBytes, "under one row group's column chunk")
}
