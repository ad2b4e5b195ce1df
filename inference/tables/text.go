package tables

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
)

// The text formats (CSV, JSON Lines) share one reader: a rowSource yields the cells of each row, and
// the reader infers the column types from the first rows, then builds arrow records batch by batch.
//
// Types: a column named in Options.Types parses as that type (the engine passes the model inputs'
// element types, so a CSV column "3" feeding a float32 input is float32, not an inferred int64).
// Other columns are inferred from the first Options.InferRows rows, always counted from the top of
// the file (so a resumed read infers the same schema): all true/false -> bool; all integers -> int64
// (a number with a leading zero, like an id "007", stays text so that copying it keeps it);
// all numbers -> float64; JSON arrays -> list of the same rules; anything else -> utf8. An empty CSV
// cell and a JSON null or missing key are nulls. A later cell that does not parse as its column's
// type is an error naming the file, the row (and line) and the column.
//
// Row counts: NumRows is -1 (unknown): counting would read, and for gzip inflate, the whole file
// before the first batch. A caller that needs a count calls CountRows (RowCounter), which reads the
// records to the end but parses no cell: a cell that does not parse is refused by the Next whose
// batch holds it.

type rowSource interface {
	// header returns the column names (CSV: the header row; JSON Lines: the keys of the sampled
	// rows in order of first appearance), after sample rows have been read.
	header() []string
	// next returns the next row's cells (indexed like header; nil for absent) and its line number, or io.EOF.
	next() (cells []any, line int64, err error)
	// skip reads the next row as next does, refusing what next refuses of the row as a record (a
	// malformed quote, a wrong field count), but does not decode its cells.
	skip() (line int64, err error)
}

// fieldSource is a rowSource whose cells are text fields (CSV): past the sample, the reader parses
// them from the line's bytes, with no string or interface value per cell.
type fieldSource interface {
	rowSource
	// nextFields is next with the cells as bytes, valid until the next call.
	nextFields() (fields [][]byte, line int64, err error)
}

type sampledRow struct {
	cells []any
	line  int64
}

type textReader struct {
	name   string
	opts   Options
	src    rowSource
	schema *arrow.Schema
	cols   []int // source cell index of each chosen column
	bld    []colBuilder
	sample []sampledRow // the inference rows, replayed first
	block  *csvBlock    // parses every batch, where the source and columns allow (CSV, fixed-width columns)
	row    int64        // table row number of the next row from src (or sample)
	done   bool

	part     *Range // the byte range read (Options.Range), which errors name
	lineBase int64  // lines before the range's first (a CSV range's header)
}

var (
	_ Reader     = (*textReader)(nil)
	_ RowCounter = (*textReader)(nil)
)

// maybeGunzip returns a reader of r's bytes, inflated when they start with the gzip magic.
func maybeGunzip(r io.ReaderAt, size int64) (io.Reader, func() error, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() error { return nil }, nil
}

// newTextReader reads src's rows; lineBase is how many of its lines come before a byte range's
// first (Options.Range: a CSV range's header), for errors to count lines from the range's start.
func newTextReader(name string, opts Options, src rowSource, jsonTypes bool, lineBase int64) (*textReader, error) {
	t := &textReader{name: name, opts: opts, src: src, part: opts.Range, lineBase: lineBase}
	inferRows := opts.InferRows
	if opts.schema != nil {
		inferRows = 0 // nothing to infer
	}
	if _, ok := src.(recordSource); ok && !jsonTypes {
		// A CSV header names the columns before any row: where every chosen column's type is given,
		// there is nothing to infer, so no row is read (a bad record is refused by the reads that
		// reach it, CountRows or Next, as it is past the sample).
		if chosen, err := pickColumns(name, src.header(), opts.Columns); err == nil &&
			!slices.ContainsFunc(chosen, func(c int) bool { return opts.Types[src.header()[c]] == nil }) {
			inferRows = 0
		}
	}
	for len(t.sample) < inferRows {
		cells, line, err := src.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, t.rowErr(int64(len(t.sample)), line, "", err)
		}
		t.sample = append(t.sample, sampledRow{cells, line})
	}
	have := src.header()
	chosen, err := pickColumns(name, have, opts.Columns)
	if err != nil {
		return nil, err
	}
	fields := make([]arrow.Field, len(chosen))
	t.cols = chosen
	for i, c := range chosen {
		var vals []any
		for _, r := range t.sample {
			if c < len(r.cells) {
				vals = append(vals, r.cells[c])
			}
		}
		hint, hinted := opts.Types[have[c]]
		var typ arrow.DataType
		given := -1
		if opts.schema != nil {
			if idx := opts.schema.FieldIndices(have[c]); len(idx) > 0 {
				given = idx[0]
			}
		}
		switch {
		case given >= 0:
			typ = opts.schema.Field(given).Type
		case hinted && !jsonTypes:
			typ = hint // a CSV cell is never a list: nothing to infer
		case hinted:
			if _, isList := inferType(vals).(*arrow.ListType); isList {
				typ = arrow.ListOf(hint)
			} else {
				typ = hint
			}
		default:
			typ = inferType(vals)
		}
		fields[i] = arrow.Field{Name: have[c], Type: typ, Nullable: true}
	}
	t.schema = arrow.NewSchema(fields, nil)
	for _, f := range fields {
		if !textTypeOK(f.Type) {
			return nil, badf("%s: column %q: type %s cannot be read from text", name, f.Name, f.Type)
		}
		t.bld = append(t.bld, colBuilder{b: array.NewBuilder(opts.Alloc, f.Type)})
	}
	if _, ok := src.(recordSource); ok {
		types := make([]arrow.DataType, len(fields))
		for i, f := range fields {
			types[i] = f.Type
		}
		t.block = newCSVBlock(len(have), chosen, types)
	}
	return t, nil
}

func (t *textReader) rowErr(row, line int64, col string, err error) error {
	where := fmt.Sprintf("row %d (line %d)", row, line)
	if t.part != nil {
		// Rows and lines are counted from the range's start: what came before it was not read.
		where = fmt.Sprintf("%s, row %d (line %d of those bytes)", t.part, row, line-t.lineBase)
	}
	if col != "" {
		where += fmt.Sprintf(", column %q", col)
	}
	return badf("%s: %s: %v", t.name, where, err)
}

func (t *textReader) Schema() *arrow.Schema { return t.schema }
func (t *textReader) NumRows() int64        { return -1 }
func (t *textReader) Close() error {
	for _, b := range t.bld {
		b.b.Release()
	}
	t.bld = nil
	return nil
}

// CountRows counts the table's rows (from row 0, whatever StartRow says) on a reader no Next has
// read from, reading it to its end.
func (t *textReader) CountRows() (int64, error) {
	n := t.row + int64(len(t.sample))
	for {
		line, err := t.src.skip()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, t.rowErr(n, line, "", err)
		}
		n++
	}
}

func (t *textReader) nextRow() ([]any, int64, error) {
	if len(t.sample) > 0 {
		r := t.sample[0]
		t.sample[0] = sampledRow{}
		t.sample = t.sample[1:]
		return r.cells, r.line, nil
	}
	return t.src.next()
}

func (t *textReader) Next() (Batch, error) {
	if t.done {
		return Batch{}, io.EOF
	}
	if t.block != nil {
		return t.nextBlock()
	}
	fields, _ := t.src.(fieldSource)
	for _, b := range t.bld {
		b.b.Reserve(t.opts.BatchRows)
	}
	first := t.row
	n := 0
	for n < t.opts.BatchRows {
		var (
			cells []any
			raw   [][]byte
			line  int64
			err   error
		)
		if fields != nil && len(t.sample) == 0 {
			raw, line, err = fields.nextFields()
		} else {
			cells, line, err = t.nextRow()
		}
		if err == io.EOF {
			t.done = true
			break
		}
		if err != nil {
			t.done = true
			return Batch{}, t.rowErr(t.row, line, "", err)
		}
		row := t.row
		t.row++
		if row < t.opts.StartRow {
			first = t.row
			continue
		}
		for i, c := range t.cols {
			if raw != nil {
				var f []byte
				if c < len(raw) {
					f = raw[c]
				}
				err = t.bld[i].appendField(f)
			} else {
				var v any
				if c < len(cells) {
					v = cells[c]
				}
				err = t.bld[i].append(v)
			}
			if err != nil {
				t.done = true
				return Batch{}, t.rowErr(row, line, t.schema.Field(i).Name, err)
			}
		}
		n++
	}
	if n == 0 {
		return Batch{}, io.EOF
	}
	arrs := make([]arrow.Array, len(t.bld))
	for i := range t.bld {
		arrs[i] = t.bld[i].b.NewArray()
	}
	rec := array.NewRecordBatch(t.schema, arrs, int64(n))
	for _, a := range arrs {
		a.Release()
	}
	return Batch{Rec: rec, Row: first}, nil
}

// nextBlock is Next through t.block: the batch's records are read here, their cells parsed by
// t.block.
func (t *textReader) nextBlock() (Batch, error) {
	src := t.src.(recordSource)
	b := t.block
	b.reset()
	first := t.row
	var (
		readErr  error // a record that could not be read, after the block's
		readRow  int64
		readLine int64
	)
	for len(b.recs) < t.opts.BatchRows {
		if len(t.sample) > 0 {
			r := t.sample[0]
			t.sample[0] = sampledRow{}
			t.sample = t.sample[1:]
			t.row++
			if t.row <= t.opts.StartRow {
				first = t.row
				continue
			}
			b.addCells(r.cells, r.line)
			continue
		}
		if t.row < t.opts.StartRow {
			line, err := src.skip()
			if err == io.EOF {
				t.done = true
				break
			}
			if err != nil {
				t.done = true
				return Batch{}, t.rowErr(t.row, line, "", err)
			}
			t.row++
			first = t.row
			continue
		}
		body, quoted, line, err := src.nextRecord()
		if err == io.EOF {
			t.done = true
			break
		}
		if err != nil {
			t.done = true
			readErr, readRow, readLine = err, t.row, line
			break
		}
		b.add(body, quoted, line)
		t.row++
	}
	n := len(b.recs)
	var arrs []arrow.Array
	if n > 0 {
		var (
			rec, col int
			err      error
		)
		if arrs, rec, col, err = b.parse(t.opts.Alloc); err != nil {
			t.done = true
			name := ""
			if col >= 0 {
				name = t.schema.Field(col).Name
			}
			return Batch{}, t.rowErr(first+int64(rec), b.recs[rec].line, name, err)
		}
	}
	defer func() {
		for _, a := range arrs {
			a.Release()
		}
	}()
	if readErr != nil {
		return Batch{}, t.rowErr(readRow, readLine, "", readErr)
	}
	if n == 0 {
		return Batch{}, io.EOF
	}
	return Batch{Rec: array.NewRecordBatch(t.schema, arrs, int64(n)), Row: first}, nil
}

// Cells are strings (CSV) or JSON values decoded with UseNumber: json.Number, string, bool, []any,
// map[string]any, or nil. An empty string is null.

func inferType(vals []any) arrow.DataType {
	allBool, allInt, allNum, allList, seen := true, true, true, true, false
	var elems []any
	for _, v := range vals {
		if v == nil || v == "" {
			continue
		}
		seen = true
		switch x := v.(type) {
		case bool:
			allInt, allNum, allList = false, false, false
		case json.Number:
			allBool, allList = false, false
			if !isInt(x.String()) {
				allInt = false
			}
		case []any:
			allBool, allInt, allNum = false, false, false
			elems = append(elems, x...)
		case string:
			allList = false
			if !isBoolWord(x) {
				allBool = false
			}
			if !isInt(x) {
				allInt = false
			}
			if !isNum(x) {
				allNum = false
			}
		default:
			allBool, allInt, allNum, allList = false, false, false, false
		}
	}
	switch {
	case !seen:
		return arrow.BinaryTypes.String
	case allBool:
		return arrow.FixedWidthTypes.Boolean
	case allInt:
		return arrow.PrimitiveTypes.Int64
	case allNum:
		return arrow.PrimitiveTypes.Float64
	case allList:
		et := inferType(elems)
		if _, nested := et.(*arrow.ListType); nested {
			return arrow.BinaryTypes.String
		}
		return arrow.ListOf(et)
	}
	return arrow.BinaryTypes.String
}

// isInt reports whether s is a decimal integer without a leading zero (so "007" stays text).
func isInt(s string) bool {
	d := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if d == "" || (len(d) > 1 && d[0] == '0') {
		return false
	}
	for _, r := range d {
		if r < '0' || r > '9' {
			return false
		}
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// isNum reports whether s is a number, not counting integers with a leading zero.
func isNum(s string) bool {
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return false
	}
	d := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	return len(d) <= 1 || d[0] != '0' || strings.ContainsAny(d, ".eE")
}

func isBoolWord(s string) bool {
	switch strings.ToLower(s) {
	case "true", "false":
		return true
	}
	return false
}

func textTypeOK(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.BOOL, arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16,
		arrow.UINT32, arrow.UINT64, arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64, arrow.STRING:
		return true
	case arrow.LIST:
		e := t.(*arrow.ListType).Elem()
		return e.ID() != arrow.LIST && textTypeOK(e)
	}
	return false
}

type colBuilder struct{ b array.Builder }

func (c colBuilder) append(v any) error { return appendValue(c.b, v) }

// appendField appends a CSV field as append would the same text as a string, without making one.
func (c colBuilder) appendField(f []byte) error {
	if len(f) == 0 {
		c.b.AppendNull()
		return nil
	}
	var err error
	switch b := c.b.(type) {
	case *array.Float32Builder:
		var v float32
		if v, err = parseFloat32(f); err == nil {
			b.Append(v)
		}
	case *array.Float64Builder:
		var v float64
		if v, err = parseFloat64(f); err == nil {
			b.Append(v)
		}
	case *array.StringBuilder:
		b.BinaryBuilder.Append(f)
	default:
		// No copy: the string lives only through the parse (strconv's error, which holds it, is dropped below).
		err = appendText(c.b, unsafe.String(unsafe.SliceData(f), len(f)))
	}
	if err != nil {
		return fmt.Errorf("%q does not parse as %s", f, c.b.Type())
	}
	return nil
}

func appendValue(b array.Builder, v any) error {
	if v == nil || v == "" {
		b.AppendNull()
		return nil
	}
	if lb, ok := b.(*array.ListBuilder); ok {
		xs, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s is not a list", describe(v))
		}
		lb.Append(true)
		vb := lb.ValueBuilder()
		for _, x := range xs {
			if err := appendValue(vb, x); err != nil {
				return fmt.Errorf("list element: %w", err)
			}
		}
		return nil
	}
	if sb, ok := b.(*array.StringBuilder); ok {
		switch x := v.(type) {
		case string:
			sb.Append(x)
		case json.Number:
			sb.Append(x.String())
		default:
			raw, _ := json.Marshal(x)
			sb.Append(string(raw))
		}
		return nil
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		if bb, ok := b.(*array.BooleanBuilder); ok {
			bb.Append(x)
			return nil
		}
		return fmt.Errorf("%v does not parse as %s", x, b.Type())
	default:
		return fmt.Errorf("%s does not parse as %s", describe(v), b.Type())
	}
	if err := appendText(b, s); err != nil {
		return fmt.Errorf("%q does not parse as %s", s, b.Type())
	}
	return nil
}

func describe(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	raw, _ := json.Marshal(v)
	return string(raw)
}

func appendText(b array.Builder, s string) error {
	switch bb := b.(type) {
	case *array.BooleanBuilder:
		v, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		bb.Append(v)
	case *array.Int8Builder:
		v, err := strconv.ParseInt(s, 10, 8)
		bb.Append(int8(v))
		return err
	case *array.Int16Builder:
		v, err := strconv.ParseInt(s, 10, 16)
		bb.Append(int16(v))
		return err
	case *array.Int32Builder:
		v, err := strconv.ParseInt(s, 10, 32)
		bb.Append(int32(v))
		return err
	case *array.Int64Builder:
		v, err := strconv.ParseInt(s, 10, 64)
		bb.Append(v)
		return err
	case *array.Uint8Builder:
		v, err := strconv.ParseUint(s, 10, 8)
		bb.Append(uint8(v))
		return err
	case *array.Uint16Builder:
		v, err := strconv.ParseUint(s, 10, 16)
		bb.Append(uint16(v))
		return err
	case *array.Uint32Builder:
		v, err := strconv.ParseUint(s, 10, 32)
		bb.Append(uint32(v))
		return err
	case *array.Uint64Builder:
		v, err := strconv.ParseUint(s, 10, 64)
		bb.Append(v)
		return err
	case *array.Float16Builder:
		v, err := strconv.ParseFloat(s, 32)
		bb.Append(float16.New(float32(v)))
		return err
	case *array.Float32Builder:
		v, err := strconv.ParseFloat(s, 32)
		bb.Append(float32(v))
		return err
	case *array.Float64Builder:
		v, err := strconv.ParseFloat(s, 64)
		bb.Append(v)
		return err
	default:
		return fmt.Errorf("unsupported type %s", b.Type())
	}
	return nil
}
