package npy

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FuzzReadHeader feeds arbitrary bytes to ReadHeader: it must never panic, must report exactly the
// bytes it consumed as DataOffset, and what it accepts must survive an EncodeHeader round trip.
func FuzzReadHeader(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.npy"))
	require.NoError(f, err)
	require.NotEmpty(f, files)
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(data)
	}
	for _, dt := range allDTypes {
		f.Add(EncodeHeader(dt, []int64{2, 3}))
	}
	f.Add(EncodeHeader(Float32, []int64{}))
	f.Add(EncodeHeader(Float32, []int64{0, math.MaxInt64}))
	f.Add(v1File(`{"shape": (3L,), "descr": "<f4", "fortran_order": True}`))
	f.Add(v2File(3, "{'descr': [('a', '<f4', (2,))], 'fortran_order': False, 'shape': (1,), }"))
	f.Add(v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 2), }"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		h, err := ReadHeader(cr)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			require.True(t, strings.HasPrefix(err.Error(), "npy: "), err.Error())
			require.NotContains(t, err.Error(), "\n")
			return
		}
		require.Equal(t, cr.n, h.DataOffset, "DataOffset must be the bytes consumed")
		require.GreaterOrEqual(t, h.DataBytes(), int64(0))
		require.LessOrEqual(t, h.DataBytes(), math.MaxInt64-h.DataOffset)

		enc := EncodeHeader(h.DType, h.Shape)
		h2, err := ReadHeader(bytes.NewReader(enc))
		require.NoError(t, err)
		require.Equal(t, h.DType, h2.DType)
		require.Equal(t, h.Shape, h2.Shape)
		require.Equal(t, int64(len(enc)), h2.DataOffset)
	})
}

func BenchmarkToFloat32(b *testing.B) {
	const srcBytes = 4 << 20
	rng := rand.New(rand.NewPCG(1, 2))
	benches := []struct {
		name string
		dt   DType
		put  func(dst []byte) // writes one realistic element
	}{
		{"f4", DType{'f', 4}, func(d []byte) { binary.LittleEndian.PutUint32(d, math.Float32bits(float32(rng.NormFloat64()))) }},
		{"f8", DType{'f', 8}, func(d []byte) { binary.LittleEndian.PutUint64(d, math.Float64bits(rng.NormFloat64())) }},
		{"f2", DType{'f', 2}, func(d []byte) { binary.LittleEndian.PutUint16(d, float32ToHalf(float32(rng.NormFloat64()))) }},
		{"i16", DType{'i', 2}, func(d []byte) { binary.LittleEndian.PutUint16(d, uint16(rng.Uint32())) }},
		{"u8", DType{'u', 1}, func(d []byte) { d[0] = byte(rng.Uint32()) }},
	}
	for _, bc := range benches {
		src := make([]byte, srcBytes)
		for i := 0; i < len(src); i += bc.dt.Size {
			bc.put(src[i:])
		}
		dst := make([]float32, srcBytes/bc.dt.Size)
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				ToFloat32(dst, src, bc.dt)
			}
		})
	}
}

// float32ToHalf truncates a normal float32 to float16 bits (good enough for benchmark data).
func float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	switch {
	case exp <= 0:
		return sign
	case exp >= 0x1f:
		return sign | 0x7c00
	}
	return sign | uint16(exp)<<10 | uint16(b>>13&0x3ff)
}

func BenchmarkReadHeader(b *testing.B) {
	file := EncodeHeader(Float32, []int64{1, 3, 224, 224})
	r := bytes.NewReader(file)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(file)
		if _, err := ReadHeader(r); err != nil {
			b.Fatal(err)
		}
	}
}
