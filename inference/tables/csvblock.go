package tables

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// A CSV batch whose chosen columns are all fixed-width (numbers, bools) is parsed as a block: its
// records are copied out of the reader's buffer, then goroutines parse runs of them straight into
// the columns' buffers, each number where it lies in its record (no field slices). Values, nulls and
// refusals are those of colBuilder.appendField on the same fields; the first refusal in row order is
// the one reported.

// recordSource is a rowSource whose rows can be taken as records for a csvBlock.
type recordSource interface {
	rowSource
	nextRecord() (body []byte, quoted [][]byte, line int64, err error)
}

// blockRowsPerWorker is the fewest rows worth a goroutine of their own.
const blockRowsPerWorker = 512

type csvBlock struct {
	width   int   // fields a record
	colOf   []int // per record field: the chosen column it fills, or -1
	kinds   []arrow.Type
	types   []arrow.DataType
	workers int

	data []byte // the records' bytes, end to end
	recs []blockRecord
	cols []blockColumn
}

type blockRecord struct {
	start, end int      // the record in data, where fields is nil
	fields     [][]byte // a quoted record's fields, split by encoding/csv
	line       int64
}

type blockColumn struct {
	vals, valid *memory.Buffer
	v, bits     []byte    // their bytes
	f32         []float32 // v, for a float32 column
	f64         []float64 // v, for a float64 column
}

// newCSVBlock returns the block parser for these columns (cols: each chosen column's field index),
// or nil where a column is not fixed-width.
func newCSVBlock(width int, cols []int, types []arrow.DataType) *csvBlock {
	b := &csvBlock{width: width, colOf: make([]int, width), types: types, workers: runtime.GOMAXPROCS(0)}
	for i := range b.colOf {
		b.colOf[i] = -1
	}
	for i, c := range cols {
		switch types[i].ID() {
		case arrow.BOOL, arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16,
			arrow.UINT32, arrow.UINT64, arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		default:
			return nil
		}
		b.colOf[c] = i
		b.kinds = append(b.kinds, types[i].ID())
	}
	return b
}

func (b *csvBlock) reset() {
	b.data, b.recs = b.data[:0], b.recs[:0]
}

// add copies a record from recordSource.nextRecord into the block.
func (b *csvBlock) add(body []byte, quoted [][]byte, line int64) {
	if quoted != nil {
		b.recs = append(b.recs, blockRecord{fields: slices.Clone(quoted), line: line})
		return
	}
	start := len(b.data)
	b.data = append(b.data, body...)
	b.recs = append(b.recs, blockRecord{start: start, end: len(b.data), line: line})
}

// addCells adds a row read as cells (a CSV row's are strings) into the block.
func (b *csvBlock) addCells(cells []any, line int64) {
	fields := make([][]byte, len(cells))
	for i, c := range cells {
		s, _ := c.(string)
		fields[i] = []byte(s)
	}
	b.recs = append(b.recs, blockRecord{fields: fields, line: line})
}

// parse parses the block's records into arrays, one per chosen column; on a refusal it returns the
// record and chosen column (-1: the record itself) of the first.
func (b *csvBlock) parse(alloc memory.Allocator) (arrs []arrow.Array, rec, col int, err error) {
	n := len(b.recs)
	b.cols = b.cols[:0]
	for _, t := range b.types {
		var c blockColumn
		c.vals = memory.NewResizableBuffer(alloc)
		if t.ID() == arrow.BOOL {
			c.vals.Resize(int(bitutil.BytesForBits(int64(n))))
		} else {
			c.vals.Resize(n * t.(arrow.FixedWidthDataType).Bytes())
		}
		c.valid = memory.NewResizableBuffer(alloc)
		c.valid.Resize(int(bitutil.BytesForBits(int64(n))))
		c.v, c.bits = c.vals.Bytes(), c.valid.Bytes()
		switch t.ID() {
		case arrow.BOOL:
			clear(c.v) // an allocator need not zero, and only true bits are set
		case arrow.FLOAT32:
			c.f32 = view[float32](c.v)
		case arrow.FLOAT64:
			c.f64 = view[float64](c.v)
		}
		for i := range c.bits {
			c.bits[i] = 0xff
		}
		b.cols = append(b.cols, c)
	}
	defer func() {
		for _, c := range b.cols {
			c.vals.Release()
			c.valid.Release()
		}
	}()

	// Runs of whole bytes of the validity bitmaps (multiples of 8 rows), so no two goroutines write
	// one byte.
	workers := max(1, min(b.workers, n/blockRowsPerWorker))
	per := (n + workers - 1) / workers
	per = (per + 7) &^ 7
	type failure struct {
		rec, col int
		err      error
	}
	failures := make([]failure, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := min(w*per, n), min((w+1)*per, n)
		if w == workers-1 {
			failures[w].rec, failures[w].col, failures[w].err = b.parseRecords(lo, hi)
			break
		}
		wg.Go(func() {
			failures[w].rec, failures[w].col, failures[w].err = b.parseRecords(lo, hi)
		})
	}
	wg.Wait()
	for _, f := range failures {
		if f.err != nil {
			return nil, f.rec, f.col, f.err
		}
	}
	arrs = make([]arrow.Array, len(b.cols))
	for i, c := range b.cols {
		nulls := n - bitutil.CountSetBits(c.bits, 0, n)
		valid := c.valid
		if nulls == 0 {
			valid = nil
		}
		data := array.NewData(b.types[i], n, []*memory.Buffer{valid, c.vals}, nil, nulls, 0)
		arrs[i] = array.MakeFromData(data)
		data.Release()
	}
	return arrs, 0, 0, nil
}

// parseRecords parses records lo..hi-1 into the columns; on a refusal it returns its record and
// chosen column (-1: the record itself).
func (b *csvBlock) parseRecords(lo, hi int) (int, int, error) {
	for r := lo; r < hi; r++ {
		rec := &b.recs[r]
		if rec.fields != nil {
			for j, f := range rec.fields {
				if c := b.colOf[j]; c >= 0 {
					if err := b.setField(c, r, f); err != nil {
						return r, c, err
					}
				}
			}
			continue
		}
		body := b.data[rec.start:rec.end]
		if bytes.Count(body, []byte{','})+1 != b.width {
			return r, -1, csv.ErrFieldCount
		}
		pos := 0
		for j := range b.width {
			c := b.colOf[j]
			if c < 0 {
				if i := bytes.IndexByte(body[pos:], ','); i >= 0 {
					pos += i + 1
				} else {
					pos = len(body)
				}
				continue
			}
			end, err := b.parseAt(c, r, body, pos)
			if err != nil {
				return r, c, err
			}
			pos = end + 1
		}
	}
	return 0, 0, nil
}

// parseAt parses the field at body[pos:] into column c, row r, and returns where the field ends.
func (b *csvBlock) parseAt(c, r int, body []byte, pos int) (int, error) {
	if k := b.kinds[c]; k == arrow.FLOAT32 || k == arrow.FLOAT64 {
		// Where the number ends is where the field must: else (an empty field, a long mantissa,
		// something else after it) the whole field goes the general way.
		mant, exp, neg, n, ok := decimalPrefix(body[pos:])
		if end := pos + n; ok && (end == len(body) || body[end] == ',') {
			if f, ok := float64FromDecimal(mant, exp, neg); ok {
				if k == arrow.FLOAT64 {
					b.cols[c].f64[r] = f
					return end, nil
				}
				if v, ok := float32FromFloat64(f); ok {
					b.cols[c].f32[r] = v
					return end, nil
				}
			}
		}
	}
	end := len(body)
	if i := bytes.IndexByte(body[pos:], ','); i >= 0 {
		end = pos + i
	}
	return end, b.setField(c, r, body[pos:end])
}

// setField parses field f into column c, row r, as colBuilder.appendField would append it.
func (b *csvBlock) setField(c, r int, f []byte) error {
	col := &b.cols[c]
	if len(f) == 0 {
		bitutil.ClearBit(col.bits, r)
		if size := len(col.v) / len(b.recs); b.kinds[c] != arrow.BOOL {
			clear(col.v[r*size : (r+1)*size]) // a null's value is 0, as a builder leaves it
		}
		return nil
	}
	// No copy: the string lives only through the parse (strconv's error, which holds it, is dropped below).
	s := unsafe.String(unsafe.SliceData(f), len(f))
	var err error
	switch b.kinds[c] {
	case arrow.FLOAT32:
		view[float32](col.v)[r], err = parseFloat32(f)
	case arrow.FLOAT64:
		view[float64](col.v)[r], err = parseFloat64(f)
	case arrow.FLOAT16:
		var v float64
		if v, err = strconv.ParseFloat(s, 32); err == nil {
			view[uint16](col.v)[r] = float16.New(float32(v)).Uint16()
		}
	case arrow.BOOL:
		var v bool
		if v, err = strconv.ParseBool(s); err == nil && v {
			bitutil.SetBit(col.v, r)
		}
	case arrow.INT8:
		view[int8](col.v)[r], err = parseInt[int8](s)
	case arrow.INT16:
		view[int16](col.v)[r], err = parseInt[int16](s)
	case arrow.INT32:
		view[int32](col.v)[r], err = parseInt[int32](s)
	case arrow.INT64:
		view[int64](col.v)[r], err = parseInt[int64](s)
	case arrow.UINT8:
		view[uint8](col.v)[r], err = parseUint[uint8](s)
	case arrow.UINT16:
		view[uint16](col.v)[r], err = parseUint[uint16](s)
	case arrow.UINT32:
		view[uint32](col.v)[r], err = parseUint[uint32](s)
	case arrow.UINT64:
		view[uint64](col.v)[r], err = parseUint[uint64](s)
	}
	if err != nil {
		return fmt.Errorf("%q does not parse as %s", f, b.types[c])
	}
	return nil
}

func parseInt[T int8 | int16 | int32 | int64](s string) (T, error) {
	v, err := strconv.ParseInt(s, 10, int(unsafe.Sizeof(T(0)))*8)
	return T(v), err
}

func parseUint[T uint8 | uint16 | uint32 | uint64](s string) (T, error) {
	v, err := strconv.ParseUint(s, 10, int(unsafe.Sizeof(T(0)))*8)
	return T(v), err
}
