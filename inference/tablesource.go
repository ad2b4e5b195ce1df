package inference

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/inference/tables"
)

// TableOptions say how a table feeds a model: Feed maps an input to the
// columns it reads (by default the column of its own name), Keep names the
// columns copied to the result beside the predictions.
type TableOptions struct {
	Format string // empty: from the file name's extension
	Feed   map[string][]string
	Keep   []string
	Range  *Range // nil: the whole table; else the shard to read, as PlanTableShards cut it
}

// Range is a shard of an input: rows [From, To) of an input that knows its
// rows (Unit RangeRows), or the lines in bytes [From, To) of a text table
// (Unit RangeBytes). It is tables.Range, whose doc says more.
type Range = tables.Range

// The units of a Range.
const (
	RangeRows  = tables.RangeRows
	RangeBytes = tables.RangeBytes
)

// PlanTableShards splits a table input into at most n shards, each a Range
// for OpenTable, reading only its footer (Parquet) or the bytes around the
// split points (CSV, JSON Lines).
//
// Parquet: row ranges cut at row-group starts, as even in rows as the row
// groups allow (the k-th cut at the group start nearest k/n of the rows), so
// never more shards than row groups. CSV and JSON Lines: byte ranges of whole
// lines, cut as Hadoop cuts input splits: shard k > 0 starts just after the
// first '\n' at or after k*size/n, so every line is in exactly one shard.
// A CSV's header line is in no shard: shard 0 starts just after it, and
// OpenTable reads every shard with the header. A gzipped text table cannot
// be entered in the middle: one shard. Shards that would be empty are
// dropped; a single shard (as for n <= 1) is the whole file, bytes 0 to size
// or rows 0 to the row count.
//
// A shard of bytes that holds only blank lines has no rows, and OpenTable
// refuses it, as it refuses an empty table. CSV ranges are cut at '\n'
// whatever the quotes say: a CSV with line breaks inside quoted fields cannot
// be read in shards, and the shard whose end cuts such a field is refused
// when read, saying so (planning, which reads only around the cuts, cannot
// see it); such a file must run as one shard.
func PlanTableShards(r io.ReaderAt, size int64, name, format string, n int) ([]Range, error) {
	shards, err := tables.PlanRanges(r, size, name, format, n)
	if err != nil {
		return nil, tableError(name, err)
	}
	return shards, nil
}

// IsTable says whether name (or format, when given) is a table format:
// Parquet, CSV or JSON Lines.
func IsTable(name, format string) bool {
	if format != "" {
		return slices.Contains(tables.Formats(), format)
	}
	return tables.FormatOf(name) != ""
}

// TableSource feeds a model from a table's rows: each chunk is read from
// the table, turned into one tensor per model input (tables.Plan) and, with
// the kept columns, handed to the sink.
type TableSource struct {
	open       func(start int64) (tables.Reader, error)
	name       string
	format     string
	plan       *tables.Plan
	keep       []string
	keepIdx    []int
	keptSchema *arrow.Schema // the kept columns' schema
	feeds      []Feed
	samples    int64
	shard      *Range // the shard read, or nil
	base       int64  // the table row number of the shard's first row, where the table numbers its rows

	reader  tables.Reader
	cursor  int64 // the table row the next Read must start at to continue
	pending tables.Batch
	offset  int // rows of pending already used
	tensors []tables.Tensor
	spare   [][]byte // each feed's own buffer, for where Fill cannot write into the caller's
	kept    []arrow.RecordBatch
}

var _ Source = (*TableSource)(nil)

// OpenTable opens a table input for model.
func OpenTable(r io.ReaderAt, size int64, name string, model *Model, opts TableOptions) (*TableSource, error) {
	inputs := make([]tables.Input, len(model.Inputs))
	for i, in := range model.Inputs {
		t, err := tables.ParseElemType(in.DType)
		if err != nil {
			return nil, withKind(ErrBadModel, "model input %q: %w", in.Name, err)
		}
		inputs[i] = tables.Input{Name: in.Name, Type: t, Shape: in.Shape}
	}
	for in := range opts.Feed {
		if !slices.ContainsFunc(inputs, func(i tables.Input) bool { return i.Name == in }) {
			return nil, withKind(ErrBadInput, "feed %s: the model has no input %q (its inputs: %v)", in, in, model.inputNames())
		}
	}
	columns := tables.NeededColumns(inputs, opts.Feed)
	for _, k := range opts.Keep {
		if !slices.Contains(columns, k) {
			columns = append(columns, k)
		}
	}
	format := opts.Format
	if format == "" {
		format = tables.FormatOf(name)
	}
	if opts.Range != nil {
		rg := *opts.Range // the caller's may change
		opts.Range = &rg
	}
	s := &TableSource{name: name, format: format, keep: opts.Keep, shard: opts.Range}
	if opts.Range != nil && opts.Range.Unit == RangeRows {
		// The reader numbers a row range's rows as the table does (a byte range's from its start).
		s.base = opts.Range.From
	}
	s.open = func(start int64) (tables.Reader, error) {
		return tables.Open(r, size, name, tables.Options{
			Format: format, Columns: columns, Types: tables.TextTypes(inputs, opts.Feed), StartRow: s.base + start, Range: opts.Range,
		})
	}
	reader, err := s.open(0)
	if err != nil {
		return nil, tableError(name, err)
	}
	s.reader = reader
	if s.plan, err = tables.NewPlan(inputs, reader.Schema(), opts.Feed); err != nil {
		s.Close()
		return nil, tableError(name, err)
	}
	var keptFields []arrow.Field
	for _, k := range opts.Keep {
		idx := reader.Schema().FieldIndices(k)[0]
		s.keepIdx, keptFields = append(s.keepIdx, idx), append(keptFields, reader.Schema().Field(idx))
	}
	s.keptSchema = arrow.NewSchema(keptFields, nil)
	if s.samples = reader.NumRows(); s.samples < 0 {
		if s.samples, err = countRows(name, s.open); err != nil {
			s.Close()
			return nil, err
		}
	}
	if s.samples == 0 {
		s.Close()
		return nil, withKind(ErrBadInput, "input %s: no rows", name)
	}
	// The first rows fix each input's shape per row: the pipeline's buffers
	// are sized by it, and a later row of another shape is refused.
	if err := s.next(); err != nil {
		s.Close()
		return nil, err
	}
	first := s.pending.Rec.NewSlice(0, 1)
	s.tensors, err = s.plan.Fill(tables.Batch{Rec: first, Row: s.pending.Row}, s.tensors)
	first.Release()
	if err != nil {
		s.Close()
		return nil, s.fillError(err)
	}
	for i, t := range s.tensors {
		s.feeds = append(s.feeds, Feed{Name: inputs[i].Name, DType: model.Inputs[i].DType, SampleShape: slices.Clone(t.Shape[1:])})
	}
	return s, nil
}

// KeptFields are the kept columns as the result stores them.
func (s *TableSource) KeptFields() []arrow.Field { return s.keptSchema.Fields() }

func (s *TableSource) Samples() int64 { return s.samples }
func (s *TableSource) Feeds() []Feed  { return s.feeds }

// Describe is the table as the manifest records it.
func (s *TableSource) Describe() manifest.Layout {
	return manifest.Layout{Format: s.format, Samples: s.samples}
}

// Table is what the manifest records of how the table fed the model.
func (s *TableSource) Table() *manifest.Table {
	t := &manifest.Table{Feed: s.plan.Feed(), Kept: s.keep}
	for _, f := range s.reader.Schema().Fields() {
		t.Columns = append(t.Columns, f.Name)
	}
	for _, c := range s.plan.Conversions() {
		t.Conversions = append(t.Conversions, manifest.Conversion{Input: c.Input, Column: c.Column, From: c.From, To: c.To, Exact: c.Exact})
	}
	return t
}

// Read fills dst with rows [start,end) as the model's inputs, and keeps
// their kept columns for Kept.
func (s *TableSource) Read(start, end int64, dst [][]byte) error {
	if b := s.pending; start != s.cursor && b.Rec != nil && start >= b.Row-s.base && start < b.Row-s.base+b.Rec.NumRows() {
		// The probe and calibration read the first rows again: they are
		// still in the batch at hand.
		s.dropKept()
		s.offset, s.cursor = int(start-(b.Row-s.base)), start
	}
	if start != s.cursor {
		// A resume, or a read past the batch at hand: reopen there.
		s.release()
		reader, err := s.open(start)
		if err != nil {
			return tableError(s.name, err)
		}
		s.reader.Close() //nolint:errcheck // read-only
		s.reader, s.cursor = reader, start
	}
	for filled := int64(0); filled < end-start; {
		if s.pending.Rec == nil || s.offset == int(s.pending.Rec.NumRows()) {
			if err := s.next(); err != nil {
				return err
			}
		}
		n := min(end-start-filled, s.pending.Rec.NumRows()-int64(s.offset))
		rows := s.pending.Rec.NewSlice(int64(s.offset), int64(s.offset)+n)
		row := s.pending.Row + int64(s.offset)
		s.fillTargets(dst, filled, n)
		var err error
		s.tensors, err = s.plan.Fill(tables.Batch{Rec: rows, Row: row}, s.tensors)
		if err != nil {
			err = s.fillError(err)
		} else {
			err = s.copyInto(dst, filled, n, row)
		}
		if err != nil {
			rows.Release()
			return err
		}
		if len(s.keepIdx) > 0 {
			cols := make([]arrow.Array, len(s.keepIdx))
			for i, idx := range s.keepIdx {
				cols[i] = rows.Column(idx)
			}
			s.kept = append(s.kept, array.NewRecordBatch(s.keptSchema, cols, n))
		}
		rows.Release()
		s.offset += int(n)
		filled += n
	}
	s.cursor = end
	return nil
}

// fillTargets points each tensor at where its n rows go in dst from sample
// at, so that Fill writes them there: exactly that room, so a batch of
// another shape cannot write past it (Fill then takes a buffer of its own,
// and copyInto refuses the batch). A feed whose room is not aligned for its
// elements (Fill writes them as typed values) fills its own buffer.
func (s *TableSource) fillTargets(dst [][]byte, at, n int64) {
	if len(s.tensors) != len(s.feeds) {
		s.tensors = make([]tables.Tensor, len(s.feeds))
	}
	if len(s.spare) != len(s.feeds) {
		s.spare = make([][]byte, len(s.feeds))
	}
	for i, f := range s.feeds {
		lo, hi := at*f.SampleBytes(), (at+n)*f.SampleBytes()
		room := dst[i][lo:hi:hi]
		if len(room) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(room)))%uintptr(elemSizes[f.DType]) == 0 {
			s.tensors[i].Data = room
		} else {
			s.tensors[i].Data = s.spare[i]
		}
	}
}

// copyInto checks the tensors of n rows from row on against the feeds and
// copies into dst at sample at those that Fill did not write there.
func (s *TableSource) copyInto(dst [][]byte, at, n, row int64) error {
	for i, t := range s.tensors {
		f := s.feeds[i]
		if !slices.Equal(t.Shape[1:], f.SampleShape) {
			return withKind(ErrBadInput, "input %s: rows from %d give input %q rows of shape %v; the first rows gave %v (the model needs one length)",
				s.name, row, f.Name, t.Shape[1:], f.SampleShape)
		}
		room := dst[i][at*f.SampleBytes() : (at+n)*f.SampleBytes()]
		if len(t.Data) > 0 && unsafe.SliceData(t.Data) == unsafe.SliceData(room) {
			continue
		}
		s.spare[i] = t.Data
		copy(room, t.Data)
	}
	return nil
}

// Kept returns the kept columns of the rows the last Read read, as one
// record (nil without kept columns); the caller releases it.
func (s *TableSource) Kept() arrow.RecordBatch {
	if len(s.kept) == 0 {
		return nil
	}
	defer func() {
		for _, r := range s.kept {
			r.Release()
		}
		s.kept = s.kept[:0]
	}()
	if len(s.kept) == 1 {
		s.kept[0].Retain()
		return s.kept[0]
	}
	cols := make([]arrow.Array, len(s.keepIdx))
	var n int64
	for _, r := range s.kept {
		n += r.NumRows()
	}
	for i := range s.keepIdx {
		parts := make([]arrow.Array, len(s.kept))
		for j, r := range s.kept {
			parts[j] = r.Column(i)
		}
		col, err := array.Concatenate(parts, memory.DefaultAllocator)
		if err != nil {
			panic(fmt.Sprintf("concatenate kept column: %v", err)) // same type throughout: cannot fail
		}
		cols[i] = col
		defer col.Release()
	}
	return array.NewRecordBatch(s.keptSchema, cols, n)
}

func (s *TableSource) next() error {
	if s.pending.Rec != nil {
		s.pending.Rec.Release()
		s.pending.Rec = nil
	}
	b, err := s.reader.Next()
	switch {
	case errors.Is(err, io.EOF):
		return withKind(ErrBadInput, "input %s: the table ended before row %d of %d", s.name, s.cursor, s.samples)
	case err != nil:
		return tableError(s.name, err)
	}
	s.pending, s.offset = b, 0
	return nil
}

func (s *TableSource) release() {
	if s.pending.Rec != nil {
		s.pending.Rec.Release()
		s.pending.Rec = nil
	}
	s.dropKept()
}

func (s *TableSource) dropKept() {
	for _, r := range s.kept {
		r.Release()
	}
	s.kept = s.kept[:0]
}

// Close releases the reader.
func (s *TableSource) Close() {
	s.release()
	if s.reader != nil {
		s.reader.Close() //nolint:errcheck // read-only
		s.reader = nil
	}
}

// countRows counts the rows of a table whose format does not store how many
// it has: by its records where the reader can (text formats: cells are
// parsed, and refused, by the run), else by reading it.
func countRows(name string, open func(int64) (tables.Reader, error)) (int64, error) {
	r, err := open(0)
	if err != nil {
		return 0, tableError(name, err)
	}
	defer r.Close() //nolint:errcheck // read-only
	if c, ok := r.(tables.RowCounter); ok {
		n, err := c.CountRows()
		if err != nil {
			return 0, tableError(name, err)
		}
		return n, nil
	}
	var n int64
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, tableError(name, err)
		}
		n += b.Rec.NumRows()
		b.Rec.Release()
	}
}

// fillError is tableError for a refusal of the rows' cells, naming a byte
// shard, whose rows are numbered from its start (the reader's own errors name
// it already).
func (s *TableSource) fillError(err error) error {
	if s.shard != nil && s.shard.Unit == RangeBytes {
		err = fmt.Errorf("%s (rows counted from there): %w", s.shard, err)
	}
	return tableError(s.name, err)
}

// tableError marks a table's refusals as bad input, naming the file.
func tableError(file string, err error) error {
	if errors.Is(err, tables.ErrBadTable) {
		return withKind(ErrBadInput, "input %s: %w", file, err)
	}
	return err
}
