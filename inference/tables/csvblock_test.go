package tables

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/stretchr/testify/require"
)

// blockCSV is a CSV of fixed-width columns of every kind, with empty, quoted and unusual cells; bad,
// if not "", replaces the cell of row 2,500 in column f32 (past the first goroutine's rows).
func blockCSV(rows int, bad string) string {
	r := rand.New(rand.NewPCG(5, 6))
	var sb strings.Builder
	sb.WriteString("id,f32,f64,i32,u8,b,f16,skipped\r\n")
	floats := []func() string{
		func() string { return fmt.Sprint(r.Float32()*2 - 1) },
		func() string { return fmt.Sprintf("%.3e", r.NormFloat64()*1e6) },
		func() string { return fmt.Sprintf("%.20f", r.Float64()) }, // past Clinger's digits
		func() string { return "" },
		func() string { return `"1.5"` },
		func() string { return ".5" },
		func() string { return "-0" },
		func() string { return "1e39" },
		func() string { return "16777217" },
	}
	for i := range rows {
		f32 := floats[r.IntN(len(floats))]()
		if i == 2500 && bad != "" {
			f32 = bad
		}
		fmt.Fprintf(&sb, "%d,%s,%s,%d,%d,%v,%s,x y\n", i, f32, floats[r.IntN(len(floats))](), r.Int32()-1<<30,
			r.IntN(256), r.IntN(2) == 1, floats[r.IntN(3)]())
		if i%997 == 0 {
			sb.WriteString("\n") // an empty line, skipped
		}
	}
	return sb.String()
}

// readBatches reads a CSV to its end or first error, by the block parser or (block false) row by row.
func readBatches(t *testing.T, body string, opts Options, block bool) ([]Batch, error) {
	t.Helper()
	br := bytes.NewReader([]byte(body))
	r, err := Open(br, br.Size(), "b.csv", opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { r.Close() })
	text := r.(*closingText)
	if block {
		require.NotNil(t, text.block, "fixed-width columns are parsed as a block")
	} else {
		text.block = nil
	}
	var out []Batch
	for {
		b, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		t.Cleanup(b.Rec.Release)
		out = append(out, b)
	}
}

// The block parser reads what the row-by-row reader reads: the same records, nulls and refusals, for
// every batch size, start row and number of sampled rows.
func TestCSVBlockReadsAsRowByRow(t *testing.T) {
	t.Parallel()
	types := map[string]arrow.DataType{
		"f32": arrow.PrimitiveTypes.Float32, "f64": arrow.PrimitiveTypes.Float64, "i32": arrow.PrimitiveTypes.Int32,
		"u8": arrow.PrimitiveTypes.Uint8, "b": arrow.FixedWidthTypes.Boolean, "f16": arrow.FixedWidthTypes.Float16,
	}
	for _, bad := range []string{"", "1.5x", "1e", "1,2", `"open`, "-", "0x1p-2", "1 "} {
		body := blockCSV(5000, bad)
		for _, opts := range []Options{
			{Types: types, Columns: []string{"id", "f32", "f64", "i32", "u8", "b", "f16"}},
			{Types: types, BatchRows: 1000, StartRow: 777, InferRows: 3, Columns: []string{"f32", "f64", "i32", "u8", "b", "f16"}},
			{Types: types, BatchRows: 3000, InferRows: 1, Columns: []string{"u8", "f32", "id", "f16"}},
			{Types: types, StartRow: 2600, Columns: []string{"f64"}},
		} {
			name := fmt.Sprintf("bad %q, %d rows a batch from %d", bad, opts.BatchRows, opts.StartRow)
			want, wantErr := readBatches(t, body, opts, false)
			got, gotErr := readBatches(t, body, opts, true)
			if wantErr != nil {
				require.EqualError(t, gotErr, wantErr.Error(), name)
			} else {
				require.NoError(t, gotErr, name)
			}
			require.Equal(t, len(want), len(got), name)
			for i := range want {
				require.Equal(t, want[i].Row, got[i].Row, name)
				require.True(t, array.RecordEqual(want[i].Rec, got[i].Rec), "%s: batch %d\n%v\n%v", name, i, want[i].Rec, got[i].Rec)
			}
		}
	}
}

// Counting rows reads records, not cells: a bad cell is not refused, a bad record is.
func TestCountRowsChecksRecordsNotCells(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, body string
		rows       int64
		err        string
	}{
		{"n.csv", "a,b\n1,2\n\n\"x\ny\",3\n4,abc\n", 3, ""},
		{"short.csv", "a,b\n1,2\n3\n", 0, `short.csv: row 1 (line 3): wrong number of fields`},
		{"quote.csv", "a,b\n1,2\n3,\"4\n", 0, `quote.csv: row 1 (line 3): extraneous or missing " in quoted-field`},
		{"n.jsonl", "{\"a\": 1}\n\n  \n{\"a\": \"x\"}\nnot json\n", 3, ""},
	} {
		br := bytes.NewReader([]byte(c.body))
		r, err := Open(br, br.Size(), c.name, Options{InferRows: 1}) // the sample: the first row
		require.NoError(t, err, c.name)
		n, err := r.(RowCounter).CountRows()
		r.Close()
		if c.err != "" {
			require.ErrorIs(t, err, ErrBadTable, c.name)
			require.EqualError(t, err, c.err, c.name)
			continue
		}
		require.NoError(t, err, c.name)
		require.Equal(t, c.rows, n, c.name)
	}
}
