package npy

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// refToFloat32 is the straightforward reference conversion: decode with encoding/binary into a
// slice of the Go type, then convert each element.
func refToFloat32(t testing.TB, src []byte, dt DType) []float32 {
	t.Helper()
	n := len(src) / dt.Size
	out := make([]float32, n)
	read := func(data any) {
		require.NoError(t, binary.Read(bytes.NewReader(src), binary.LittleEndian, data))
	}
	switch dt {
	case DType{'f', 2}:
		for i := range out {
			out[i] = refHalf(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case DType{'f', 4}:
		v := make([]float32, n)
		read(v)
		copy(out, v)
	case DType{'f', 8}:
		v := make([]float64, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'i', 1}:
		v := make([]int8, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'i', 2}:
		v := make([]int16, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'i', 4}:
		v := make([]int32, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'i', 8}:
		v := make([]int64, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'u', 1}:
		for i, x := range src {
			out[i] = float32(x)
		}
	case DType{'u', 2}:
		v := make([]uint16, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'u', 4}:
		v := make([]uint32, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'u', 8}:
		v := make([]uint64, n)
		read(v)
		for i, x := range v {
			out[i] = float32(x)
		}
	case DType{'b', 1}:
		for i, x := range src {
			if x != 0 {
				out[i] = 1
			}
		}
	default:
		t.Fatalf("no reference for %s", dt)
	}
	return out
}

// refHalf decodes IEEE binary16 from its definition, independently of halfToFloat32's bit tricks.
func refHalf(h uint16) float32 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return float32(sign * math.Ldexp(mant/1024, -14))
	case 0x1f:
		if mant != 0 {
			return float32(math.NaN())
		}
		return float32(math.Inf(int(sign)))
	default:
		return float32(sign * math.Ldexp(1+mant/1024, exp-15))
	}
}

var allDTypes = []DType{
	{'f', 2}, {'f', 4}, {'f', 8},
	{'i', 1}, {'i', 2}, {'i', 4}, {'i', 8},
	{'u', 1}, {'u', 2}, {'u', 4}, {'u', 8},
	{'b', 1},
}

func TestToFloat32MatchesReference(t *testing.T) {
	t.Parallel()
	for _, dt := range allDTypes {
		t.Run(dt.String(), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(dt.Kind)<<8|uint64(dt.Size)))
			for _, n := range []int{0, 1, 7, 1000} {
				buf := make([]byte, n*dt.Size+1)
				for i := range buf {
					buf[i] = byte(rng.Uint32())
				}
				src := buf[1:] // deliberately misaligned
				dst := make([]float32, n)
				ToFloat32(dst, src, dt)
				requireSameFloats(t, refToFloat32(t, src, dt), dst)
			}
		})
	}
}

func TestToFloat32Float32KeepsBits(t *testing.T) {
	t.Parallel()
	bits := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00001, 0xffbfffff, 0x00000001, 0x3f800000}
	src := make([]byte, 0, 4*len(bits))
	for _, b := range bits {
		src = binary.LittleEndian.AppendUint32(src, b)
	}
	dst := make([]float32, len(bits))
	ToFloat32(dst, src, Float32)
	for i, b := range bits {
		require.Equal(t, b, math.Float32bits(dst[i]), "element %d", i)
	}
}

// TestHalfAllValues checks all 65536 float16 bit patterns, including zeros, subnormals, inf and nan.
func TestHalfAllValues(t *testing.T) {
	t.Parallel()
	src := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	dst := make([]float32, 1<<16)
	ToFloat32(dst, src, DType{'f', 2})
	for i := range 1 << 16 {
		want := refHalf(uint16(i))
		if math.IsNaN(float64(want)) {
			require.True(t, math.IsNaN(float64(dst[i])), "%#04x", i)
			require.Equal(t, i&0x8000 != 0, math.Signbit(float64(dst[i])), "nan sign %#04x", i)
			continue
		}
		require.Equal(t, math.Float32bits(want), math.Float32bits(dst[i]), "%#04x: want %v, got %v", i, want, dst[i])
	}

	special := map[uint16]float32{
		0x0000: 0, 0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0xfbff: -65504,
		0x0001: 0x1p-24, 0x03ff: 0x3ffp-24, 0x0400: 0x1p-14, 0x3555: 0x1.554p-2,
		0x7c00: float32(math.Inf(1)), 0xfc00: float32(math.Inf(-1)),
	}
	for h, want := range special {
		require.Equal(t, want, halfToFloat32(h), "%#04x", h)
	}
	require.True(t, math.Signbit(float64(halfToFloat32(0x8000))), "negative zero")
	require.True(t, math.IsNaN(float64(halfToFloat32(0x7e00))))
	require.True(t, math.IsNaN(float64(halfToFloat32(0x7c01))), "signalling nan stays nan")
}

func TestToFloat32Bool(t *testing.T) {
	t.Parallel()
	dst := make([]float32, 4)
	ToFloat32(dst, []byte{0, 1, 2, 255}, DType{'b', 1})
	require.Equal(t, []float32{0, 1, 1, 1}, dst)
}

func TestToFloat32Panics(t *testing.T) {
	t.Parallel()
	require.PanicsWithValue(t, "npy: ToFloat32: len(src) = 7, want 8 for 2 elements of <f4", func() {
		ToFloat32(make([]float32, 2), make([]byte, 7), Float32)
	})
	require.Panics(t, func() { ToFloat32(make([]float32, 1), make([]byte, 1), DType{'f', 4}) })
	require.Panics(t, func() { ToFloat32(make([]float32, 1), make([]byte, 16), DType{'c', 16}) })
	require.Panics(t, func() { ToFloat32(nil, nil, DType{}) })
	require.NotPanics(t, func() { ToFloat32(nil, nil, DType{'f', 8}) })
}
