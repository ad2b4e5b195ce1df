// Package npy reads and writes NumPy .npy headers and converts element data to float32.
//
// It never loads whole arrays: ReadHeader parses only the header, and ToFloat32 converts
// whatever chunk of element bytes the caller read (typically with io.ReaderAt at
// Header.DataOffset), so arrays far larger than memory can be streamed.
package npy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalid marks a malformed or unsupported .npy file; every parse error wraps it (errors.Is(err, npy.ErrInvalid)).
var ErrInvalid = errors.New("invalid npy")

// DType is a parsed numpy dtype descriptor of a fixed-size numeric type.
type DType struct {
	Kind byte // 'f' float, 'i' signed int, 'u' unsigned int, 'b' bool
	Size int  // bytes per element: f: 2,4,8; i/u: 1,2,4,8; b: 1
}

// Float32 is the DType of little-endian float32.
var Float32 = DType{Kind: 'f', Size: 4}

// String returns the numpy descr in little-endian form ("<f4", "|u1", "|b1", "<i8"), as numpy writes it,
// so it can be put straight into an .npy header.
func (d DType) String() string {
	order := byte('<')
	if d.Size == 1 {
		order = '|' // numpy's "byte order not applicable"
	}
	return string(order) + string(d.Kind) + strconv.Itoa(d.Size)
}

// valid reports whether d is one of the fixed-size numeric types this package handles.
func (d DType) valid() bool {
	switch d.Kind {
	case 'f':
		return d.Size == 2 || d.Size == 4 || d.Size == 8
	case 'i', 'u':
		return d.Size == 1 || d.Size == 2 || d.Size == 4 || d.Size == 8
	case 'b':
		return d.Size == 1
	}
	return false
}

// ParseDescr parses a numpy dtype descr string such as "<f4" or "|u1".
//
// Little-endian ('<'), native ('=' or no byte-order character; we only run on little-endian hosts)
// and "not applicable" ('|', read as native like numpy does) are accepted; for 1-byte types the byte
// order is irrelevant, so '>' is accepted there too.
// Big-endian, complex, object, string, void and datetime dtypes are refused with an error
// wrapping ErrInvalid that names the descr and, where possible, says how to convert the data.
func ParseDescr(descr string) (DType, error) {
	s := descr
	order := byte('=')
	if s != "" && strings.IndexByte("<>|=", s[0]) >= 0 {
		order, s = s[0], s[1:]
	}
	if s == "" {
		return DType{}, invalidf(nil, "unsupported dtype %q", short(descr))
	}
	kind, sizeStr := s[0], s[1:]
	switch kind {
	case 'c':
		return DType{}, invalidf(nil, "complex dtype %q is not supported", short(descr))
	case 'O':
		return DType{}, invalidf(nil, "object dtype %q is not supported (pickled python objects)", short(descr))
	case 'S', 'a', 'U':
		return DType{}, invalidf(nil, "string dtype %q is not supported", short(descr))
	case 'V':
		return DType{}, invalidf(nil, "void/raw dtype %q is not supported", short(descr))
	case 'M', 'm':
		return DType{}, invalidf(nil, "datetime dtype %q is not supported", short(descr))
	}
	size := 0 // every supported size is one of the single digits 1, 2, 4 or 8
	if len(sizeStr) == 1 && sizeStr[0] >= '1' && sizeStr[0] <= '8' {
		size = int(sizeStr[0] - '0')
	}
	dt := DType{Kind: kind, Size: size}
	if !dt.valid() {
		return DType{}, invalidf(nil, "unsupported dtype %q (want a float, int, uint or bool descr such as \"<f4\")", short(descr))
	}
	if order == '>' && size > 1 {
		return DType{}, invalidf(nil, "big-endian dtype %q is not supported; convert with arr.astype(%q)", short(descr), dt.String())
	}
	return dt, nil
}

// DTypeOf maps a Go kind name used by ONNX to a DType: "float32","float64","float16","int8","int16","int32","int64",
// "uint8","uint16","uint32","uint64","bool". ok=false otherwise.
func DTypeOf(name string) (DType, bool) {
	switch name {
	case "float16":
		return DType{'f', 2}, true
	case "float32":
		return DType{'f', 4}, true
	case "float64":
		return DType{'f', 8}, true
	case "int8":
		return DType{'i', 1}, true
	case "int16":
		return DType{'i', 2}, true
	case "int32":
		return DType{'i', 4}, true
	case "int64":
		return DType{'i', 8}, true
	case "uint8":
		return DType{'u', 1}, true
	case "uint16":
		return DType{'u', 2}, true
	case "uint32":
		return DType{'u', 4}, true
	case "uint64":
		return DType{'u', 8}, true
	case "bool":
		return DType{'b', 1}, true
	}
	return DType{}, false
}

// npyError is the error type of every parse failure: its text is "npy: ..." and it matches
// ErrInvalid (and its cause, such as io.ErrUnexpectedEOF) with errors.Is.
type npyError struct {
	msg   string
	cause error
}

func (e *npyError) Error() string { return e.msg }

func (e *npyError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.cause}
}

// invalidf builds an error wrapping ErrInvalid and cause (which may be nil).
func invalidf(cause error, format string, args ...any) error {
	msg := "npy: " + fmt.Sprintf(format, args...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &npyError{msg: msg, cause: cause}
}

// short truncates s for error messages, so hostile headers cannot produce megabyte-long errors.
func short(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
