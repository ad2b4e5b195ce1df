// Package predictions writes a job's result table as one Parquet file: the
// kept input columns, copied unchanged, then one column per model output.
//
// Rows are buffered up to a row group's size (Options.RowGroupBytes, by this
// package's own accounting, or Options.RowGroupRows), then the row group is
// encoded by arrow-go's pqarrow and written to the io.Writer in one piece.
// After each row group the writer's State (the bytes written so far and the
// footer that would end the file there) can be stored by a checkpoint;
// Resume continues from it on a writer positioned at State.Offset, and the
// finished file is byte-identical to an uninterrupted run given the same
// rows (see resume.go for how, and why it is not one file.Writer).
package predictions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Defaults for Options.
const (
	// DefaultRowGroupBytes bounds the rows buffered before a row group is
	// written. Writing one also holds its compressed bytes and arrow-go's
	// encoders' buffers (two to three row groups at the peak), so 8 MiB keeps
	// a table job within 256 MiB beside its reader and pipeline
	// (docs/benchmarks.md), in row groups readers still split well.
	DefaultRowGroupBytes = 8 << 20
	// DefaultRowGroupRows bounds the rows of a row group whatever their size
	// (pyarrow's default), so a narrow result still has several row groups
	// for readers to split on.
	DefaultRowGroupRows = 1 << 20
)

// Options tune a Writer. The zero value takes the defaults. A resumed
// writer must be given the same Options (and columns) as the first one.
type Options struct {
	// RowGroupBytes: a row group is written once its buffered rows reach
	// this many bytes (raw output bytes plus the kept columns' value bytes
	// and offsets, as arrow holds them).
	RowGroupBytes int64
	// RowGroupRows: a row group is written once it has this many rows.
	RowGroupRows int64
	// Compression of every column; Snappy by default (see DefaultCompression).
	Compression compress.Compression
	// OnRowGroup, if set, is called after each row group has been written
	// to the io.Writer, with the state to resume from there. An error from
	// it stops the writer.
	OnRowGroup func(State) error
}

// DefaultCompression is Snappy: model outputs (floats) are close to
// incompressible, so Zstd's better ratio buys little there, while Snappy
// costs the least CPU on the job's critical path and is what every Parquet
// reader decodes fastest (pyarrow's and Spark's default).
var DefaultCompression = compress.Codecs.Snappy

func (o Options) withDefaults() Options {
	if o.RowGroupBytes <= 0 {
		o.RowGroupBytes = DefaultRowGroupBytes
	}
	if o.RowGroupRows <= 0 {
		o.RowGroupRows = DefaultRowGroupRows
	}
	if o.Compression == compress.Codecs.Uncompressed {
		o.Compression = DefaultCompression
	}
	return o
}

// Stats is the writer's own accounting of its memory and progress.
type Stats struct {
	BufferedRows      int64 // rows waiting for the next row group
	BufferedBytes     int64 // their bytes, as counted against RowGroupBytes
	PeakBufferedBytes int64 // the most BufferedBytes has been
	PeakEncodedBytes  int64 // the largest encoded row group held before writing
	RowGroups         int   // row groups written
	Rows              int64 // rows written in them
	Offset            int64 // bytes written to the io.Writer
}

// ErrClosed is returned by Write and Close after Close.
var ErrClosed = errors.New("predictions writer closed")

// Writer writes the result file. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	schema  *arrow.Schema
	kept    []arrow.Field
	fixed   int64 // bytes of a row in its fixed-size columns
	varCols []int // kept columns whose rows vary in size
	outs    []outputCol
	opts    Options
	props   *parquet.WriterProperties
	aprops  pqarrow.ArrowWriterProperties

	state State

	pendKept  [][]arrow.Array // per kept column, slices of the callers' batches
	pendOut   [][]byte        // per output, raw bytes of the buffered rows
	pendRows  int64
	pendBytes int64

	encoded bytes.Buffer // one row group's encoding, reused
	stats   Stats
	err     error // sticky: after a failed write the file is unusable
	closed  bool
}

// New starts a result file on w: kept are the kept input columns' fields
// (in input order), outputs the model's outputs. It refuses a name used
// twice (ErrNameClash) and writes the file's 4-byte header.
func New(w io.Writer, kept []arrow.Field, outputs []Output, opts Options) (*Writer, error) {
	wr, base, err := build(w, kept, outputs, opts)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(magic); err != nil {
		return nil, fmt.Errorf("write parquet header: %w", err)
	}
	wr.state = State{Offset: int64(len(magic)), Footer: base}
	wr.stats.Offset = wr.state.Offset
	return wr, nil
}

// writerProps: model outputs are floats that rarely repeat, so dictionary
// encoding only costs there (it was most of the writer's time on an MLP's
// outputs); kept scalar columns (ids, categories) keep it.
func writerProps(kept []arrow.Field, opts Options) []parquet.WriterProperty {
	props := []parquet.WriterProperty{
		parquet.WithCompression(opts.Compression),
		parquet.WithMaxRowGroupLength(opts.RowGroupRows),
		parquet.WithPageIndexEnabled(false), // its offsets would need relocating too
		parquet.WithAllocator(memory.DefaultAllocator),
		parquet.WithDictionaryDefault(false),
	}
	for _, f := range kept {
		props = append(props, parquet.WithDictionaryFor(f.Name, true))
	}
	return props
}

func build(w io.Writer, kept []arrow.Field, outputs []Output, opts Options) (*Writer, []byte, error) {
	schema, outs, err := resultSchema(kept, outputs)
	if err != nil {
		return nil, nil, err
	}
	opts = opts.withDefaults()
	wr := &Writer{
		w:      w,
		schema: schema,
		kept:   kept,
		outs:   outs,
		opts:   opts,
		props:  parquet.NewWriterProperties(writerProps(kept, opts)...),
		// The arrow schema in the file keeps kept columns' types exactly
		// (timestamps' units and zones, large strings) and the outputs'
		// shape metadata.
		aprops:   pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()),
		pendKept: make([][]arrow.Array, len(kept)),
		pendOut:  make([][]byte, len(outs)),
	}
	for i, f := range kept {
		if n, ok := fixedRowBytes(f.Type); ok {
			wr.fixed += n
		} else {
			wr.varCols = append(wr.varCols, i)
		}
	}
	for _, o := range outs {
		wr.fixed += o.rowBytes
	}
	base, err := wr.emptyFooter()
	if err != nil {
		return nil, nil, err
	}
	return wr, base, nil
}

// State is where the file stands after its last written row group.
func (wr *Writer) State() State { return wr.state.clone() }

// Stats returns the writer's accounting.
func (wr *Writer) Stats() Stats { return wr.stats }

// Schema is the result's arrow schema.
func (wr *Writer) Schema() *arrow.Schema { return wr.schema }

// Write appends n rows: kept holds the kept columns (nil when none are kept)
// and outputs[i] the raw little-endian bytes of output i for the n rows
// (ONNX Runtime's layout: row-major, bool one byte per element). The bytes
// are copied; kept's arrays are retained until their row group is written.
// Row-group boundaries depend only on the rows, not on how they are split
// into Write calls.
func (wr *Writer) Write(kept arrow.RecordBatch, outputs [][]byte, n int) error {
	if wr.closed {
		return ErrClosed
	}
	if wr.err != nil {
		return wr.err
	}
	if err := wr.check(kept, outputs, n); err != nil {
		return err
	}
	for start := 0; start < n; {
		end, full := wr.take(kept, start, n)
		for c := range wr.kept {
			wr.pendKept[c] = append(wr.pendKept[c], array.NewSlice(kept.Column(c), int64(start), int64(end)))
		}
		for i, o := range wr.outs {
			if wr.pendOut[i] == nil {
				// Room for a whole row group at once: grown by append, the
				// buffer was copied over and over (a tenth of the writer's time).
				wr.pendOut[i] = make([]byte, 0, wr.maxRows()*o.rowBytes)
			}
			wr.pendOut[i] = append(wr.pendOut[i], outputs[i][int64(start)*o.rowBytes:int64(end)*o.rowBytes]...)
		}
		wr.stats.BufferedRows = wr.pendRows
		wr.stats.BufferedBytes = wr.pendBytes
		wr.stats.PeakBufferedBytes = max(wr.stats.PeakBufferedBytes, wr.pendBytes)
		if full {
			if err := wr.flush(); err != nil {
				return err
			}
		}
		start = end
	}
	return nil
}

func (wr *Writer) check(kept arrow.RecordBatch, outputs [][]byte, n int) error {
	if n < 0 {
		return fmt.Errorf("write %d rows", n)
	}
	if len(wr.kept) > 0 || kept != nil {
		if kept == nil {
			return fmt.Errorf("write: %d kept columns expected, got none", len(wr.kept))
		}
		if int(kept.NumCols()) != len(wr.kept) {
			return fmt.Errorf("write: %d kept columns expected, got %d", len(wr.kept), kept.NumCols())
		}
		if kept.NumRows() != int64(n) {
			return fmt.Errorf("write: %d rows, but the kept columns have %d", n, kept.NumRows())
		}
		for i, f := range wr.kept {
			if t := kept.Column(i).DataType(); !arrow.TypeEqual(t, f.Type) {
				return fmt.Errorf("write: kept column %q is %v, the writer was made for %v", f.Name, t, f.Type)
			}
		}
	}
	if len(outputs) != len(wr.outs) {
		return fmt.Errorf("write: %d outputs expected, got %d", len(wr.outs), len(outputs))
	}
	for i, o := range wr.outs {
		if want := int64(n) * o.rowBytes; int64(len(outputs[i])) != want {
			return fmt.Errorf("write: output %q: %d bytes for %d rows of shape %v, want %d", o.Name, len(outputs[i]), n, o.Shape, want)
		}
	}
	return nil
}

// maxRows is the most rows a row group holds: the rows limit, or where the
// fixed-size columns alone reach the bytes limit.
func (wr *Writer) maxRows() int64 {
	if wr.fixed == 0 {
		return wr.opts.RowGroupRows
	}
	return min(wr.opts.RowGroupRows, (wr.opts.RowGroupBytes+wr.fixed-1)/wr.fixed)
}

// take counts rows from start into the pending row group, up to n or until
// it is full, and returns where it stopped.
func (wr *Writer) take(kept arrow.RecordBatch, start, n int) (end int, full bool) {
	roomRows := wr.opts.RowGroupRows - wr.pendRows
	if len(wr.varCols) == 0 {
		// Every row has the same size: the rows that fill the group, the
		// last one crossing RowGroupBytes.
		room := wr.opts.RowGroupBytes - wr.pendBytes
		fit := roomRows
		if wr.fixed > 0 {
			fit = max(1, (room+wr.fixed-1)/wr.fixed)
		}
		rows := min(fit, roomRows)
		if rows > int64(n-start) {
			rows = int64(n - start)
			wr.pendRows += rows
			wr.pendBytes += rows * wr.fixed
			return n, wr.pendRows >= wr.opts.RowGroupRows || wr.pendBytes >= wr.opts.RowGroupBytes
		}
		wr.pendRows += rows
		wr.pendBytes += rows * wr.fixed
		return start + int(rows), true
	}
	for r := start; r < n; r++ {
		b := wr.fixed
		for _, c := range wr.varCols {
			b += rowBytes(kept.Column(c), r)
		}
		wr.pendRows++
		wr.pendBytes += b
		if wr.pendRows >= wr.opts.RowGroupRows || wr.pendBytes >= wr.opts.RowGroupBytes {
			return r + 1, true
		}
	}
	return n, false
}

// Close writes any buffered rows as a last row group, then the footer. It
// does not close the io.Writer (the caller completes its upload).
func (wr *Writer) Close() error {
	if wr.closed {
		return ErrClosed
	}
	if wr.err != nil {
		return wr.err
	}
	if wr.pendRows > 0 {
		if err := wr.flush(); err != nil {
			return err
		}
	}
	wr.closed = true
	n, err := writeFooter(wr.w, wr.state.Footer)
	if err != nil {
		wr.err = fmt.Errorf("write parquet footer: %w", err)
		return wr.err
	}
	wr.state.Offset += n
	wr.stats.Offset = wr.state.Offset
	return nil
}

// flush encodes the pending rows as one row group and writes it.
func (wr *Writer) flush() error {
	rows := wr.pendRows
	if err := wr.encode(rows); err != nil {
		wr.err = fmt.Errorf("encode row group %d: %w", wr.state.RowGroups, err)
		return wr.err
	}
	wr.stats.PeakEncodedBytes = max(wr.stats.PeakEncodedBytes, int64(wr.encoded.Len()))
	body, next, err := wr.state.appendRowGroup(wr.encoded.Bytes())
	if err != nil {
		wr.err = fmt.Errorf("row group %d: %w", wr.state.RowGroups, err)
		return wr.err
	}
	if _, err := wr.w.Write(body); err != nil {
		wr.err = fmt.Errorf("write row group %d: %w", wr.state.RowGroups, err)
		return wr.err
	}
	wr.state = next
	wr.release()
	wr.stats.RowGroups = next.RowGroups
	wr.stats.Rows = next.Rows
	wr.stats.Offset = next.Offset
	wr.stats.BufferedRows, wr.stats.BufferedBytes = 0, 0
	if wr.opts.OnRowGroup != nil {
		if err := wr.opts.OnRowGroup(next.clone()); err != nil {
			wr.err = fmt.Errorf("after row group %d: %w", next.RowGroups-1, err)
			return wr.err
		}
	}
	return nil
}

func (wr *Writer) release() {
	for c := range wr.pendKept {
		for _, a := range wr.pendKept[c] {
			a.Release()
		}
		wr.pendKept[c] = wr.pendKept[c][:0]
	}
	for i := range wr.pendOut {
		wr.pendOut[i] = wr.pendOut[i][:0]
	}
	wr.pendRows, wr.pendBytes = 0, 0
}

// encode writes the pending rows into wr.encoded as a complete one-row-group
// Parquet file, through pqarrow.
func (wr *Writer) encode(rows int64) error {
	wr.encoded.Reset()
	fw, err := pqarrow.NewFileWriter(wr.schema, &wr.encoded, wr.props, wr.aprops)
	if err != nil {
		return err
	}
	if err := fw.NewRowGroupChecked(); err != nil {
		return err
	}
	for c, f := range wr.kept {
		// One array per column, whatever the Write calls were: pqarrow's
		// pages and statistics follow the chunks it is given, and the bytes
		// must depend on the rows only.
		col, err := array.Concatenate(wr.pendKept[c], wr.props.Allocator())
		if err != nil {
			return fmt.Errorf("kept column %q: %w", f.Name, err)
		}
		err = fw.WriteColumnData(col)
		col.Release()
		if err != nil {
			return fmt.Errorf("kept column %q: %w", f.Name, err)
		}
	}
	for i, o := range wr.outs {
		arr := outputArray(o, wr.pendOut[i], rows)
		err := fw.WriteColumnData(arr)
		arr.Release()
		if err != nil {
			return fmt.Errorf("output %q: %w", o.Name, err)
		}
	}
	return fw.Close()
}

// emptyFooter is the footer of a file with this schema and no row groups:
// the metadata every row group's is appended to.
func (wr *Writer) emptyFooter() ([]byte, error) {
	var buf bytes.Buffer
	fw, err := pqarrow.NewFileWriter(wr.schema, &buf, wr.props, wr.aprops)
	if err != nil {
		return nil, fmt.Errorf("parquet schema: %w", err)
	}
	if err := fw.Close(); err != nil {
		return nil, fmt.Errorf("parquet schema: %w", err)
	}
	meta, _, err := splitFile(buf.Bytes())
	if err != nil {
		return nil, err
	}
	return serialize(meta)
}

// outputArray views an output's raw bytes as its arrow column (no copy,
// except bool, which arrow packs to bits).
func outputArray(o outputCol, raw []byte, rows int64) arrow.Array {
	n := int(rows) * o.width
	var values *memory.Buffer
	if o.Type.ID() == arrow.BOOL {
		bits := make([]byte, bitutil.BytesForBits(int64(n)))
		for i, b := range raw[:n] {
			if b != 0 {
				bitutil.SetBit(bits, i)
			}
		}
		values = memory.NewBufferBytes(bits)
	} else {
		values = memory.NewBufferBytes(raw[:int64(n)*o.rowBytes/int64(o.width)])
	}
	elems := array.NewData(o.Type, n, []*memory.Buffer{nil, values}, nil, 0, 0)
	defer elems.Release()
	if o.field.Type.ID() != arrow.FIXED_SIZE_LIST {
		return array.MakeFromData(elems)
	}
	list := array.NewData(o.field.Type, int(rows), []*memory.Buffer{nil}, []arrow.ArrayData{elems}, 0, 0)
	defer list.Release()
	return array.MakeFromData(list)
}

func serialize(meta *metadata.FileMetaData) ([]byte, error) {
	b, err := meta.Serialize(context.Background())
	if err != nil {
		return nil, fmt.Errorf("serialize parquet footer: %w", err)
	}
	return b, nil
}
