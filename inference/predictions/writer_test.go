package predictions

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/stretchr/testify/require"
)

func TestRoundTripThroughArrowReader(t *testing.T) {
	t.Parallel()
	for _, codec := range []compress.Compression{compress.Codecs.Snappy, compress.Codecs.Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			t.Parallel()
			const n = 2500
			r := makeRows(t, keptFields, testOutputs, n)
			start := time.Now()
			b := writeAll(t, r, keptFields, testOutputs, Options{RowGroupRows: 1000, Compression: codec}, 333)
			t.Logf("%s: %d rows, %d columns: %d bytes in %v", codec, n, len(keptFields)+len(testOutputs), len(b), time.Since(start))

			tbl, pf := readBack(t, b)
			require.EqualValues(t, n, tbl.NumRows())
			require.Equal(t, 3, pf.NumRowGroups())
			require.Equal(t, codec, must(pf.RowGroup(0).MetaData().ColumnChunk(0)).Compression())

			// Kept columns: same names, types, values and nulls, in input order.
			for i, f := range keptFields {
				got := tbl.Schema().Field(i)
				require.Equal(t, f.Name, got.Name)
				require.True(t, arrow.TypeEqual(f.Type, got.Type), "%s: %v, want %v", f.Name, got.Type, f.Type)
				require.True(t, array.Equal(r.kept.Column(i), column(t, tbl, i)), "kept column %s changed", f.Name)
			}
			require.Positive(t, column(t, tbl, 1).NullN())
			require.Positive(t, column(t, tbl, 2).NullN())

			// Outputs: scalar, fixed_size_list, flattened with the shape.
			for k, o := range testOutputs {
				i := len(keptFields) + k
				f := tbl.Schema().Field(i)
				require.Equal(t, o.Name, f.Name)
				require.False(t, f.Nullable)
				shape, ok := f.Metadata.GetValue(ShapeKey)
				require.True(t, ok, "%s has no shape metadata", o.Name)
				require.JSONEq(t, string(must(json.Marshal(shapeOrEmpty(o.Shape)))), shape)
				fileShape := pf.MetaData().KeyValueMetadata().FindValue(ShapeKey + "." + o.Name)
				require.NotNil(t, fileShape)
				require.Equal(t, shape, *fileShape)

				arr := column(t, tbl, i)
				require.Zero(t, arr.NullN(), "%s read back with nulls (arrow-go issue 584)", o.Name)
				width := 1
				for _, d := range o.Shape {
					width *= int(d)
				}
				values := arr
				if len(o.Shape) == 0 || (len(o.Shape) == 1 && o.Shape[0] == 1) {
					require.True(t, arrow.TypeEqual(o.Type, f.Type), "%s: %v", o.Name, f.Type)
				} else {
					fl, ok := f.Type.(*arrow.FixedSizeListType)
					require.True(t, ok, "%s: %v, want fixed_size_list", o.Name, f.Type)
					require.EqualValues(t, width, fl.Len())
					require.True(t, arrow.TypeEqual(o.Type, fl.Elem()))
					values = arr.(*array.FixedSizeList).ListValues()
				}
				require.Equal(t, n*width, values.Len())
				requireRaw(t, o, values, r.outs[k])
			}
		})
	}
}

// requireRaw checks values read back against the raw tensor bytes written.
func requireRaw(t *testing.T, o Output, values arrow.Array, raw []byte) {
	t.Helper()
	if o.Type.ID() == arrow.BOOL {
		bs := values.(*array.Boolean)
		for i := range values.Len() {
			require.Equal(t, raw[i] != 0, bs.Value(i), "%s[%d]", o.Name, i)
		}
		return
	}
	elem := o.Type.(arrow.FixedWidthDataType).BitWidth() / 8
	off := values.Data().Offset()
	got := values.Data().Buffers()[1].Bytes()[off*elem : (off+values.Len())*elem]
	require.True(t, bytes.Equal(raw, got), "%s values differ", o.Name)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestNameClash(t *testing.T) {
	t.Parallel()
	f32 := arrow.PrimitiveTypes.Float32
	for _, tc := range []struct {
		name    string
		kept    []arrow.Field
		outputs []Output
		want    string
	}{
		{"output named like a kept column", []arrow.Field{{Name: "id", Type: f32}, {Name: "score", Type: f32}},
			[]Output{{Name: "score", Type: f32}}, `model output "score" has the same name as a kept column`},
		{"two outputs", nil, []Output{{Name: "p", Type: f32}, {Name: "p", Type: f32}}, `model output "p" has the same name as a model output`},
		{"a column kept twice", []arrow.Field{{Name: "id", Type: f32}, {Name: "id", Type: f32}}, nil, `kept column "id" is also a kept column`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			_, err := New(&buf, tc.kept, tc.outputs, Options{})
			require.ErrorIs(t, err, ErrNameClash)
			require.ErrorContains(t, err, tc.want)
			require.Zero(t, buf.Len(), "nothing written before the refusal")
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	_, err := New(&bytes.Buffer{}, nil, []Output{{Name: "s", Type: arrow.BinaryTypes.String}}, Options{})
	require.ErrorIs(t, err, ErrUnsupportedType)
	_, err = New(&bytes.Buffer{}, nil, []Output{{Name: "s", Type: arrow.PrimitiveTypes.Float32, Shape: []int64{-1, 4}}}, Options{})
	require.ErrorContains(t, err, "every dimension must be fixed")

	r := makeRows(t, keptFields, testOutputs, 10)
	wr, err := New(&bytes.Buffer{}, keptFields, testOutputs, Options{})
	require.NoError(t, err)
	kept, outs, n := r.slice(0, 10)
	defer kept.Release()
	require.ErrorContains(t, wr.Write(kept, outs, 9), "9 rows, but the kept columns have 10")
	short := append([][]byte{}, outs...)
	short[2] = short[2][:len(short[2])-4]
	require.ErrorContains(t, wr.Write(kept, short, n), `output "probs": 116 bytes for 10 rows of shape [3], want 120`)
	require.ErrorContains(t, wr.Write(nil, outs, n), "4 kept columns expected, got none")
	other := makeRows(t, []arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, keptFields[1], keptFields[1], keptFields[3]}, nil, 10)
	require.ErrorContains(t, wr.Write(other.kept, outs, n), `kept column "ts" is utf8`)
	require.NoError(t, wr.Write(kept, outs, n))
	require.NoError(t, wr.Close())
	require.ErrorIs(t, wr.Write(kept, outs, n), ErrClosed)
}

// TestRowGroupsBoundMemory: the rows held never exceed a row group's
// budget (plus the row that crosses it), whatever the batch size, and the
// row groups come out of the sizes asked for.
func TestRowGroupsBoundMemory(t *testing.T) {
	t.Parallel()
	const n, budget = 6000, 32 << 10
	r := makeRows(t, keptFields, testOutputs, n)
	var maxRow int64
	for i := range n {
		var row int64
		for c := range keptFields {
			row += rowBytes(r.kept.Column(c), i)
		}
		for _, raw := range r.outs {
			row += int64(len(raw) / n)
		}
		maxRow = max(maxRow, row)
	}
	var files [][]byte
	for _, batch := range []int{1, 97, 4096, n} {
		var buf bytes.Buffer
		wr, err := New(&buf, keptFields, testOutputs, Options{RowGroupBytes: budget})
		require.NoError(t, err)
		writeIn(t, wr, r, 0, n, batch)
		st := wr.Stats()
		require.LessOrEqual(t, st.PeakBufferedBytes, int64(budget)+maxRow, "batch %d", batch)
		require.Less(t, st.BufferedBytes, int64(budget))
		require.NoError(t, wr.Close())
		t.Logf("batch %d: peak buffered %d bytes (budget %d, widest row %d), largest encoded row group %d bytes, %d row groups, file %d bytes",
			batch, st.PeakBufferedBytes, budget, maxRow, wr.Stats().PeakEncodedBytes, wr.Stats().RowGroups, buf.Len())
		files = append(files, buf.Bytes())
	}
	for _, f := range files[1:] {
		require.True(t, bytes.Equal(files[0], f), "row-group boundaries depend on the batching")
	}
	_, pf := readBack(t, files[0])
	require.Greater(t, pf.NumRowGroups(), 5)
	var total int64
	for i := range pf.NumRowGroups() {
		total += pf.RowGroup(i).NumRows()
	}
	require.EqualValues(t, n, total)

	// A row count bound, with fixed-size rows only.
	outs := testOutputs[:3]
	fixed := makeRows(t, nil, outs, 1000)
	_, pf = readBack(t, writeAll(t, fixed, nil, outs, Options{RowGroupRows: 300}, 128))
	require.Equal(t, 4, pf.NumRowGroups())
	require.EqualValues(t, 300, pf.RowGroup(0).NumRows())
	require.EqualValues(t, 100, pf.RowGroup(3).NumRows())
}

func TestEmptyResult(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	wr, err := New(&buf, keptFields, testOutputs, Options{})
	require.NoError(t, err)
	require.NoError(t, wr.Close())
	tbl, pf := readBack(t, buf.Bytes())
	require.Zero(t, tbl.NumRows())
	require.Zero(t, pf.NumRowGroups())
	require.Equal(t, len(keptFields)+len(testOutputs), int(tbl.NumCols()))
	require.True(t, strings.HasPrefix(buf.String(), "PAR1"))
}
