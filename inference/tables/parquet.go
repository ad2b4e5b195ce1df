package tables

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func init() { RegisterFormat("parquet", []string{".parquet", ".parq"}, openParquet, planParquet) }

// planParquet cuts a Parquet file into row ranges at row-group starts (planRowGroups), reading only
// its footer.
func planParquet(r io.ReaderAt, size int64, name string, n int) ([]Range, error) {
	pf, err := file.NewParquetReader(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, badf("%s: not a readable Parquet file: %v", name, err)
	}
	defer pf.Close() //nolint:errcheck // read-only
	starts, total := rowGroupStarts(pf)
	return planRowGroups(starts, total, n), nil
}

// rowGroupStarts is the first row of each of pf's row groups, and its row count.
func rowGroupStarts(pf *file.Reader) ([]int64, int64) {
	md := pf.MetaData()
	starts := make([]int64, md.NumRowGroups())
	var total int64
	for g := range starts {
		starts[g] = total
		total += md.RowGroup(g).NumRows()
	}
	return starts, total
}

// parquetReader reads the chosen columns of a Parquet file one row group at a time, page by page
// (BufferedStreamEnabled), so that memory holds one batch of the chosen columns and a page of each,
// never a whole column chunk or row group, and never a column that was not chosen. Lists of numbers
// are read by listLeaf (parquetlist.go), everything else by pqarrow.
type parquetReader struct {
	name      string
	pf        *file.Reader
	fr        *pqarrow.FileReader
	alloc     memory.Allocator
	batchRows int64
	cols      []parquetColumn // the chosen columns, in the chosen order
	pqLeaves  []int           // parquet leaf column indices read through pqarrow
	schema    *arrow.Schema
	starts    []int64
	start     int64 // Options.StartRow, or the range's first row if later
	end       int64 // the range's end (Options.Range), or the table's
	rows      int64 // rows in the range, or the table's

	rg       int  // row group being read
	inGroup  bool // its readers are open
	rr       pqarrow.RecordReader
	groupRow int64 // rows of rg already read
	row      int64 // table row number of the next row
}

// parquetColumn is where a chosen column comes from: pqarrow's record (pqIndex) or its own list reader.
type parquetColumn struct {
	pqIndex int // index in pqarrow's (file-ordered) record, or -1
	leaf    int // the list column's parquet leaf
	typ     arrow.DataType
	list    listLeaf             // this row group's, while clean
	slow    pqarrow.RecordReader // pqarrow, for the rest of this row group once a batch was not clean
}

var (
	_ Reader    = (*parquetReader)(nil)
	_ RowGroups = (*parquetReader)(nil)
)

func openParquet(r io.ReaderAt, size int64, name string, opts Options) (Reader, error) {
	props := parquet.NewReaderProperties(opts.Alloc)
	props.BufferedStreamEnabled = true
	pf, err := file.NewParquetReader(io.NewSectionReader(r, 0, size), file.WithReadProps(props))
	if err != nil {
		return nil, badf("%s: not a readable Parquet file: %v", name, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(opts.BatchRows)}, opts.Alloc)
	if err != nil {
		_ = pf.Close() // already failing: the first error is the one to report
		return nil, badf("%s: Parquet schema: %v", name, err)
	}
	full, err := fr.Schema()
	if err != nil {
		_ = pf.Close() // already failing: the first error is the one to report
		return nil, badf("%s: Parquet schema: %v", name, err)
	}
	var have []string
	for _, f := range full.Fields() {
		have = append(have, f.Name)
	}
	chosen, err := pickColumns(name, have, opts.Columns)
	if err != nil {
		_ = pf.Close() // already failing: the first error is the one to report
		return nil, err
	}
	if len(chosen) == 0 {
		_ = pf.Close() // already failing: the first error is the one to report
		return nil, badf("%s: no columns chosen", name)
	}
	// A top-level field owns the leaves whose path starts with its name (a list has one leaf, a struct several).
	sc := pf.MetaData().Schema
	leavesOf := func(field string) []int {
		var leaves []int
		for j := 0; j < sc.NumColumns(); j++ {
			if sc.Column(j).ColumnPath()[0] == field {
				leaves = append(leaves, j)
			}
		}
		return leaves
	}
	// pqarrow returns the fields in file order; the records carry them in the chosen order.
	fields := make([]arrow.Field, len(chosen))
	cols := make([]parquetColumn, len(chosen))
	var viaPqarrow []int
	for i, c := range chosen {
		fields[i] = full.Field(c)
		cols[i] = parquetColumn{pqIndex: -1, typ: fields[i].Type}
		if leaves := leavesOf(fields[i].Name); len(leaves) == 1 && directListType(fields[i].Type, sc.Column(leaves[0])) {
			cols[i].leaf = leaves[0]
			continue
		}
		viaPqarrow = append(viaPqarrow, c)
	}
	var pqLeaves []int
	for j := 0; j < sc.NumColumns(); j++ {
		if owner := full.FieldIndices(sc.Column(j).ColumnPath()[0]); len(owner) > 0 && slices.Contains(viaPqarrow, owner[0]) {
			pqLeaves = append(pqLeaves, j)
		}
	}
	sorted := slices.Clone(viaPqarrow)
	slices.Sort(sorted)
	for i, c := range chosen {
		if k := slices.Index(sorted, c); k >= 0 {
			cols[i].pqIndex = k
		}
	}
	starts, total := rowGroupStarts(pf)
	p := &parquetReader{
		name: name, pf: pf, fr: fr, alloc: opts.Alloc, batchRows: int64(opts.BatchRows), cols: cols, pqLeaves: pqLeaves,
		schema: arrow.NewSchema(fields, nil), starts: starts, start: opts.StartRow, end: total, rows: total,
	}
	if rg := opts.Range; rg != nil {
		if rg.Unit != RangeRows || rg.From < 0 || rg.From > rg.To || rg.To > total {
			_ = pf.Close() // already failing: the first error is the one to report
			return nil, fmt.Errorf("%s: %s is not a range of its %d rows", name, rg, total)
		}
		// A range is read as a resume at its first row that stops at its end: only the row groups
		// holding its rows are read.
		p.start, p.end, p.rows = max(p.start, rg.From), rg.To, rg.To-rg.From
	}
	// Resume: begin at the row group holding the start row; Next drops the rows before it in that group.
	p.rg = len(starts)
	for g := range starts {
		if g+1 == len(starts) || starts[g+1] > p.start {
			p.rg = g
			break
		}
	}
	if p.start >= p.end {
		p.rg = len(starts)
	}
	if p.rg < len(starts) {
		p.row = starts[p.rg]
	}
	return p, nil
}

func (p *parquetReader) Schema() *arrow.Schema   { return p.schema }
func (p *parquetReader) NumRows() int64          { return p.rows }
func (p *parquetReader) RowGroupStarts() []int64 { return slices.Clone(p.starts) }

func (p *parquetReader) Next() (Batch, error) {
	for {
		if p.rg < len(p.starts) && p.row >= p.end {
			p.closeGroup()
			p.rg = len(p.starts) // past the range
		}
		if !p.inGroup {
			if p.rg >= len(p.starts) {
				return Batch{}, io.EOF
			}
			if err := p.openGroup(); err != nil {
				return Batch{}, badf("%s: row group %d: %v", p.name, p.rg, err)
			}
		}
		n := min(p.batchRows, p.pf.MetaData().RowGroup(p.rg).NumRows()-p.groupRow)
		var rec arrow.RecordBatch
		if p.rr != nil {
			if !p.rr.Next() {
				n = 0
				if err := p.rr.Err(); err != nil && err != io.EOF {
					return Batch{}, badf("%s: row group %d: %v", p.name, p.rg, err)
				}
			} else {
				rec = p.rr.RecordBatch()
				n = rec.NumRows()
			}
		}
		if n <= 0 {
			p.closeGroup()
			p.rg++
			continue
		}
		first := p.row
		p.row += n
		cols := make([]arrow.Array, len(p.cols))
		release := func() {
			for _, c := range cols {
				if c != nil {
					c.Release()
				}
			}
		}
		for i := range p.cols {
			c := &p.cols[i]
			if c.pqIndex >= 0 {
				cols[i] = rec.Column(c.pqIndex)
				cols[i].Retain()
				continue
			}
			arr, err := p.readList(c, n)
			if err != nil {
				release()
				return Batch{}, badf("%s: row group %d: %v", p.name, p.rg, err)
			}
			cols[i] = arr
		}
		p.groupRow += n
		if p.row <= p.start {
			release()
			continue // wholly before the resume row
		}
		out := array.NewRecordBatch(p.schema, cols, n)
		release()
		if first < p.start || first+n > p.end {
			lo, hi := max(p.start-first, 0), min(p.end-first, n)
			sliced := out.NewSlice(lo, hi)
			out.Release()
			out, first = sliced, first+lo
		}
		return Batch{Rec: out, Row: first}, nil
	}
}

// openGroup opens the readers of row group p.rg.
func (p *parquetReader) openGroup() error {
	p.groupRow, p.row = 0, p.starts[p.rg]
	if len(p.pqLeaves) > 0 {
		rr, err := p.fr.GetRecordReader(context.Background(), p.pqLeaves, []int{p.rg})
		if err != nil {
			return err
		}
		p.rr = rr
	}
	for i := range p.cols {
		c := &p.cols[i]
		if c.pqIndex >= 0 {
			continue
		}
		rg := p.pf.RowGroup(p.rg)
		cr, err := rg.Column(c.leaf)
		if err != nil {
			p.closeGroup()
			return err
		}
		// The chunk's levels a row sizes the first batch's values buffer, which else grows from
		// nothing by copies.
		perRow := 0
		if meta, err := rg.MetaData().ColumnChunk(c.leaf); err == nil && rg.NumRows() > 0 {
			perRow = int((meta.NumValues() + rg.NumRows() - 1) / rg.NumRows())
		}
		c.list = newListLeaf(c.typ, cr, p.alloc, perRow)
	}
	p.inGroup = true
	return nil
}

// readList reads the next n rows of a list column: through its listLeaf while the batches are clean,
// through pqarrow from the first batch that is not.
func (p *parquetReader) readList(c *parquetColumn, n int64) (arrow.Array, error) {
	if c.slow == nil {
		arr, err := c.list.read(int(n))
		if !errors.Is(err, errNotClean) {
			return arr, err
		}
		if err := c.list.close(); err != nil {
			return nil, err
		}
		c.list = nil
		rr, err := p.fr.GetRecordReader(context.Background(), []int{c.leaf}, []int{p.rg})
		if err != nil {
			return nil, err
		}
		c.slow = rr
		// pqarrow's batches start at the row group's first row, as this reader's do: skip to this one.
		for skipped := int64(0); skipped < p.groupRow; skipped += rr.RecordBatch().NumRows() {
			if !rr.Next() {
				return nil, fmt.Errorf("column %q ends at row %d of the row group: %w", c.typ, skipped, rr.Err())
			}
		}
	}
	if !c.slow.Next() {
		if err := c.slow.Err(); err != nil && err != io.EOF {
			return nil, err
		}
		return nil, fmt.Errorf("a list column ends at row %d of the row group", p.groupRow)
	}
	rec := c.slow.RecordBatch()
	if rec.NumRows() != n {
		return nil, fmt.Errorf("a list column has %d rows at row %d of the row group, the others %d", rec.NumRows(), p.groupRow, n)
	}
	arr := rec.Column(0)
	arr.Retain()
	return arr, nil
}

func (p *parquetReader) closeGroup() {
	if p.rr != nil {
		p.rr.Release()
		p.rr = nil
	}
	for i := range p.cols {
		c := &p.cols[i]
		if c.list != nil {
			_ = c.list.close() // read-only: nothing is lost
			c.list = nil
		}
		if c.slow != nil {
			c.slow.Release()
			c.slow = nil
		}
	}
	p.inGroup = false
}

func (p *parquetReader) Close() error {
	p.closeGroup()
	return p.pf.Close()
}
