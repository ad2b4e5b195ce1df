package npy

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// hostLittleEndian is true on the hosts we target; it guards the raw-copy fast path for float32.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

var le = binary.LittleEndian

// ToFloat32 converts len(dst) elements of little-endian dtype dt in src (len(src) must be len(dst)*dt.Size, else panic) to float32 in dst.
// float16 (IEEE half incl. subnormals/inf/nan), float32, float64, int8..int64, uint8..uint64, bool.
//
// This is the hot path of streaming inference, so every dtype has its own tight loop; float32 is a
// plain memory copy. Integers too large for float32 are rounded to nearest, float64 values out of
// float32 range become ±Inf, as in numpy's astype(np.float32).
func ToFloat32(dst []float32, src []byte, dt DType) {
	if !dt.valid() {
		panic(fmt.Sprintf("npy: ToFloat32: unsupported dtype %s", dt))
	}
	if len(src) != len(dst)*dt.Size {
		panic(fmt.Sprintf("npy: ToFloat32: len(src) = %d, want %d for %d elements of %s", len(src), len(dst)*dt.Size, len(dst), dt))
	}
	if len(dst) == 0 {
		return
	}
	switch dt {
	case DType{'f', 4}:
		if hostLittleEndian {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(src)), src)
			return
		}
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case DType{'f', 8}:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	case DType{'f', 2}:
		tbl := halfTable()
		for i := range dst {
			dst[i] = tbl[le.Uint16(src[2*i:])]
		}
	case DType{'i', 1}:
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	case DType{'i', 2}:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(src[2*i:])))
		}
	case DType{'i', 4}:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(src[4*i:])))
		}
	case DType{'i', 8}:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(src[8*i:])))
		}
	case DType{'u', 1}:
		for i := range dst {
			dst[i] = float32(src[i])
		}
	case DType{'u', 2}:
		for i := range dst {
			dst[i] = float32(le.Uint16(src[2*i:]))
		}
	case DType{'u', 4}:
		for i := range dst {
			dst[i] = float32(le.Uint32(src[4*i:]))
		}
	case DType{'u', 8}:
		for i := range dst {
			dst[i] = float32(le.Uint64(src[8*i:]))
		}
	case DType{'b', 1}:
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	}
}

// halfTable maps every float16 bit pattern to its float32 value. A 256 KiB lookup is about twice as fast
// as the bit manipulation in halfToFloat32; it is built on first use so that processes without float16
// data never pay for it.
var halfTable = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = halfToFloat32(uint16(i))
	}
	return &t
})

// halfToFloat32 converts IEEE 754 binary16 bits to float32 exactly (every half is a float32),
// keeping the sign of zero and NaN payloads.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0: // zero or subnormal: mant * 2^-24, exact in float32
		f := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(f) | sign)
	case 0x1f: // inf or nan
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	default: // rebias the exponent from 15 to 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	}
}

// FromFloat32 encodes v as little-endian float32 bytes: the data of a
// Float32 array, or a raw .bin input.
func FromFloat32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		le.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
