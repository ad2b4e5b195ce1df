package tables

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// csvSource reads what encoding/csv reads, record by record: the same fields, the same line numbers,
// the same errors, with quotes, multi-line fields, \r\n, empty lines and a last line without \n.
func TestCSVSourceReadsAsEncodingCSV(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		"a,b\n1,2\n3,4\n",
		"a,b\r\n1,2\r\n\r\n3,4",
		"\n\na,b\n1,2\n\n3,4\r",
		"a,b\n\"x,y\",2\n\"multi\nline\",\"q\"\"uote\"\n5,6\n",
		"a,b\n1,\"\"\n\"\",\n,\n",
		"a,b\n1,2,3\n",
		"a,b\n1\n",
		"a,b\n1,x\"y\n3,4\n",
		"a,b\n1,\"x\"y\n3,4\n",
		"a,b\n1,\"open\n3,4\n",
		"a,b\n1,\"two\nlines\"x\n",
		"a,b\n1,\r2\n",
		"\"a\",\"b\"\n1,2\n",
		"a,b\n" + strings.Repeat("1", 300_000) + ",2\n",
	} {
		want := csv.NewReader(strings.NewReader(body))
		src := &csvSource{r: bufio.NewReaderSize(strings.NewReader(body), 16)}
		for rec := 0; ; rec++ {
			wf, werr := want.Read()
			var wline int64
			if pe, ok := werr.(*csv.ParseError); ok {
				wline, werr = int64(pe.Line), pe.Err
				if rec == 0 {
					werr = pe
				}
			} else if werr == nil {
				l, _ := want.FieldPos(0)
				wline = int64(l)
			}
			gf, gline, gerr := src.nextFields()
			if rec == 0 {
				src.width = len(gf)
			}
			if werr != nil {
				require.Error(t, gerr, "%q record %d", body, rec)
				require.Equal(t, werr.Error(), gerr.Error(), "%q record %d", body, rec)
				if !errors.Is(werr, io.EOF) {
					require.Equal(t, wline, gline, "%q record %d: line of %v", body, rec, werr)
				}
				break
			}
			require.NoError(t, gerr, "%q record %d", body, rec)
			require.Equal(t, wline, gline, "%q record %d", body, rec)
			got := make([]string, len(gf))
			for i, f := range gf {
				got[i] = string(f)
			}
			require.Equal(t, wf, got, "%q record %d", body, rec)
		}
	}
}

// Cells that are not numbers are refused naming row, line and column; quoted numbers parse.
func TestCSVCellsParseFromBytes(t *testing.T) {
	t.Parallel()
	body := "id,x,y\na,1.5,2\n\"b\",\"2.5\",3\nc,,4\n"
	br := bytes.NewReader([]byte(body))
	r, err := Open(br, br.Size(), "q.csv", Options{InferRows: 1})
	require.NoError(t, err)
	defer r.Close()
	b, err := r.Next()
	require.NoError(t, err)
	defer b.Rec.Release()
	require.Equal(t, "[1.5 2.5 (null)]", b.Rec.Column(1).String())
	require.Equal(t, "[2 3 4]", b.Rec.Column(2).String())

	br = bytes.NewReader([]byte("x,y\n1,2\n2,1e\n"))
	r, err = Open(br, br.Size(), "e.csv", Options{InferRows: 1})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Next()
	require.ErrorIs(t, err, ErrBadTable)
	require.EqualError(t, err, `e.csv: row 1 (line 3), column "y": "1e" does not parse as int64`)
}
