package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// v1File builds a version 1.0 .npy header around dict with no padding, as old or foreign writers may.
func v1File(dict string) []byte {
	b := append([]byte(magic), 1, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(dict)))
	return append(b, dict...)
}

// v2File is v1File for format version major.0 with a 4-byte header length.
func v2File(major byte, dict string) []byte {
	b := append([]byte(magic), major, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(dict)))
	return append(b, dict...)
}

func TestEncodeReadRoundTrip(t *testing.T) {
	t.Parallel()
	dtypes := []DType{
		{'f', 2}, {'f', 4}, {'f', 8},
		{'i', 1}, {'i', 2}, {'i', 4}, {'i', 8},
		{'u', 1}, {'u', 2}, {'u', 4}, {'u', 8},
		{'b', 1},
	}
	shapes := [][]int64{
		{},     // 0-d
		{0},    // empty 1-d
		{1},    // 1-d
		{7},    // 1-d
		{3, 4}, // 2-d
		{1, 3, 224, 224},
		{2, 0, 5, 1}, // zero-size dim inside
		{123456789012345678},
		{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
	}
	for _, dt := range dtypes {
		for _, shape := range shapes {
			t.Run(dt.String()+shapeRepr(shape), func(t *testing.T) {
				t.Parallel()
				enc := EncodeHeader(dt, shape)
				require.Zero(t, len(enc)%64, "header length %d not 64-aligned", len(enc))
				require.Equal(t, byte(1), enc[6], "version 1.0 expected for small headers")
				require.Equal(t, byte('\n'), enc[len(enc)-1])

				r := bytes.NewReader(append(enc, 0xAA, 0xBB)) // trailing data must stay unread
				h, err := ReadHeader(r)
				require.NoError(t, err)
				require.Equal(t, dt, h.DType)
				require.Equal(t, shape, h.Shape)
				require.Equal(t, int64(len(enc)), h.DataOffset)
				require.Zero(t, h.DataOffset%64)
				require.Equal(t, 2, r.Len(), "ReadHeader must read exactly DataOffset bytes")

				want := int64(1)
				for _, d := range shape {
					want *= d
				}
				require.Equal(t, want, h.NumElements())
				require.Equal(t, want*int64(dt.Size), h.DataBytes())
			})
		}
	}
}

func TestEncodeHeaderVersion2ForHugeDict(t *testing.T) {
	t.Parallel()
	shape := make([]int64, 30000) // far beyond numpy's 64 dims, only to force a dict over 65535 bytes
	for i := range shape {
		shape[i] = 1
	}
	enc := EncodeHeader(Float32, shape)
	require.Equal(t, byte(2), enc[6])
	require.Zero(t, len(enc)%64)
	require.Equal(t, uint32(len(enc)-12), binary.LittleEndian.Uint32(enc[8:]))
	require.Equal(t, byte('\n'), enc[len(enc)-1])
	_, err := ReadHeader(bytes.NewReader(enc))
	require.ErrorContains(t, err, "30000 dimensions")
}

// TestReadNumpyFiles reads the fixtures written by numpy (see testdata/README.md), including their
// data through io.ReaderAt, as the streaming engine does.
func TestReadNumpyFiles(t *testing.T) {
	t.Parallel()
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	tests := []struct {
		file    string
		dt      DType
		shape   []int64
		version byte
		want    []float32
	}{
		{"f4_2d.npy", Float32, []int64{3, 4}, 1, []float32{-5.5, -4.5, -3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5}},
		{"f4_4d.npy", Float32, []int64{1, 2, 3, 2}, 1, []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{"f8.npy", DType{'f', 8}, []int64{5}, 1, []float32{0, -1.5, 3.25, inf, float32(math.Copysign(0, -1))}},
		{"f2.npy", DType{'f', 2}, []int64{9}, 1, []float32{0, float32(math.Copysign(0, -1)), 1, -2.5, 65504, 0x1p-24, inf, -inf, nan}},
		{"i1.npy", DType{'i', 1}, []int64{5}, 1, []float32{-128, -1, 0, 1, 127}},
		{"i2.npy", DType{'i', 2}, []int64{5}, 1, []float32{-32768, -1, 0, 1, 32767}},
		{"i4.npy", DType{'i', 4}, []int64{5}, 1, []float32{-2147483648, -1, 0, 1, 2147483647}},
		{"i8.npy", DType{'i', 8}, []int64{5}, 1, []float32{-0x1p63, -1, 0, 1, 0x1p63}},
		{"u1.npy", DType{'u', 1}, []int64{4}, 1, []float32{0, 1, 128, 255}},
		{"u2.npy", DType{'u', 2}, []int64{3}, 1, []float32{0, 1, 65535}},
		{"u4.npy", DType{'u', 4}, []int64{3}, 1, []float32{0, 1, 4294967295}},
		{"u8.npy", DType{'u', 8}, []int64{3}, 1, []float32{0, 1, 0x1p64}},
		{"bool.npy", DType{'b', 1}, []int64{4}, 1, []float32{1, 0, 1, 1}},
		{"scalar_0d.npy", Float32, []int64{}, 1, []float32{3.5}},
		{"empty_0x3.npy", Float32, []int64{0, 3}, 1, []float32{}},
		{"v2_f4.npy", Float32, []int64{2, 3}, 2, []float32{0, 1, 2, 3, 4, 5}},
		{"v3_f4.npy", Float32, []int64{2, 3}, 3, []float32{0, 1, 2, 3, 4, 5}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			h, err := ReadHeader(bytes.NewReader(raw))
			require.NoError(t, err)
			require.Equal(t, tc.dt, h.DType)
			require.Equal(t, tc.shape, h.Shape)
			require.Zero(t, h.DataOffset%64)
			require.Equal(t, int64(len(raw)), h.DataOffset+h.DataBytes(), "data must end the file")
			require.Equal(t, tc.version, raw[6])
			if tc.version == 1 {
				require.Equal(t, string(raw[:h.DataOffset]), string(EncodeHeader(h.DType, h.Shape)),
					"EncodeHeader must write the same bytes as numpy")
			}

			f, err := os.Open(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			defer f.Close()
			src := make([]byte, h.DataBytes())
			_, err = f.ReadAt(src, h.DataOffset)
			require.NoError(t, err)
			got := make([]float32, h.NumElements())
			ToFloat32(got, src, h.DType)
			requireSameFloats(t, tc.want, got)
		})
	}
}

func TestReadNumpyFilesRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string
	}{
		{"bad_fortran.npy", []string{"fortran-order arrays are not supported", "np.ascontiguousarray"}},
		{"bad_bigendian.npy", []string{`big-endian dtype ">f4"`, `astype("<f4")`}},
		{"bad_unicode.npy", []string{`string dtype "<U3"`}},
		{"bad_structured.npy", []string{"structured dtype", "('a', '<f4'), ('b', '<i4')"}},
		{"bad_complex.npy", []string{`complex dtype "<c8"`}},
		{"bad_object.npy", []string{`object dtype "|O"`}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			_, err = ReadHeader(bytes.NewReader(raw))
			requireInvalid(t, err, tc.want...)
		})
	}
}

// TestReadHeaderAccepts covers header spellings that numpy's reader accepts but numpy >= 1.23 does not write.
func TestReadHeaderAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		file  []byte
		dt    DType
		shape []int64
	}{
		{"numpy format", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"), Float32, []int64{3, 4}},
		{"keys in any order, double quotes", v1File(`{"shape": (2,), "descr": "<i8", "fortran_order": False}`), DType{'i', 8}, []int64{2}},
		{"no trailing comma", v1File("{'descr':'<f8','fortran_order':False,'shape':(5,)}"), DType{'f', 8}, []int64{5}},
		{"whitespace and newlines", v1File(" {\n\t'descr' : '<u2' ,\r\n 'fortran_order' :False, 'shape' : ( 1 , 2 , ) , }  \n"), DType{'u', 2}, []int64{1, 2}},
		{"python 2 longs", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L), }\n"), Float32, []int64{3, 4}},
		{"0-d", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (), }"), Float32, []int64{}},
		{"fortran 1-d", v1File("{'descr': '<f4', 'fortran_order': True, 'shape': (6,), }"), Float32, []int64{6}},
		{"fortran 0-d", v1File("{'descr': '<f4', 'fortran_order': True, 'shape': (), }"), Float32, []int64{}},
		{"native byte order", v1File("{'descr': '=f4', 'fortran_order': False, 'shape': (1,), }"), Float32, []int64{1}},
		{"big-endian 1-byte", v1File("{'descr': '>u1', 'fortran_order': False, 'shape': (1,), }"), DType{'u', 1}, []int64{1}},
		{"little-endian 1-byte", v1File("{'descr': '<i1', 'fortran_order': False, 'shape': (1,), }"), DType{'i', 1}, []int64{1}},
		{"zero dim with huge others", v1File("{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775807, 0, 9223372036854775807), }"), DType{'f', 8}, []int64{math.MaxInt64, 0, math.MaxInt64}},
		{"largest byte count", v1File("{'descr': '|u1', 'fortran_order': False, 'shape': (9223372036854775000,), }"), DType{'u', 1}, []int64{9223372036854775000}},
		{"version 2.0", v2File(2, "{'descr': '<f2', 'fortran_order': False, 'shape': (7,), }"), DType{'f', 2}, []int64{7}},
		{"version 3.0", v2File(3, "{'descr': '|b1', 'fortran_order': False, 'shape': (7,), }"), DType{'b', 1}, []int64{7}},
		{"64 dims", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (" + strings.Repeat("1, ", 64) + "), }"), Float32, ones(64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := bytes.NewReader(append(tc.file, "data"...))
			h, err := ReadHeader(r)
			require.NoError(t, err)
			require.Equal(t, tc.dt, h.DType)
			require.Equal(t, tc.shape, h.Shape)
			require.Equal(t, int64(len(tc.file)), h.DataOffset)
			require.Equal(t, 4, r.Len())
		})
	}
}

func ones(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func TestReadHeaderErrors(t *testing.T) {
	t.Parallel()
	dict := func(descr, fortran, shape string) []byte {
		return v1File("{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }")
	}
	good := v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }")
	tests := []struct {
		name string
		file []byte
		eof  bool // must also wrap io.ErrUnexpectedEOF
		want []string
	}{
		{"empty file", nil, true, []string{"magic string", "0 of 8 bytes"}},
		{"truncated magic", []byte("\x93NUM"), true, []string{"magic string", "4 of 8 bytes"}},
		{"truncated version", []byte(magic + "\x01"), true, []string{"7 of 8 bytes"}},
		{"bad magic", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"), false, []string{"not an npy file", "bad magic"}},
		{"short bad magic", []byte("PK"), false, []string{"bad magic"}},
		{"bad version", append([]byte(magic), 4, 0, 10, 0), false, []string{"unsupported format version 4.0"}},
		{"bad minor version", append([]byte(magic), 1, 1, 10, 0), false, []string{"unsupported format version 1.1"}},
		{"truncated header length", append([]byte(magic), 2, 0, 10, 0), true, []string{"header length", "2 of 4 bytes"}},
		{"truncated header", good[:40], true, []string{"truncated header", "says 59 bytes", "has 30"}},
		{"truncated dict", v1File("{'descr': '<f4', 'fortran_order': False, 'sha"), false, []string{"malformed header dict", "unterminated string"}},
		{"unclosed dict", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), "), false, []string{"expected a quoted key or '}'"}},
		{"unclosed tuple", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4"), false, []string{"expected ',' or ')'"}},
		{"header too long v2", append([]byte(magic), 2, 0, 0x01, 0x00, 0x10, 0x00), false, []string{"header length 1048577 exceeds the limit of 1048576 bytes"}},
		{"header too long v3", append([]byte(magic), 3, 0, 0xff, 0xff, 0xff, 0xff), false, []string{"header length 4294967295 exceeds the limit"}},
		{"empty dict text", v1File(""), false, []string{"must start with '{'"}},
		{"garbage dict", v1File("hello world"), false, []string{"must start with '{'"}},
		{"not a dict", v1File("('<f4', False, (3,))"), false, []string{"must start with '{'"}},
		{"trailing garbage", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } x"), false, []string{"unexpected data after the header dict"}},
		{"missing colon", v1File("{'descr' '<f4'}"), false, []string{`expected ':' after key "descr"`}},
		{"unquoted key", v1File("{descr: '<f4'}"), false, []string{"expected a quoted key"}},
		{"missing key", v1File("{'descr': '<f4', 'fortran_order': False, }"), false, []string{`missing the "shape" key`}},
		{"missing descr", v1File("{'fortran_order': False, 'shape': (1,)}"), false, []string{`missing the "descr" key`}},
		{"unknown key", v1File("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'foo': 1, }"), false, []string{`unknown key "foo"`}},
		{"duplicate key", v1File("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"), false, []string{`duplicate key "descr"`}},
		{"negative dim", dict("'<f4'", "False", "(3, -1)"), false, []string{"shape (3, -1) has a negative dimension"}},
		{"overflow elements", dict("'<f4'", "False", "(9223372036854775807, 2)"), false, []string{"shape (9223372036854775807, 2) of <f4 claims 7.379e+19 bytes, too large"}},
		{"overflow bytes", dict("'<f8'", "False", "(2305843009213693952,)"), false, []string{"claims 1.845e+19 bytes, too large"}},
		{"overflow many dims", dict("'<f8'", "False", "("+strings.Repeat("9223372036854775807, ", 40)+")"), false, []string{"shape (9223372036854775807, ", "... 32 more)", "claims more than 1e308 bytes, too large"}},
		{"overflow with header", dict("'|u1'", "False", "(9223372036854775807,)"), false, []string{"claims 9223372036854775807 bytes after a", "too large"}},
		{"int out of range", dict("'<f4'", "False", "(99999999999999999999,)"), false, []string{"integer 99999999999999999999 is out of range"}},
		{"too many dims", dict("'<f4'", "False", "("+strings.Repeat("1,", 65)+")"), false, []string{"shape has 65 dimensions, at most 64"}},
		{"shape is a list", dict("'<f4'", "False", "[3, 4]"), false, []string{"'shape' must be a tuple of ints, got a list"}},
		{"shape is an int", dict("'<f4'", "False", "5"), false, []string{"'shape' must be a tuple of ints, got an int"}},
		{"shape without comma", dict("'<f4'", "False", "(5)"), false, []string{"a one-item tuple needs a trailing comma"}},
		{"shape is nested", dict("'<f4'", "False", "((3, 4),)"), false, []string{"'shape' must be a tuple of ints, got an item that is a tuple"}},
		{"shape of None", dict("'<f4'", "False", "(3, None)"), false, []string{"got an item that is None"}},
		{"backslash in descr", dict(`'<f\4'`, "False", "(3,)"), false, []string{"backslash escapes are not supported"}},
		{"many unknown keys", v2File(2, "{"+strings.Repeat("'k': 1, ", 100000)+"}"), false, []string{`unknown key "k"`}},
		{"huge structured descr", v2File(2, "{'descr': ["+strings.Repeat(`('f\'x', '<f4', (2, 3)), `, 20000)+"], 'fortran_order': False, 'shape': (3,), }"),
			false, []string{`structured dtype "[('f\\'x', '<f4', (2, 3)), `, `..." is not supported`}},
		{"shape of strings", dict("'<f4'", "False", "('3',)"), false, []string{"'shape' must be a tuple of ints, got an item that is a string"}},
		{"shape of floats", dict("'<f4'", "False", "(3.0,)"), false, []string{"expected ',' or ')'"}},
		{"bad descr", dict("'<x4'", "False", "(3,)"), false, []string{`unsupported dtype "<x4"`}},
		{"float128", dict("'<f16'", "False", "(3,)"), false, []string{`unsupported dtype "<f16"`}},
		{"descr not a string", dict("4", "False", "(3,)"), false, []string{"'descr' must be a string, got an int"}},
		{"structured descr", dict("[('x', '<f4'), ('y', '<f4', (2,))]", "False", "(3,)"), false, []string{"structured dtype", "is not supported"}},
		{"deep nesting", dict(strings.Repeat("[", 100)+strings.Repeat("]", 100), "False", "(3,)"), false, []string{"nested deeper than 16 levels"}},
		{"big-endian", dict("'>f4'", "False", "(3,)"), false, []string{`big-endian dtype ">f4" is not supported; convert with arr.astype("<f4")`}},
		{"big-endian i8", dict("'>i8'", "False", "(3,)"), false, []string{`big-endian dtype ">i8"`, `astype("<i8")`}},
		{"fortran", dict("'<f4'", "True", "(3, 4)"), false, []string{"fortran-order arrays are not supported", "np.ascontiguousarray"}},
		{"fortran not bool", dict("'<f4'", "0", "(3,)"), false, []string{"'fortran_order' must be True or False, got an int"}},
		{"lowercase true", dict("'<f4'", "true", "(3,)"), false, []string{`unexpected name "true"`}},
		{"complex", dict("'<c16'", "False", "(3,)"), false, []string{`complex dtype "<c16"`}},
		{"object", dict("'|O'", "False", "(3,)"), false, []string{`object dtype "|O"`}},
		{"bytes", dict("'|S10'", "False", "(3,)"), false, []string{`string dtype "|S10"`}},
		{"unicode", dict("'<U3'", "False", "(3,)"), false, []string{`string dtype "<U3"`}},
		{"void", dict("'|V8'", "False", "(3,)"), false, []string{`void/raw dtype "|V8"`}},
		{"datetime", dict("'<M8[ns]'", "False", "(3,)"), false, []string{`datetime dtype "<M8[ns]"`}},
		{"timedelta", dict("'<m8[s]'", "False", "(3,)"), false, []string{`datetime dtype "<m8[s]"`}},
		{"newline in string", dict("'<f\n4'", "False", "(3,)"), false, []string{"newline inside a string"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ReadHeader(bytes.NewReader(tc.file))
			requireInvalid(t, err, tc.want...)
			require.Equal(t, tc.eof, errors.Is(err, io.ErrUnexpectedEOF), "wraps io.ErrUnexpectedEOF: %v", err)
		})
	}
}

// TestReadHeaderMemoryBounded checks that hostile 1 MiB headers cost at most a few MiB to refuse.
// It is not parallel so that other tests' allocations do not count.
func TestReadHeaderMemoryBounded(t *testing.T) {
	const mib = 1 << 20
	fill := func(prefix, unit, suffix string) []byte {
		n := (mib - len(prefix) - len(suffix)) / len(unit)
		return v2File(2, prefix+strings.Repeat(unit, n)+suffix)
	}
	tests := map[string][]byte{
		"wide list of tuples": fill("{'descr': [", "('a', '<f4', (1, 2)), ", "]}"),
		"deep lists":          fill("{'descr': "+strings.Repeat("[", 15), "'x', ", strings.Repeat("]", 15)+"}"),
		"long tuple":          fill("{'shape': (", "1, ", ")}"),
		"long descr":          fill("{'descr': '", "f", "'}"),
		"long key":            fill("{'", "k", "': 1}"),
	}
	for name, file := range tests {
		require.LessOrEqual(t, len(file), mib+12, name)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ReadHeader(bytes.NewReader(file))
		runtime.ReadMemStats(&after)
		requireInvalid(t, err)
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(3*mib), "%s: %v", name, err)
	}
}

// errReader fails with a non-EOF error after returning its data.
type errReader struct{ data []byte }

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadHeaderIOError(t *testing.T) {
	t.Parallel()
	_, err := ReadHeader(&errReader{data: []byte(magic + "\x01\x00\x40\x00{'de")})
	require.ErrorContains(t, err, "disk on fire")
	require.True(t, strings.HasPrefix(err.Error(), "npy: "))
	require.NotErrorIs(t, err, ErrInvalid, "an I/O error says nothing about the file")
}

func TestParseDescr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		descr string
		want  DType
		err   string
	}{
		{"<f2", DType{'f', 2}, ""},
		{"<f4", Float32, ""},
		{"=f8", DType{'f', 8}, ""},
		{"f4", Float32, ""},
		{"|b1", DType{'b', 1}, ""},
		{"<b1", DType{'b', 1}, ""},
		{"|i1", DType{'i', 1}, ""},
		{">i1", DType{'i', 1}, ""},
		{"<i2", DType{'i', 2}, ""},
		{"<i4", DType{'i', 4}, ""},
		{"<i8", DType{'i', 8}, ""},
		{"|u1", DType{'u', 1}, ""},
		{"<u2", DType{'u', 2}, ""},
		{"<u4", DType{'u', 4}, ""},
		{"<u8", DType{'u', 8}, ""},
		{">f4", DType{}, `big-endian dtype ">f4" is not supported; convert with arr.astype("<f4")`},
		{">u2", DType{}, `big-endian dtype ">u2"`},
		{"", DType{}, `unsupported dtype ""`},
		{"<", DType{}, `unsupported dtype "<"`},
		{"<f", DType{}, `unsupported dtype "<f"`},
		{"<f3", DType{}, `unsupported dtype "<f3"`},
		{"<f004", DType{}, `unsupported dtype "<f004"`},
		{"<f04", DType{}, `unsupported dtype "<f04"`},
		{"<f 4", DType{}, `unsupported dtype "<f 4"`},
		{"<b2", DType{}, `unsupported dtype "<b2"`},
		{"<i16", DType{}, `unsupported dtype "<i16"`},
		{"float32", DType{}, `unsupported dtype "float32"`},
		{"<c8", DType{}, `complex dtype "<c8"`},
		{"|O", DType{}, `object dtype "|O"`},
		{"|S3", DType{}, `string dtype "|S3"`},
		{"|a3", DType{}, `string dtype "|a3"`},
		{"<U3", DType{}, `string dtype "<U3"`},
		{"|V16", DType{}, `void/raw dtype "|V16"`},
		{"<M8[D]", DType{}, `datetime dtype "<M8[D]"`},
		{"<m8", DType{}, `datetime dtype "<m8"`},
	}
	for _, tc := range tests {
		t.Run(tc.descr, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDescr(tc.descr)
			if tc.err != "" {
				requireInvalid(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			back, err := ParseDescr(got.String())
			require.NoError(t, err)
			require.Equal(t, got, back)
		})
	}
}

func TestDTypeString(t *testing.T) {
	t.Parallel()
	for dt, want := range map[DType]string{
		Float32: "<f4", {'f', 2}: "<f2", {'f', 8}: "<f8", {'u', 1}: "|u1", {'i', 1}: "|i1",
		{'b', 1}: "|b1", {'i', 8}: "<i8", {'u', 2}: "<u2",
	} {
		require.Equal(t, want, dt.String())
	}
}

func TestDTypeOf(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]DType{
		"float16": {'f', 2}, "float32": Float32, "float64": {'f', 8},
		"int8": {'i', 1}, "int16": {'i', 2}, "int32": {'i', 4}, "int64": {'i', 8},
		"uint8": {'u', 1}, "uint16": {'u', 2}, "uint32": {'u', 4}, "uint64": {'u', 8},
		"bool": {'b', 1},
	} {
		got, ok := DTypeOf(name)
		require.True(t, ok, name)
		require.Equal(t, want, got, name)
	}
	for _, name := range []string{"", "string", "complex64", "bfloat16", "Float32", "int"} {
		_, ok := DTypeOf(name)
		require.False(t, ok, name)
	}
}

// requireInvalid asserts that err is a one-line, lowercase "npy: " error wrapping ErrInvalid and containing want.
func requireInvalid(t testing.TB, err error, want ...string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, ErrInvalid)
	msg := err.Error()
	require.True(t, strings.HasPrefix(msg, "npy: "), "error %q must start with \"npy: \"", msg)
	require.NotContains(t, msg, "\n")
	for _, w := range want {
		require.Contains(t, msg, w)
	}
}

// requireSameFloats compares float32s bit for bit, except that any NaN matches any NaN.
func requireSameFloats(t testing.TB, want, got []float32) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		if math.IsNaN(float64(want[i])) && math.IsNaN(float64(got[i])) {
			continue
		}
		require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "element %d: want %v, got %v", i, want[i], got[i])
	}
}
