// Package tables reads table inputs (Parquet, CSV, JSON Lines) as batches of arrow records and turns
// those rows into the typed tensors a model's inputs take (the feed). It is pure Go: no cgo, no ONNX Runtime.
//
// A caller goes through four steps, none of which switches on a format name:
//
//	cols := tables.NeededColumns(inputs, feed)            // plus the kept columns
//	r, err := tables.Open(ra, size, name, tables.Options{Columns: cols, Types: tables.TextTypes(inputs, feed)})
//	plan, err := tables.NewPlan(inputs, r.Schema(), feed)
//	for b, err := r.Next(); err == nil; b, err = r.Next() { tensors, err := plan.Fill(b, tensors); ... }
//
// Every error about the data (a missing column, a null, a cell that does not parse, a type the model
// cannot take) wraps ErrBadTable.
package tables

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/inferstack/inferstack/internal/nearest"
)

// ErrBadTable marks a table that cannot be read as the model's inputs. The engine wraps it as its
// "bad input" kind.
var ErrBadTable = errors.New("bad table")

// badf returns an error wrapping ErrBadTable whose text is the formatted message alone.
func badf(format string, args ...any) error {
	return &badError{msg: fmt.Sprintf(format, args...)}
}

type badError struct{ msg string }

func (e *badError) Error() string { return e.msg }
func (e *badError) Is(target error) bool {
	return target == ErrBadTable
}

// Options says what to read from a table.
type Options struct {
	// Format is a registered format name ("parquet", "csv", "jsonl"); empty picks it from the name's extension.
	Format string
	// Columns are the columns to read, in the order the records carry them; nil reads every column.
	Columns []string
	// Types fixes the element type of columns of text formats (CSV, JSON Lines): a cell must parse as it
	// (a JSON array as a list of it). Other columns are inferred. Parquet ignores it: its types are its own.
	Types map[string]arrow.DataType
	// BatchRows is the most rows a record holds (default 4096). Parquet records never span a row group.
	BatchRows int
	// StartRow is the first row to return (resume): Parquet starts at the row group holding it, text
	// formats read and drop the rows before it.
	StartRow int64
	// Range, when set, reads only that part of the table (a shard, as PlanRanges cuts them): NumRows,
	// CountRows and Next then see only its rows. Row numbers (StartRow, Batch.Row, errors) stay the
	// table's where the range is in rows; in a byte range, whose first row's number is unknown, they
	// count from the range's first row, and errors name the range.
	Range *Range
	// InferRows is how many rows of a text format decide the inferred column types (default 1000).
	InferRows int
	// Alloc allocates the records' buffers (default memory.DefaultAllocator).
	Alloc memory.Allocator

	// schema, for a text format, gives the columns and their types as they are: nothing is inferred
	// (a byte range's reader takes them from the top of its file, so that every range of a table
	// reads with the whole table's schema).
	schema *arrow.Schema
}

func (o Options) withDefaults() Options {
	if o.BatchRows <= 0 {
		o.BatchRows = 4096
	}
	if o.InferRows <= 0 {
		o.InferRows = 1000
	}
	if o.Alloc == nil {
		o.Alloc = memory.DefaultAllocator
	}
	return o
}

// Batch is a run of consecutive rows of a table.
type Batch struct {
	// Rec holds the rows, with the columns of Reader.Schema. The caller releases it.
	Rec arrow.RecordBatch
	// Row is the table row number of Rec's first row (row 0 is the first data row).
	Row int64
}

// Reader reads a table as batches of rows. Every input format implements it.
type Reader interface {
	// Schema is the schema of the records: the chosen columns, in the chosen order.
	Schema() *arrow.Schema
	// NumRows is the table's row count, or -1 where the format cannot say without reading it all
	// (CSV, JSON Lines).
	NumRows() int64
	// Next returns the next batch, or io.EOF after the last.
	Next() (Batch, error)
	// Close releases the reader's buffers; it does not close the underlying file.
	Close() error
}

// RowCounter is implemented by readers of formats that do not store their row count (NumRows is -1).
type RowCounter interface {
	// CountRows reads a reader no Next has read from to the table's end and returns its row count.
	// It checks the records (a malformed one is refused, naming its row and line) but not their
	// cells: a cell that does not parse is refused by the Next whose batch holds it.
	CountRows() (int64, error)
}

// RowGroups is implemented by readers whose tables come in independently readable groups of rows
// (Parquet row groups): a resumable job can cut its chunks at these row numbers.
type RowGroups interface {
	// RowGroupStarts is the first row number of every group, ascending, starting at 0.
	RowGroupStarts() []int64
}

// OpenFunc opens a table of one format. Options come with defaults filled in.
type OpenFunc func(r io.ReaderAt, size int64, name string, opts Options) (Reader, error)

type format struct {
	name string
	exts []string
	open OpenFunc
	plan PlanFunc
}

var (
	formatsMu sync.RWMutex
	formats   []format
)

// RegisterFormat makes a format known to Open and PlanRanges by name and by file extensions (with
// their dot, e.g. ".csv", ".csv.gz"). The longest matching extension wins. open must honour
// Options.Range in the unit plan cuts.
func RegisterFormat(name string, exts []string, open OpenFunc, plan PlanFunc) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	formats = append(formats, format{name: name, exts: exts, open: open, plan: plan})
}

// FormatOf returns the registered format for a file name from its extension, or "" if none matches.
func FormatOf(name string) string {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	lower := strings.ToLower(name)
	best, bestLen := "", 0
	for _, f := range formats {
		for _, e := range f.exts {
			if strings.HasSuffix(lower, e) && len(e) > bestLen {
				best, bestLen = f.name, len(e)
			}
		}
	}
	return best
}

// Formats lists the registered format names, sorted.
func Formats() []string {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	var names []string
	for _, f := range formats {
		names = append(names, f.name)
	}
	sort.Strings(names)
	return names
}

// Open opens the table in r (size bytes, called name in messages) in opts.Format or the format its
// name's extension says.
func Open(r io.ReaderAt, size int64, name string, opts Options) (Reader, error) {
	f, err := lookup(name, opts.Format)
	if err != nil {
		return nil, err
	}
	if opts.StartRow < 0 {
		return nil, fmt.Errorf("%s: start row %d is negative", name, opts.StartRow)
	}
	return f.open(r, size, name, opts.withDefaults())
}

// lookup returns the registered format called fname, or else the one name's extension says.
func lookup(name, fname string) (format, error) {
	if fname == "" {
		fname = FormatOf(name)
		if fname == "" {
			return format{}, badf("%s: no table format for this extension (known: %s)", name, strings.Join(Formats(), ", "))
		}
	}
	formatsMu.RLock()
	for _, f := range formats {
		if f.name == fname {
			formatsMu.RUnlock()
			return f, nil
		}
	}
	formatsMu.RUnlock()
	return format{}, badf("%s: unknown table format %q (known: %s)", name, fname, strings.Join(Formats(), ", "))
}

// missingColumn is the error for a column the table lacks, naming the nearest column names.
func missingColumn(file, col string, have []string) error {
	near := nearest.Names(col, have, 3)
	if len(near) == 0 {
		return badf("%s: no column %q (the table has none)", file, col)
	}
	return badf("%s: no column %q (nearest: %s)", file, col, strings.Join(near, ", "))
}

// pickColumns resolves wanted column names against a table's column names: the indices in the order
// wanted (all columns for nil), or a missingColumn error. A name wanted twice is read once.
func pickColumns(file string, have, want []string) ([]int, error) {
	if want == nil {
		idx := make([]int, len(have))
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	var idx []int
	for _, w := range want {
		i := slices.Index(have, w)
		if i < 0 {
			return nil, missingColumn(file, w, have)
		}
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	return idx, nil
}
