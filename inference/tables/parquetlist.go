package tables

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"
)

// A list of numbers (list<float>, fixed_size_list<double, 3>, ...) is what a model's input most often
// comes from, and pqarrow's general list assembly (record delimiting, spaced values, validity bitmaps,
// buffers grown value by value) costs several times the decoding itself. A listLeaf reads such a
// column with arrow-go's typed column chunk reader instead, page by page as ever, straight into the
// batch's arrow buffers: values as decoded, offsets from the repetition levels.
//
// It takes only the clean case: every list present and non-empty, every element present (and, for a
// fixed-size list, of its size). Anything else in a batch (a null, an empty list) is left to pqarrow,
// which reads that row group on from the batch's first row, so that such data comes out exactly as
// it always has.

// errNotClean says that a batch holds something a listLeaf leaves to pqarrow.
var errNotClean = errors.New("list batch needs pqarrow")

// listLevels is how many levels a listLeaf decodes at a time: its scratch space, whatever the batch.
const listLevels = 64 << 10

// listLeaf reads a list-of-numbers column of one row group.
type listLeaf interface {
	// read returns the next n rows as an array of the column's arrow type, or errNotClean.
	read(n int) (arrow.Array, error)
	// close releases the column chunk reader's pages.
	close() error
}

// directListType says whether a top-level field of type t, whose only leaf is descr, can be read by a
// listLeaf.
func directListType(t arrow.DataType, descr *schema.Column) bool {
	var elem arrow.DataType
	switch lt := t.(type) {
	case *arrow.ListType:
		elem = lt.Elem()
	case *arrow.FixedSizeListType:
		elem = lt.Elem()
	default:
		return false
	}
	if descr.MaxRepetitionLevel() != 1 {
		return false
	}
	// The arrow element type must be the physical type's own (no logical type such as int8 or a date).
	switch descr.PhysicalType() {
	case parquet.Types.Float:
		return elem.ID() == arrow.FLOAT32
	case parquet.Types.Double:
		return elem.ID() == arrow.FLOAT64
	case parquet.Types.Int32:
		return elem.ID() == arrow.INT32
	case parquet.Types.Int64:
		return elem.ID() == arrow.INT64
	}
	return false
}

// newListLeaf returns a listLeaf over a column chunk reader of a column directListType accepted;
// perRow (0: unknown) is about how many values a row holds.
func newListLeaf(t arrow.DataType, cr file.ColumnChunkReader, alloc memory.Allocator, perRow int) listLeaf {
	switch r := cr.(type) {
	case *file.Float32ColumnChunkReader:
		return newTypedListLeaf(t, cr, r.ReadBatch, alloc, perRow)
	case *file.Float64ColumnChunkReader:
		return newTypedListLeaf(t, cr, r.ReadBatch, alloc, perRow)
	case *file.Int32ColumnChunkReader:
		return newTypedListLeaf(t, cr, r.ReadBatch, alloc, perRow)
	case *file.Int64ColumnChunkReader:
		return newTypedListLeaf(t, cr, r.ReadBatch, alloc, perRow)
	}
	panic(fmt.Sprintf("tables: no list leaf for %T", cr))
}

type typedListLeaf[T float32 | float64 | int32 | int64] struct {
	typ       arrow.DataType
	elem      arrow.DataType
	fixedSize int // a fixed-size list's size, else 0
	cr        file.ColumnChunkReader
	readBatch func(n int64, vals []T, def, rep []int16) (int64, int, error)
	alloc     memory.Allocator
	def, rep  []int16
	// Levels and values read past the last batch's end: the next batch starts with them.
	aheadRep  []int16
	aheadVals []T
	perRow    int // values per row in the last batch, to size the next
}

func newTypedListLeaf[T float32 | float64 | int32 | int64](t arrow.DataType, cr file.ColumnChunkReader,
	readBatch func(int64, []T, []int16, []int16) (int64, int, error), alloc memory.Allocator, perRow int) *typedListLeaf[T] {
	l := &typedListLeaf[T]{typ: t, cr: cr, readBatch: readBatch, alloc: alloc, perRow: perRow,
		def: make([]int16, listLevels), rep: make([]int16, listLevels)}
	switch lt := t.(type) {
	case *arrow.ListType:
		l.elem = lt.Elem()
	case *arrow.FixedSizeListType:
		l.elem, l.fixedSize, l.perRow = lt.Elem(), int(lt.Len()), int(lt.Len())
	}
	return l
}

func (l *typedListLeaf[T]) close() error { return l.cr.Close() }

// minLevelRead keeps reads from shrinking to a level at a time when rows are longer than the last batch's.
const minLevelRead = 1024

func (l *typedListLeaf[T]) read(n int) (arrow.Array, error) {
	size := int(sizeOf(*new(T)))
	offsetsBuf := memory.NewResizableBuffer(l.alloc)
	defer offsetsBuf.Release()
	offsetsBuf.Resize(arrow.Int32Traits.BytesRequired(n + 1))
	offsets := arrow.Int32Traits.CastFromBytes(offsetsBuf.Bytes())
	valuesBuf := memory.NewResizableBuffer(l.alloc)
	defer valuesBuf.Release()
	valuesBuf.Resize((n*l.perRow + minLevelRead) * size)
	values := view[T](valuesBuf.Bytes())

	rows, nv, full := 0, 0, false
	// take adds levels whose values are already at values[nv:] to the batch, up to the start of row
	// n+1; it returns how many it took, or -1 where the levels do not start a row.
	take := func(rep []int16) int {
		for j := 0; j < len(rep); j++ {
			if rows > 0 {
				// Most levels go on with a row (1, the only repetition level below 0's new row):
				// eight at a time, where all eight do.
				for ; j+8 <= len(rep); j += 8 {
					if r := rep[j : j+8 : j+8]; r[0]&r[1]&r[2]&r[3]&r[4]&r[5]&r[6]&r[7] == 0 {
						break
					}
				}
				if j == len(rep) {
					break
				}
			}
			if rep[j] != 0 {
				if rows == 0 {
					return -1
				}
				continue
			}
			if rows == n {
				full = true
				return j
			}
			offsets[rows] = int32(nv + j)
			rows++
		}
		return len(rep)
	}
	grow := func(need int) {
		if need > len(values) {
			valuesBuf.Resize(max(2*len(values), need) * size)
			values = view[T](valuesBuf.Bytes())
		}
	}
	if len(l.aheadRep) > 0 {
		grow(len(l.aheadVals))
		copy(values, l.aheadVals)
		k := take(l.aheadRep)
		if k < 0 {
			return nil, errNotClean
		}
		nv = k
		l.aheadRep, l.aheadVals = l.aheadRep[k:], l.aheadVals[k:]
	}
	for !full {
		want := listLevels
		if l.perRow > 0 {
			want = min(listLevels, max(minLevelRead, n*l.perRow-nv+1)) // just past the batch when rows keep their length
		}
		grow(nv + want)
		levels, read, err := l.readBatch(int64(want), values[nv:nv+want], l.def[:want], l.rep[:want])
		if err != nil {
			return nil, err
		}
		if levels == 0 {
			if err := l.cr.Err(); err != nil {
				return nil, err
			}
			break // the column chunk ended
		}
		if int64(read) != levels {
			return nil, errNotClean // a level below the maximum: a null or an empty list
		}
		rep := l.rep[:levels]
		k := take(rep)
		if k < 0 {
			return nil, errNotClean
		}
		if full {
			l.aheadRep = append(l.aheadRep[:0], rep[k:]...)
			l.aheadVals = append(l.aheadVals[:0], values[nv+k:nv+int(levels)]...)
		}
		nv += k
	}
	if rows != n {
		return nil, errNotClean // not the rows the row group says: pqarrow has its say
	}
	offsets[n] = int32(nv)
	if l.fixedSize > 0 {
		for i := range n {
			if offsets[i+1]-offsets[i] != int32(l.fixedSize) {
				return nil, errNotClean
			}
		}
	}
	l.perRow = nv / n
	valuesBuf.ResizeNoShrink(nv * size)

	child := array.NewData(l.elem, nv, []*memory.Buffer{nil, valuesBuf}, nil, 0, 0)
	defer child.Release()
	buffers := []*memory.Buffer{nil, offsetsBuf}
	if l.fixedSize > 0 {
		buffers = []*memory.Buffer{nil}
	}
	data := array.NewData(l.typ, n, buffers, []arrow.ArrayData{child}, 0, 0)
	defer data.Release()
	return array.MakeFromData(data), nil
}

func sizeOf[T any](v T) uintptr { return unsafe.Sizeof(v) }
