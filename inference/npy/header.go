package npy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

const (
	magic = "\x93NUMPY"
	// maxHeaderLen bounds the header dict that ReadHeader accepts (and allocates), so a hostile
	// length field cannot make it allocate gigabytes. Real headers are about 100 bytes.
	maxHeaderLen = 1 << 20
	// maxDims is numpy's own limit on the number of dimensions (NPY_MAXDIMS in numpy 2).
	maxDims = 64
	// align is the alignment of the data offset that numpy (>= 1.14) produces.
	align = 64
	// growthDigits is numpy's GROWTH_AXIS_MAX_DIGITS: numpy (>= 1.23) pads headers with room for the
	// first dim to grow to 21 digits so that they can be rewritten in place; EncodeHeader does the same.
	growthDigits = 21
)

// Header describes an .npy array.
type Header struct {
	DType      DType
	Shape      []int64
	DataOffset int64 // byte offset of the first element in the file
}

// NumElements returns the product of Shape (1 for a 0-d array). ReadHeader guarantees it does not overflow.
func (h Header) NumElements() int64 {
	n := int64(1)
	for _, d := range h.Shape {
		n *= d
	}
	return n
}

// DataBytes returns NumElements * DType.Size, the length of the element data after DataOffset.
func (h Header) DataBytes() int64 {
	return h.NumElements() * int64(h.DType.Size)
}

// ReadHeader parses the magic string, version (1.0, 2.0 and 3.0), header length and the Python-dict header
// ({'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }) from r. It reads exactly DataOffset bytes,
// so r is left at the first element.
//
// Malformed, truncated or unsupported files yield an error wrapping ErrInvalid (and io.ErrUnexpectedEOF
// when the file ends early). Other read errors from r are returned wrapped as they are, without ErrInvalid,
// since they say nothing about the file's contents.
func ReadHeader(r io.Reader) (Header, error) {
	var pre [12]byte
	if n, err := io.ReadFull(r, pre[:8]); err != nil {
		if !strings.HasPrefix(magic, string(pre[:min(n, len(magic))])) {
			return Header{}, badMagic(pre[:n])
		}
		return Header{}, readErr(err, "file ends inside the magic string and version (%d of 8 bytes)", n)
	}
	if string(pre[:6]) != magic {
		return Header{}, badMagic(pre[:6])
	}
	major, minor := pre[6], pre[7]
	var lenSize int
	switch {
	case major == 1 && minor == 0:
		lenSize = 2
	case (major == 2 || major == 3) && minor == 0:
		lenSize = 4
	default:
		return Header{}, invalidf(nil, "unsupported format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if n, err := io.ReadFull(r, pre[8:8+lenSize]); err != nil {
		return Header{}, readErr(err, "file ends inside the header length (%d of %d bytes)", n, lenSize)
	}
	var hlen uint32
	if lenSize == 2 {
		hlen = uint32(binary.LittleEndian.Uint16(pre[8:]))
	} else {
		hlen = binary.LittleEndian.Uint32(pre[8:])
	}
	if hlen > maxHeaderLen {
		return Header{}, invalidf(nil, "header length %d exceeds the limit of %d bytes", hlen, maxHeaderLen)
	}
	buf := make([]byte, hlen)
	if n, err := io.ReadFull(r, buf); err != nil {
		return Header{}, readErr(err, "truncated header: length field says %d bytes, file has %d", hlen, n)
	}
	h, err := parseHeader(buf)
	if err != nil {
		return Header{}, err
	}
	h.DataOffset = int64(8+lenSize) + int64(hlen)
	if h.DataBytes() > math.MaxInt64-h.DataOffset {
		return Header{}, invalidf(nil, "shape %s claims %d bytes after a %d-byte header, too large",
			formatShape(h.Shape), h.DataBytes(), h.DataOffset)
	}
	return h, nil
}

func badMagic(got []byte) error {
	return invalidf(nil, "not an npy file: bad magic string %q (want %q)", got, magic)
}

// readErr turns a short read into an ErrInvalid error that also wraps io.ErrUnexpectedEOF
// (io.ReadFull reports io.EOF when nothing at all was read; for a header that is truncation too).
func readErr(err error, format string, args ...any) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalidf(io.ErrUnexpectedEOF, format, args...)
	}
	return fmt.Errorf("npy: reading header: %w", err)
}

// parseHeader parses and validates the header dict.
func parseHeader(dict []byte) (Header, error) {
	entries, err := parseDict(dict, []string{"descr", "fortran_order", "shape"})
	if err != nil {
		return Header{}, err
	}
	var descr, fortran, shape *dictEntry
	for i := range entries {
		switch e := &entries[i]; e.key {
		case "descr":
			descr = e
		case "fortran_order":
			fortran = e
		case "shape":
			shape = e
		}
	}
	for _, k := range []struct {
		name string
		e    *dictEntry
	}{{"descr", descr}, {"fortran_order", fortran}, {"shape", shape}} {
		if k.e == nil {
			return Header{}, invalidf(nil, "header is missing the %q key", k.name)
		}
	}

	var h Header
	switch descr.val.kind {
	case kindString:
		if h.DType, err = ParseDescr(descr.val.str); err != nil {
			return Header{}, err
		}
	case kindList:
		return Header{}, invalidf(nil, "structured dtype %q is not supported; save a plain numeric array", short(descr.raw))
	default:
		return Header{}, invalidf(nil, "'descr' must be a string, got %s", descr.val.kind)
	}

	if fortran.val.kind != kindBool {
		return Header{}, invalidf(nil, "'fortran_order' must be True or False, got %s", fortran.val.kind)
	}

	sv := shape.val
	if sv.kind != kindTuple {
		return Header{}, invalidf(nil, "'shape' must be a tuple of ints, got %s", sv.kind)
	}
	if sv.hasNonInt {
		return Header{}, invalidf(nil, "'shape' must be a tuple of ints, got an item that is %s", sv.nonInt)
	}
	if sv.count > maxDims {
		return Header{}, invalidf(nil, "shape has %d dimensions, at most %d are supported", sv.count, maxDims)
	}
	h.Shape = append(make([]int64, 0, len(sv.ints)), sv.ints...)
	for _, d := range h.Shape {
		if d < 0 {
			return Header{}, invalidf(nil, "shape %s has a negative dimension", formatShape(h.Shape))
		}
	}

	if fortran.val.flag && len(h.Shape) >= 2 {
		return Header{}, invalidf(nil, "fortran-order arrays are not supported; save with np.save(path, np.ascontiguousarray(arr))")
	}

	if _, ok := checkedBytes(h.Shape, h.DType.Size); !ok {
		return Header{}, invalidf(nil, "shape %s of %s claims %s bytes, too large", formatShape(h.Shape), h.DType, approxBytes(h.Shape, h.DType.Size))
	}
	return h, nil
}

// checkedBytes returns the product of shape and size, and false if it does not fit in an int64.
// A zero dimension makes the array empty whatever the other dimensions are.
func checkedBytes(shape []int64, size int) (int64, bool) {
	for _, d := range shape {
		if d == 0 {
			return 0, true
		}
	}
	n := uint64(size)
	for _, d := range shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return int64(n), true
}

// approxBytes formats the (overflowing) byte count of shape for an error message.
func approxBytes(shape []int64, size int) string {
	f := float64(size)
	for _, d := range shape {
		f *= float64(d)
	}
	if math.IsInf(f, 0) {
		return "more than 1e308"
	}
	return strconv.FormatFloat(f, 'g', 4, 64)
}

// formatShape formats shape like Python's repr of a tuple, eliding the middle of very long shapes
// so error messages stay short.
func formatShape(shape []int64) string {
	if len(shape) <= 10 {
		return shapeRepr(shape)
	}
	head := shapeRepr(shape[:8])
	return fmt.Sprintf("%s, ... %d more)", head[:len(head)-1], len(shape)-8)
}

// EncodeHeader returns a version 1.0 header (version 2.0 only if the dict would exceed 65535 bytes) for a C-order array,
// padded with spaces and terminated by '\n' so that the total length is a multiple of 64 (as numpy does).
// The bytes are identical to what numpy >= 1.23 writes with np.save, including its spare room for
// growing the first dimension. The shape is written as given; callers pass non-negative dims.
func EncodeHeader(dt DType, shape []int64) []byte {
	dict := "{'descr': '" + dt.String() + "', 'fortran_order': False, 'shape': " + shapeRepr(shape) + ", }"
	if len(shape) > 0 {
		dict += strings.Repeat(" ", max(0, growthDigits-len(strconv.FormatInt(shape[0], 10))))
	}
	version, lenSize := byte(1), 2
	hlen := paddedLen(len(dict), lenSize)
	if hlen > math.MaxUint16 {
		version, lenSize = 2, 4
		hlen = paddedLen(len(dict), lenSize)
	}
	out := make([]byte, 0, len(magic)+2+lenSize+hlen)
	out = append(out, magic...)
	out = append(out, version, 0)
	if lenSize == 2 {
		out = binary.LittleEndian.AppendUint16(out, uint16(hlen))
	} else {
		out = binary.LittleEndian.AppendUint32(out, uint32(hlen))
	}
	out = append(out, dict...)
	for len(out) < cap(out)-1 {
		out = append(out, ' ')
	}
	return append(out, '\n')
}

// paddedLen is numpy's header length for a dict of n bytes: the dict, 1 to 64 spaces and a '\n',
// so that the magic, version, length field and header end on a 64-byte boundary.
func paddedLen(n, lenSize int) int {
	hlen := n + 1
	return hlen + align - (len(magic)+2+lenSize+hlen)%align
}

// shapeRepr is Python's repr of a tuple of ints.
func shapeRepr(shape []int64) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	if len(shape) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}
