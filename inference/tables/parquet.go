package tables

import (
	"context"
	"io"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func init() { RegisterFormat("parquet", []string{".parquet", ".parq"}, openParquet) }

// parquetReader reads the chosen columns of a Parquet file one row group at a time, page by page
// (BufferedStreamEnabled), so that memory holds one batch of the chosen columns and a page of each,
// never a whole column chunk or row group, and never a column that was not chosen.
type parquetReader struct {
	name   string
	pf     *file.Reader
	fr     *pqarrow.FileReader
	leaves []int // parquet leaf column indices of the chosen columns
	perm   []int // perm[i] = index in pqarrow's (file-ordered) record of the i-th chosen column
	schema *arrow.Schema
	starts []int64
	start  int64 // Options.StartRow

	rg  int // row group of rr
	rr  pqarrow.RecordReader
	row int64 // table row number of rr's next row
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
	var leaves []int
	for j := 0; j < sc.NumColumns(); j++ {
		if slices.Contains(opts.Columns, sc.Column(j).ColumnPath()[0]) || opts.Columns == nil {
			leaves = append(leaves, j)
		}
	}
	// pqarrow returns the fields in file order; the records carry them in the chosen order.
	sorted := slices.Clone(chosen)
	slices.Sort(sorted)
	fields := make([]arrow.Field, len(chosen))
	perm := make([]int, len(chosen))
	for i, c := range chosen {
		fields[i] = full.Field(c)
		perm[i] = slices.Index(sorted, c)
	}
	md := pf.MetaData()
	starts := make([]int64, md.NumRowGroups())
	var total int64
	for g := range starts {
		starts[g] = total
		total += md.RowGroup(g).NumRows()
	}
	p := &parquetReader{
		name: name, pf: pf, fr: fr, leaves: leaves, perm: perm,
		schema: arrow.NewSchema(fields, nil), starts: starts, start: opts.StartRow,
	}
	// Resume: begin at the row group holding StartRow; Next drops the rows before it in that group.
	p.rg = len(starts)
	for g := range starts {
		if g+1 == len(starts) || starts[g+1] > opts.StartRow {
			p.rg = g
			break
		}
	}
	if opts.StartRow >= total {
		p.rg = len(starts)
	}
	if p.rg < len(starts) {
		p.row = starts[p.rg]
	}
	return p, nil
}

func (p *parquetReader) Schema() *arrow.Schema   { return p.schema }
func (p *parquetReader) NumRows() int64          { return p.pf.NumRows() }
func (p *parquetReader) RowGroupStarts() []int64 { return slices.Clone(p.starts) }

func (p *parquetReader) Next() (Batch, error) {
	for {
		if p.rr == nil {
			if p.rg >= len(p.starts) {
				return Batch{}, io.EOF
			}
			rr, err := p.fr.GetRecordReader(context.Background(), p.leaves, []int{p.rg})
			if err != nil {
				return Batch{}, badf("%s: row group %d: %v", p.name, p.rg, err)
			}
			p.rr = rr
			p.row = p.starts[p.rg]
		}
		if !p.rr.Next() {
			err := p.rr.Err()
			p.rr.Release()
			p.rr = nil
			if err != nil && err != io.EOF {
				return Batch{}, badf("%s: row group %d: %v", p.name, p.rg, err)
			}
			p.rg++
			continue
		}
		rec := p.rr.RecordBatch()
		n := rec.NumRows()
		first := p.row
		p.row += n
		if p.row <= p.start {
			continue // wholly before the resume row
		}
		cols := make([]arrow.Array, len(p.perm))
		for i, j := range p.perm {
			cols[i] = rec.Column(j)
		}
		out := array.NewRecordBatch(p.schema, cols, n)
		if first < p.start {
			sliced := out.NewSlice(p.start-first, n)
			out.Release()
			out, first = sliced, p.start
		}
		return Batch{Rec: out, Row: first}, nil
	}
}

func (p *parquetReader) Close() error {
	if p.rr != nil {
		p.rr.Release()
		p.rr = nil
	}
	return p.pf.Close()
}
