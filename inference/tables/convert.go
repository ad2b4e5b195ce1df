package tables

import (
	"fmt"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
)

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

func unsafeBytes(w []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), len(w)*8)
}

// view returns dst as n elements of D (dst is aligned: see alignedBytes).
func view[D any](dst []byte) []D {
	var z D
	size := int(unsafe.Sizeof(z))
	if len(dst) < size {
		return nil
	}
	return unsafe.Slice((*D)(unsafe.Pointer(&dst[0])), len(dst)/size)
}

// convertInto writes the values lo..hi of arr (a primitive array whose type NewPlan allowed for t)
// as elements of t into dst, value i going to element (i-lo)*stride+off.
func convertInto(dst []byte, t ElemType, arr arrow.Array, lo, hi, stride, off int) {
	switch a := arr.(type) {
	case *array.Float32:
		put(dst, t, a.Float32Values()[lo:hi], stride, off)
	case *array.Float64:
		put(dst, t, a.Float64Values()[lo:hi], stride, off)
	case *array.Int8:
		put(dst, t, a.Int8Values()[lo:hi], stride, off)
	case *array.Int16:
		put(dst, t, a.Int16Values()[lo:hi], stride, off)
	case *array.Int32:
		put(dst, t, a.Int32Values()[lo:hi], stride, off)
	case *array.Int64:
		put(dst, t, a.Int64Values()[lo:hi], stride, off)
	case *array.Uint8:
		put(dst, t, a.Uint8Values()[lo:hi], stride, off)
	case *array.Uint16:
		put(dst, t, a.Uint16Values()[lo:hi], stride, off)
	case *array.Uint32:
		put(dst, t, a.Uint32Values()[lo:hi], stride, off)
	case *array.Uint64:
		put(dst, t, a.Uint64Values()[lo:hi], stride, off)
	case *array.Float16:
		vals := a.Values()[lo:hi]
		switch t {
		case Float16:
			d := view[uint16](dst)
			for i, v := range vals {
				d[i*stride+off] = v.Uint16()
			}
		case Float32:
			d := view[float32](dst)
			for i, v := range vals {
				d[i*stride+off] = v.Float32()
			}
		case Float64:
			d := view[float64](dst)
			for i, v := range vals {
				d[i*stride+off] = float64(v.Float32())
			}
		default:
			panic(fmt.Sprintf("tables: float16 to %s", t))
		}
	case *array.Boolean:
		if t != Bool {
			panic(fmt.Sprintf("tables: bool to %s", t))
		}
		for i := lo; i < hi; i++ {
			var v byte
			if a.Value(i) {
				v = 1
			}
			dst[(i-lo)*stride+off] = v
		}
	default:
		panic(fmt.Sprintf("tables: cannot convert %s", arr.DataType()))
	}
}

func put[S number](dst []byte, t ElemType, src []S, stride, off int) {
	switch t {
	case Float32:
		putAs(view[float32](dst), src, stride, off)
	case Float64:
		putAs(view[float64](dst), src, stride, off)
	case Int8:
		putAs(view[int8](dst), src, stride, off)
	case Int16:
		putAs(view[int16](dst), src, stride, off)
	case Int32:
		putAs(view[int32](dst), src, stride, off)
	case Int64:
		putAs(view[int64](dst), src, stride, off)
	case Uint8:
		putAs(view[uint8](dst), src, stride, off)
	case Uint16:
		putAs(view[uint16](dst), src, stride, off)
	case Uint32:
		putAs(view[uint32](dst), src, stride, off)
	case Uint64:
		putAs(view[uint64](dst), src, stride, off)
	case Float16:
		d := view[uint16](dst)
		for i, v := range src {
			d[i*stride+off] = float16.New(float32(v)).Uint16()
		}
	default:
		panic(fmt.Sprintf("tables: %T to %s", src, t))
	}
}

func putAs[D, S number](dst []D, src []S, stride, off int) {
	if same, ok := any(dst).([]S); ok && stride == 1 && off == 0 {
		copy(same, src) // a memmove, where the loop below converts value by value
		return
	}
	if stride == 1 && off == 0 {
		dst = dst[:len(src)]
		for i, v := range src {
			dst[i] = D(v)
		}
		return
	}
	for i, v := range src {
		dst[i*stride+off] = D(v)
	}
}
