package inference

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/inference/npy"
)

// Windowing cuts a long signal into samples (the manifest's type).
type Windowing = manifest.Windowing

// Layout says where each sample of an input file lies and what shape it has:
// what the manifest records (manifest.Layout), and how to read it.
type Layout struct {
	manifest.Layout

	r    io.ReaderAt
	feed Feed
	buf  readBuffers
	// convert: samples are converted to float32; otherwise their bytes are
	// the model input's own type and pass through.
	convert bool

	dt         npy.DType
	dataOffset int64
	rowElems   int64 // elements per sample, or per time step when windowed
}

var _ Source = (*Layout)(nil)

// SampleElems is the number of values one sample feeds the model.
func (l *Layout) SampleElems() int64 { return product(l.SampleShape) }

// Samples is the number of samples in the input.
func (l *Layout) Samples() int64 { return l.Layout.Samples }

// Feeds is the one model input the file feeds.
func (l *Layout) Feeds() []Feed { return []Feed{l.feed} }

// Describe is the layout as the manifest records it.
func (l *Layout) Describe() manifest.Layout { return l.Layout }

// Read fills dst[0] with samples [start,end).
func (l *Layout) Read(start, end int64, dst [][]byte) error {
	return l.read(l.r, start, end, dst[0], &l.buf)
}

// NewLayout inspects the input (the npy header, or the raw size) and matches it
// to the model's input: .npy files carry their shape; anything else is raw
// little-endian float32 whose sample shape comes from the model. Such a file
// feeds one input: a float32 one from any numeric dtype, any other from the
// same dtype.
func NewLayout(r io.ReaderAt, size int64, name string, inputs []TensorInfo, w Windowing) (*Layout, error) {
	if w.Window < 0 || w.Hop < 0 || (w.Window == 0) != (w.Hop == 0) {
		return nil, withKind(ErrBadInput, "windowing needs both a window and a hop greater than zero")
	}
	if len(inputs) != 1 {
		names := make([]string, len(inputs))
		for i, in := range inputs {
			names[i] = in.Name
		}
		return nil, withKind(ErrBadInput, "input %s: the model has %d inputs (%s); a .npy or raw file feeds a model with one: give a table (.parquet, .csv, .jsonl) with a column per input",
			name, len(inputs), strings.Join(names, ", "))
	}
	model := inputs[0]
	l := &Layout{Layout: manifest.Layout{Windowing: w}, r: r, convert: model.DType == "float32"}
	if strings.EqualFold(filepath.Ext(name), ".npy") {
		h, err := npy.ReadHeader(io.NewSectionReader(r, 0, size))
		if err != nil {
			return nil, withKind(ErrBadInput, "input %s: %w", name, err)
		}
		if want := h.DataOffset + h.DataBytes(); want != size {
			return nil, withKind(ErrBadInput, "input %s: header promises %d bytes of data for shape %v, file has %d: truncated or corrupt",
				name, h.DataBytes(), h.Shape, size-h.DataOffset)
		}
		if h.DType.Kind == 'b' {
			return nil, withKind(ErrBadInput, "input %s: dtype %s is boolean; the model needs numbers", name, h.DType)
		}
		l.Format, l.dt, l.dataOffset, l.FileShape = "npy", h.DType, h.DataOffset, h.Shape
		if len(l.FileShape) == 0 {
			return nil, withKind(ErrBadInput, "input %s: a 0-d array has no sample axis", name)
		}
		if want, _ := npy.DTypeOf(model.DType); !l.convert && h.DType != want {
			return nil, withKind(ErrBadInput, "input %s: dtype %s does not feed model input %q, which is %s: give a %s .npy",
				name, h.DType, model.Name, model.DType, want)
		}
	} else {
		if !l.convert {
			return nil, withKind(ErrBadInput, "input %s: a raw file is float32, and model input %q is %s: give a .npy or a table", name, model.Name, model.DType)
		}
		l.Format, l.dt = "raw", npy.Float32
		if err := l.rawShape(size, model); err != nil {
			return nil, withKind(ErrBadInput, "input %s: %w", name, err)
		}
	}
	l.DType = l.dt.String()
	if err := l.samples(model); err != nil {
		return nil, withKind(ErrBadInput, "input %s: %w", name, err)
	}
	l.feed = Feed{Name: model.Name, DType: model.DType, SampleShape: l.SampleShape}
	return l, nil
}

// rawShape derives the file shape of a raw float32 file from the model: every
// non-batch dim must be fixed (only the window length may come from --window).
func (l *Layout) rawShape(size int64, model TensorInfo) error {
	dims := model.Shape[1:]
	if l.Window > 0 {
		if len(dims) < 1 {
			return errors.New("windowing needs a model input with a time axis")
		}
		dims = dims[1:] // the time axis comes from the file
	}
	for i, d := range dims {
		if d < 0 {
			return fmt.Errorf("raw input needs fixed sample dims, but model input %q has a dynamic dim %d; use .npy, which carries its shape", model.Name, i+1)
		}
	}
	row := product(dims) * 4
	if size%row != 0 {
		return fmt.Errorf("%d bytes is not a whole number of %d-byte rows of float32 %v: truncated?", size, row, dims)
	}
	l.FileShape = append([]int64{size / row}, dims...)
	return nil
}

// samples matches the file's per-sample shape against the model input: fixed
// dims must agree, dynamic ones take the file's value.
func (l *Layout) samples(model TensorInfo) error {
	sample := l.FileShape[1:]
	l.Layout.Samples = l.FileShape[0]
	if l.Window > 0 {
		if len(l.FileShape) > 2 {
			return fmt.Errorf("windowing takes a signal [T] or [T,C], not %v", l.FileShape)
		}
		sample = append([]int64{l.Window}, l.FileShape[1:]...)
		l.Layout.Samples = 0
		if t := l.FileShape[0]; t >= l.Window {
			l.Layout.Samples = (t-l.Window)/l.Hop + 1
		}
	}
	want := model.Shape[1:]
	if len(sample) != len(want) {
		return fmt.Errorf("samples of shape %v do not fit model input %q %v (rank %d vs %d)",
			sample, model.Name, shapeString(model.Shape), len(sample), len(want))
	}
	for i, d := range want {
		if d >= 0 && d != sample[i] {
			return fmt.Errorf("samples of shape %v do not fit model input %q %v: dim %d is %d, model needs %d",
				sample, model.Name, shapeString(model.Shape), i+1, sample[i], d)
		}
	}
	if l.Layout.Samples == 0 {
		return errors.New("no samples in the input")
	}
	l.SampleShape = sample
	l.rowElems = product(sample)
	if l.Window > 0 {
		l.rowElems = product(l.FileShape[1:])
	}
	return nil
}

// ByteEnd is where in the file the samples before sample end end: a shard
// of samples [from, end) reads nothing past it.
func (l *Layout) ByteEnd(end int64) int64 {
	rows := end
	if l.Window > 0 {
		rows = (end-1)*l.Hop + l.Window
	}
	return l.dataOffset + rows*l.rowElems*int64(l.dt.Size)
}

// readBuffers are the scratch buffers of one reader, reused between chunks.
type readBuffers struct{ raw, signal []byte }

// read fills dst with samples [start,end) as little-endian bytes of the
// model input's type. A file already of that type (float32 for a float32
// input), unwindowed, reads straight into dst: no copy, no conversion.
func (l *Layout) read(r io.ReaderAt, start, end int64, dst []byte, buf *readBuffers) error {
	firstRow, rows := start, end-start
	if l.Window > 0 {
		firstRow, rows = start*l.Hop, (end-1-start)*l.Hop+l.Window
	}
	n := rows * l.rowElems * int64(l.dt.Size)
	off := l.dataOffset + firstRow*l.rowElems*int64(l.dt.Size)
	same := !l.convert || l.dt == npy.Float32
	if l.Window == 0 && same {
		return readFull(r, dst[:n], off)
	}
	raw := grow(&buf.raw, n)
	if err := readFull(r, raw, off); err != nil {
		return err
	}
	if l.Window == 0 {
		npy.ToFloat32(asFloat32(dst[:rows*l.rowElems*4]), raw, l.dt)
		return nil
	}
	signal, elem := raw, int64(l.dt.Size)
	if !same {
		signal, elem = grow(&buf.signal, rows*l.rowElems*4), 4
		npy.ToFloat32(asFloat32(signal), raw, l.dt)
	}
	sampleBytes := l.Window * l.rowElems * elem
	for i := range end - start {
		from := i * l.Hop * l.rowElems * elem
		copy(dst[i*sampleBytes:(i+1)*sampleBytes], signal[from:from+sampleBytes])
	}
	return nil
}

// readFull reads len(buf) bytes at off. A short file (one that shrank since
// its size was checked) is bad input; any other failure is the machine's.
func readFull(r io.ReaderAt, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	switch {
	case n == len(buf):
		return nil
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return withKind(ErrBadInput, "read input at byte %d: %w", off, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read input at byte %d: %w", off, err)
}

func grow(buf *[]byte, n int64) []byte {
	if int64(cap(*buf)) < n {
		*buf = make([]byte, n)
	}
	return (*buf)[:n]
}

// asFloat32 views little-endian float32 bytes as floats; inferstack only builds
// for little-endian targets (amd64, arm64), so no byte swapping is needed.
func asFloat32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func product(dims []int64) int64 {
	p := int64(1)
	for _, d := range dims {
		p *= d
	}
	return p
}

func shapeString(dims []int64) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = fmt.Sprint(d)
		if d < 0 {
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}
