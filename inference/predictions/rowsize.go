package predictions

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// rowBytes is the writer's accounting of one row of a kept column: its
// values' bytes as arrow holds them (offsets included for variable-width
// values). It depends only on the row's values, never on how rows were
// batched into Write calls, so row-group boundaries (and so the file's
// bytes) are the same for any batching and after a resume.
func rowBytes(arr arrow.Array, i int) int64 {
	return rangeBytes(arr, i, i+1)
}

// rangeBytes is rowBytes summed over rows [i, j).
func rangeBytes(arr arrow.Array, i, j int) int64 {
	if j <= i {
		return 0
	}
	switch a := arr.(type) {
	case *array.Boolean:
		return int64(j - i)
	case *array.String:
		o := a.ValueOffsets()
		return int64(o[j]-o[i]) + 4*int64(j-i)
	case *array.Binary:
		o := a.ValueOffsets()
		return int64(o[j]-o[i]) + 4*int64(j-i)
	case *array.LargeString:
		o := a.ValueOffsets()
		return o[j] - o[i] + 8*int64(j-i)
	case *array.LargeBinary:
		o := a.ValueOffsets()
		return o[j] - o[i] + 8*int64(j-i)
	case *array.List:
		s, _ := a.ValueOffsets(i)
		_, e := a.ValueOffsets(j - 1)
		return rangeBytes(a.ListValues(), int(s), int(e)) + 4*int64(j-i)
	case *array.LargeList:
		s, _ := a.ValueOffsets(i)
		_, e := a.ValueOffsets(j - 1)
		return rangeBytes(a.ListValues(), int(s), int(e)) + 8*int64(j-i)
	case *array.FixedSizeList:
		n := int(a.DataType().(*arrow.FixedSizeListType).Len())
		off := a.Data().Offset()
		return rangeBytes(a.ListValues(), (off+i)*n, (off+j)*n)
	case *array.Struct:
		var sum int64
		for f := 0; f < a.NumField(); f++ {
			sum += rangeBytes(a.Field(f), i, j)
		}
		return sum
	case array.StringLike:
		var sum int64
		for k := i; k < j; k++ {
			sum += int64(a.ValueLen(k))
		}
		return sum + 16*int64(j-i)
	}
	if fw, ok := arr.DataType().(arrow.FixedWidthDataType); ok && fw.BitWidth() >= 8 {
		return int64(fw.BitWidth()/8) * int64(j-i)
	}
	// Other types (maps, unions, dictionaries): a flat estimate, still a
	// function of the row count alone.
	return 8 * int64(j-i)
}

// fixedRowBytes reports whether a kept column's rows all have the same size
// in rowBytes' accounting, and that size.
func fixedRowBytes(t arrow.DataType) (int64, bool) {
	switch t.ID() {
	case arrow.BOOL:
		return 1, true
	case arrow.FIXED_SIZE_LIST:
		fl := t.(*arrow.FixedSizeListType)
		n, ok := fixedRowBytes(fl.Elem())
		return n * int64(fl.Len()), ok
	case arrow.STRUCT:
		var sum int64
		for _, f := range t.(*arrow.StructType).Fields() {
			n, ok := fixedRowBytes(f.Type)
			if !ok {
				return 0, false
			}
			sum += n
		}
		return sum, true
	case arrow.STRING, arrow.BINARY, arrow.LARGE_STRING, arrow.LARGE_BINARY, arrow.LIST, arrow.LARGE_LIST, arrow.STRING_VIEW, arrow.BINARY_VIEW:
		return 0, false
	}
	if fw, ok := t.(arrow.FixedWidthDataType); ok && fw.BitWidth() >= 8 {
		return int64(fw.BitWidth() / 8), true
	}
	return 8, true
}
