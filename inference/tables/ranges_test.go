package tables

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"
)

// recordingReaderAt records the byte spans read through it.
type recordingReaderAt struct {
	r     io.ReaderAt
	mu    sync.Mutex
	spans [][2]int64
}

func (c *recordingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	if n > 0 {
		c.mu.Lock()
		c.spans = append(c.spans, [2]int64{off, off + int64(n)})
		c.mu.Unlock()
	}
	return n, err
}

// within asserts that every span read lies inside one of allowed.
func (c *recordingReaderAt) within(t *testing.T, allowed ...[2]int64) {
	t.Helper()
	require.NotEmpty(t, c.spans)
	for _, s := range c.spans {
		ok := false
		for _, a := range allowed {
			ok = ok || (s[0] >= a[0] && s[1] <= a[1])
		}
		require.True(t, ok, "read bytes %d-%d, outside %v", s[0], s[1], allowed)
	}
}

// rowsOf reads every row of r as text, one string a row.
func rowsOf(t *testing.T, r Reader) []string {
	t.Helper()
	var rows []string
	for _, b := range readAll(t, r) {
		for i := range int(b.Rec.NumRows()) {
			var cells []string
			for _, c := range b.Rec.Columns() {
				cells = append(cells, c.ValueStr(i))
			}
			rows = append(rows, strings.Join(cells, "|"))
		}
	}
	return rows
}

// shardRows reads each range of the table through Open and returns their rows end to end.
func shardRows(t *testing.T, data []byte, name string, ranges []Range, opts Options) []string {
	t.Helper()
	var rows []string
	for _, rg := range ranges {
		o := opts
		o.Range = &rg
		r, err := Open(bytes.NewReader(data), int64(len(data)), name, o)
		require.NoError(t, err, "open %s", rg)
		got := rowsOf(t, r)
		if n := r.NumRows(); n >= 0 {
			require.Equal(t, int64(len(got)), n, "NumRows of %s", rg)
		} else {
			r2, err := Open(bytes.NewReader(data), int64(len(data)), name, o)
			require.NoError(t, err)
			n, err := r2.(RowCounter).CountRows()
			require.NoError(t, err)
			require.Equal(t, int64(len(got)), n, "CountRows of %s", rg)
			r2.Close()
		}
		r.Close()
		rows = append(rows, got...)
	}
	return rows
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func bytesRanges(cuts ...int64) []Range {
	var rs []Range
	for i := 0; i+1 < len(cuts); i++ {
		rs = append(rs, Range{Unit: RangeBytes, From: cuts[i], To: cuts[i+1]})
	}
	return rs
}

func rowsRanges(cuts ...int64) []Range {
	var rs []Range
	for i := 0; i+1 < len(cuts); i++ {
		rs = append(rs, Range{Unit: RangeRows, From: cuts[i], To: cuts[i+1]})
	}
	return rs
}

// Text tables are cut at line starts by Hadoop's rule, each cut where the first '\n' at or after
// k*size/n ends; reading each range gives every row once, in order.
func TestPlanTextRanges(t *testing.T) {
	t.Parallel()
	// Bytes:        0-3 header ('\n' at 3), then rows of 5 bytes: 4-8, 9-13, 14-18, 19-23.
	const csv = "a,b\n10,1\n20,2\n30,3\n40,4\n"
	const noEOL = "a,b\n10,1\n20,2\n30,3\n40,4"
	// 0-4 header ('\r' at 3), rows of 6 bytes ('\r' at 9, '\n' at 10; ...): 5-10, 11-16, 17-22, 23-28.
	const crlf = "a,b\r\n10,1\r\n20,2\r\n30,3\r\n40,4\r\n"
	// 0-2 a blank line and a CRLF blank line, header 3-6, rows 7-11, 12-16.
	const blankFirst = "\n\r\na,b\n10,1\n20,2\n"
	// Lines of 8 bytes: 0-7, 8-15, 16-23, 24-31.
	const jsonl = "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n"
	for _, c := range []struct {
		name, file, data string
		n                int
		want             []Range
	}{
		{"one shard is the whole file", "t.csv", csv, 1, bytesRanges(0, 24)},
		{"n=0 is one shard", "t.csv", csv, 0, bytesRanges(0, 24)},
		{"cut inside a line", "t.csv", csv, 2, bytesRanges(4, 14, 24)},                  // 12 is in 9-13
		{"cut on a newline", "t.csv", csv, 3, bytesRanges(4, 9, 19, 24)},                // 8 is '\n'; 16 in 14-18
		{"cut on a newline and inside", "t.csv", csv, 4, bytesRanges(4, 9, 14, 19, 24)}, // 6, 12, 18 ('\n')
		// n=8 cuts at 3 (the header's '\n': no rows before), 6, 9 (just after a '\n': that line is
		// the shard before's), 12, 15, 18, 21 (in the last line: nothing after it).
		{"cut just after a newline, in the header and in the last line", "t.csv", csv, 8, bytesRanges(4, 9, 14, 19, 24)},
		{"more shards than lines", "t.csv", csv, 100, bytesRanges(4, 9, 14, 19, 24)},
		{"no trailing newline", "t.csv", noEOL, 2, bytesRanges(4, 14, 23)},                       // 11 in 9-13
		{"cut in a last line without newline", "t.csv", noEOL, 8, bytesRanges(4, 9, 14, 19, 23)}, // ..., 14 at a line start, 20 in the last line
		{"CRLF, cut on a \\r", "t.csv", crlf, 3, bytesRanges(5, 11, 23, 29)},                     // 9 is '\r', 19 in 17-22
		{"blank lines before the header", "t.csv", blankFirst, 2, bytesRanges(7, 12, 17)},
		{"header only", "t.csv", "a,b\n", 3, bytesRanges(0, 4)},
		{"JSON Lines", "t.jsonl", jsonl, 2, bytesRanges(0, 24, 32)}, // 16 is a line start: that line is shard 0's
		{"JSON Lines, 4", "t.jsonl", jsonl, 4, bytesRanges(0, 16, 24, 32)},
		{"JSON Lines with blank lines", "t.jsonl", "\n{\"a\":1}\n\n{\"a\":2}\n", 2, bytesRanges(0, 10, 18)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(c.data)
			got, err := PlanRanges(bytes.NewReader(data), int64(len(data)), c.file, "", c.n)
			require.NoError(t, err)
			require.Equal(t, c.want, got)
			whole, err := Open(bytes.NewReader(data), int64(len(data)), c.file, Options{})
			require.NoError(t, err)
			defer whole.Close()
			require.Equal(t, rowsOf(t, whole), shardRows(t, data, c.file, got, Options{}), "every row once, in order")
		})
	}
}

// A generated table of every shape the cuts can meet (CRLF or not, a trailing newline or not, lines
// of varied lengths) splits by the rule into ranges that read, together, as the whole table, for
// every n; a gzipped one is one range.
func TestTextRangesReadEveryRowOnce(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"csv", "jsonl"} {
		for _, eol := range []string{"\n", "\r\n"} {
			for _, trailing := range []bool{true, false} {
				var sb strings.Builder
				if format == "csv" {
					sb.WriteString("id,x,name" + eol)
				}
				const rows = 300
				for i := range rows {
					if format == "csv" {
						fmt.Fprintf(&sb, "%d,%g,%s", i, float64(i)/7, strings.Repeat("n", i%13))
					} else {
						fmt.Fprintf(&sb, `{"id":%d,"x":%g,"name":"%s"}`, i, float64(i)/7, strings.Repeat("n", i%13))
					}
					if trailing || i < rows-1 {
						sb.WriteString(eol)
					}
				}
				data := []byte(sb.String())
				name := fmt.Sprintf("t.%s", format)
				t.Run(fmt.Sprintf("%s %q trailing=%v", format, eol, trailing), func(t *testing.T) {
					t.Parallel()
					whole, err := Open(bytes.NewReader(data), int64(len(data)), name, Options{BatchRows: 37})
					require.NoError(t, err)
					defer whole.Close()
					want := rowsOf(t, whole)
					require.Len(t, want, rows)
					for _, n := range []int{1, 2, 3, 7, 16, 64} {
						got, err := PlanRanges(bytes.NewReader(data), int64(len(data)), name, "", n)
						require.NoError(t, err)
						require.LessOrEqual(t, len(got), n)
						if n > 1 {
							for k := 1; k < len(got); k++ {
								require.Equal(t, got[k-1].To, got[k].From, "ranges meet")
								require.Equal(t, byte('\n'), data[got[k].From-1], "range %d starts a line", k)
							}
							// Each cut is where Hadoop's rule puts one: just after the first '\n' at or after some k*size/n.
							var cuts []int64
							for k := 1; k < n; k++ {
								if i := bytes.IndexByte(data[int64(len(data))*int64(k)/int64(n):], '\n'); i >= 0 {
									cuts = append(cuts, int64(len(data))*int64(k)/int64(n)+int64(i)+1)
								}
							}
							for _, rg := range got[1:] {
								require.Contains(t, cuts, rg.From)
							}
						}
						require.Equal(t, want, shardRows(t, data, name, got, Options{BatchRows: 37}), "n=%d: every row once, in order", n)
					}
					gz := gzipped(t, data)
					got, err := PlanRanges(bytes.NewReader(gz), int64(len(gz)), name+".gz", "", 4)
					require.NoError(t, err)
					require.Equal(t, bytesRanges(0, int64(len(gz))), got, "gzip: one range")
					require.Equal(t, want, shardRows(t, gz, name+".gz", got, Options{}))
				})
			}
		}
	}
}

// Row groups are cut at the group start nearest each k/n of the rows; never more ranges than groups.
func TestPlanRowGroups(t *testing.T) {
	t.Parallel()
	starts, total := []int64{0, 300, 350, 1050, 1060}, int64(1260) // groups of 300, 50, 700, 10, 200 rows
	for _, c := range []struct {
		n    int
		want []Range
	}{
		{1, rowsRanges(0, 1260)},
		{2, rowsRanges(0, 350, 1260)},                  // 630: 350 is nearer than 1050
		{3, rowsRanges(0, 350, 1050, 1260)},            // 420, 840
		{5, rowsRanges(0, 300, 350, 1050, 1260)},       // 252, 504, 756, 1008 (1050 again)
		{8, rowsRanges(0, 300, 350, 1050, 1060, 1260)}, // as many as groups
		{100, rowsRanges(0, 300, 350, 1050, 1060, 1260)},
	} {
		require.Equal(t, c.want, planRowGroups(starts, total, c.n), "n=%d", c.n)
	}
	require.Equal(t, rowsRanges(0, 10, 20), planRowGroups([]int64{0, 0, 10, 10, 20}, 20, 4), "empty groups give no range")
	require.Equal(t, rowsRanges(0, 0), planRowGroups(nil, 0, 3), "an empty table is one empty range")
}

// writeGroups writes a Parquet table (an int64 "id" counting rows from 0, a string "name") in row
// groups of the given sizes.
func writeGroups(t *testing.T, sizes ...int) []byte {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String},
	}, nil)
	var buf bytes.Buffer
	fw, err := pqarrow.NewFileWriter(schema, &buf, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(1<<20)), pqarrow.DefaultWriterProps())
	require.NoError(t, err)
	id := 0
	for _, n := range sizes {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for range n {
			b.Field(0).(*array.Int64Builder).Append(int64(id))
			b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("row %d", id))
			id++
		}
		rec := b.NewRecordBatch()
		require.NoError(t, fw.Write(rec)) // one row group a Write
		rec.Release()
		b.Release()
	}
	require.NoError(t, fw.Close())
	return buf.Bytes()
}

// Parquet is cut at row-group starts read from its footer; each range reads its rows only, every
// row once, numbered as the table numbers them, and reads nothing but the footer and its groups.
func TestParquetRanges(t *testing.T) {
	t.Parallel()
	data := writeGroups(t, 300, 50, 700, 10, 200)
	whole, err := Open(bytes.NewReader(data), int64(len(data)), "t.parquet", Options{})
	require.NoError(t, err)
	defer whole.Close()
	require.Equal(t, []int64{0, 300, 350, 1050, 1060}, whole.(RowGroups).RowGroupStarts())
	want := rowsOf(t, whole)
	for _, n := range []int{1, 2, 3, 5, 8} {
		rec := &recordingReaderAt{r: bytes.NewReader(data)}
		got, err := PlanRanges(rec, int64(len(data)), "t.parquet", "", n)
		require.NoError(t, err)
		require.Equal(t, planRowGroups([]int64{0, 300, 350, 1050, 1060}, 1260, n), got)
		footer := footerSpan(t, data)
		rec.within(t, footer)
		require.Equal(t, want, shardRows(t, data, "t.parquet", got, Options{BatchRows: 64}), "n=%d: every row once, in order", n)
	}

	// The range of the third group reads the footer and that group's column chunks, nothing else.
	rec := &recordingReaderAt{r: bytes.NewReader(data)}
	r, err := Open(rec, int64(len(data)), "t.parquet", Options{Range: &Range{Unit: RangeRows, From: 350, To: 1050}, BatchRows: 64})
	require.NoError(t, err)
	defer r.Close()
	batches := readAll(t, r)
	require.Equal(t, int64(350), batches[0].Row, "rows numbered as the table numbers them")
	require.Equal(t, want[350:1050], rowsOf(t, &replay{batches: batches}))
	rec.within(t, footerSpan(t, data), groupSpan(t, data, 2))

	// A resume inside a range starts there and still stops at its end.
	r2, err := Open(bytes.NewReader(data), int64(len(data)), "t.parquet", Options{Range: &Range{Unit: RangeRows, From: 300, To: 1055}, StartRow: 1000})
	require.NoError(t, err)
	defer r2.Close()
	require.Equal(t, int64(755), r2.NumRows())
	require.Equal(t, want[1000:1055], rowsOf(t, r2))

	_, err = Open(bytes.NewReader(data), int64(len(data)), "t.parquet", Options{Range: &Range{Unit: RangeRows, From: 0, To: 1261}})
	require.ErrorContains(t, err, "not a range of its 1260 rows")
	_, err = Open(bytes.NewReader(data), int64(len(data)), "t.parquet", Options{Range: &Range{Unit: RangeBytes, From: 0, To: 10}})
	require.ErrorContains(t, err, "not a range")
}

// replay is a Reader of batches already read.
type replay struct{ batches []Batch }

func (r *replay) Schema() *arrow.Schema { return r.batches[0].Rec.Schema() }
func (r *replay) NumRows() int64        { return -1 }
func (r *replay) Close() error          { return nil }
func (r *replay) Next() (Batch, error) {
	if len(r.batches) == 0 {
		return Batch{}, io.EOF
	}
	b := r.batches[0]
	b.Rec.Retain()
	r.batches = r.batches[1:]
	return b, nil
}

// footerSpan is a Parquet file's footer: its metadata, length and magic.
func footerSpan(t *testing.T, data []byte) [2]int64 {
	t.Helper()
	n := int64(binary.LittleEndian.Uint32(data[len(data)-8:]))
	return [2]int64{int64(len(data)) - 8 - n, int64(len(data))}
}

// groupSpan is the bytes of row group g's column chunks.
func groupSpan(t *testing.T, data []byte, g int) [2]int64 {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	require.NoError(t, err)
	defer pf.Close()
	rg := pf.MetaData().RowGroup(g)
	lo, hi := int64(len(data)), int64(0)
	for c := range rg.NumColumns() {
		cc, err := rg.ColumnChunk(c)
		require.NoError(t, err)
		start := cc.DataPageOffset()
		if cc.HasDictionaryPage() && cc.DictionaryPageOffset() < start {
			start = cc.DictionaryPageOffset()
		}
		lo, hi = min(lo, start), max(hi, start+cc.TotalCompressedSize())
	}
	return [2]int64{lo, hi}
}

// A CSV range reads the header and its own bytes: nothing of the other ranges.
func TestCSVRangeReadsOnlyItsBytes(t *testing.T) {
	t.Parallel()
	var sb strings.Builder
	sb.WriteString("id,x\n")
	for i := range 40000 {
		fmt.Fprintf(&sb, "%d,%g\n", i, float64(i)/3)
	}
	data := []byte(sb.String())
	ranges, err := PlanRanges(bytes.NewReader(data), int64(len(data)), "t.csv", "", 4)
	require.NoError(t, err)
	require.Len(t, ranges, 4)
	types := map[string]arrow.DataType{"id": arrow.PrimitiveTypes.Int64, "x": arrow.PrimitiveTypes.Float64}
	for k, rg := range ranges {
		rec := &recordingReaderAt{r: bytes.NewReader(data)}
		r, err := Open(rec, int64(len(data)), "t.csv", Options{Types: types, Range: &rg})
		require.NoError(t, err)
		rows := rowsOf(t, r)
		r.Close()
		require.NotEmpty(t, rows)
		// The header's end is found by reading scanChunk bytes from the top; the range's first and
		// last bytes' neighbours are checked to be line ends.
		rec.within(t, [2]int64{0, scanChunk}, [2]int64{rg.From - 1, rg.To})
		require.Less(t, int64(scanChunk), ranges[1].From, "range %d: the header's chunk is not the range", k)
	}
}

// A range whose end cuts a quoted field (a CSV with line breaks in quoted fields) is refused,
// saying why; a range not cut at a line start is refused; a gzipped file is not read in part.
func TestTextRangeRefusals(t *testing.T) {
	t.Parallel()
	quoted := []byte("id,note\n1,\"two\nlines\"\n2,plain\n")
	_, err := readRange(t, quoted, "q.csv", Range{Unit: RangeBytes, From: 8, To: 15}) // ends after "1,\"two\n"
	require.ErrorIs(t, err, ErrBadTable)
	require.ErrorContains(t, err, `q.csv: bytes 8-15, row 0 (line 1 of those bytes)`)
	require.ErrorContains(t, err, "line breaks inside quoted fields")
	rows, err := readRange(t, quoted, "q.csv", Range{Unit: RangeBytes, From: 0, To: int64(len(quoted))})
	require.NoError(t, err, "the whole file reads")
	require.Len(t, rows, 2)

	csv := []byte("a,b\n10,1\n20,2\n")
	_, err = readRange(t, csv, "t.csv", Range{Unit: RangeBytes, From: 6, To: 14})
	require.ErrorContains(t, err, "not cut at line starts (byte 6")
	_, err = readRange(t, csv, "t.csv", Range{Unit: RangeBytes, From: 4, To: 12})
	require.ErrorContains(t, err, "not cut at line starts (byte 12")
	_, err = readRange(t, csv, "t.csv", Range{Unit: RangeRows, From: 0, To: 1})
	require.ErrorContains(t, err, "read in byte ranges, not rows")
	gz := gzipped(t, csv)
	_, err = readRange(t, gz, "t.csv.gz", Range{Unit: RangeBytes, From: 0, To: 4})
	require.ErrorContains(t, err, "gzipped table cannot be read in part")

	// A bad cell in a later range names the file, the range, the row and line in it, and the column.
	_, err = readRange(t, []byte("a,b\n10,1\n20,x\n"), "t.csv", Range{Unit: RangeBytes, From: 9, To: 14}, map[string]arrow.DataType{"b": arrow.PrimitiveTypes.Int64})
	require.ErrorIs(t, err, ErrBadTable)
	require.EqualError(t, err, `t.csv: bytes 9-14, row 0 (line 1 of those bytes), column "b": "x" does not parse as int64`)
}

func readRange(t *testing.T, data []byte, name string, rg Range, types ...map[string]arrow.DataType) ([]string, error) {
	t.Helper()
	opts := Options{Range: &rg}
	if len(types) > 0 {
		opts.Types = types[0]
	}
	r, err := Open(bytes.NewReader(data), int64(len(data)), name, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var rows []string
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		for i := range int(b.Rec.NumRows()) {
			rows = append(rows, b.Rec.Column(0).ValueStr(i))
		}
		b.Rec.Release()
	}
}

// Every range reads with the whole file's schema: a column's type is inferred from the top of the
// file, not from the range (whose "003" alone would make "id" text), and a JSON key missing from a
// range is still a column, of the type the top of the file gives it.
func TestTextRangesKeepTheFilesSchema(t *testing.T) {
	t.Parallel()
	csv := []byte("id,x\n1,1.5\n2,2.5\n003,3.5\n")
	r, err := Open(bytes.NewReader(csv), int64(len(csv)), "t.csv", Options{Range: &Range{Unit: RangeBytes, From: 17, To: int64(len(csv))}, InferRows: 2})
	require.NoError(t, err)
	require.Equal(t, arrow.PrimitiveTypes.Int64, r.Schema().Field(0).Type, "inferred from the top")
	require.Equal(t, arrow.PrimitiveTypes.Float64, r.Schema().Field(1).Type)
	r.Close()

	jsonl := []byte("{\"a\":1,\"b\":[1,2]}\n{\"a\":2}\n")
	r, err = Open(bytes.NewReader(jsonl), int64(len(jsonl)), "t.jsonl", Options{Range: &Range{Unit: RangeBytes, From: 18, To: int64(len(jsonl))}})
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, []string{"a", "b"}, []string{r.Schema().Field(0).Name, r.Schema().Field(1).Name})
	require.Equal(t, arrow.ListOf(arrow.PrimitiveTypes.Int64), r.Schema().Field(1).Type)
	require.Equal(t, []string{"2|(null)"}, rowsOf(t, r))
}
