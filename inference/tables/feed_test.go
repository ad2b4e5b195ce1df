package tables

import (
	"errors"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"
)

func TestConvertible(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, to  ElemType
		ok, exact bool
	}{
		{Float32, Float32, true, true},
		{Int32, Int64, true, true},
		{Int8, Int16, true, true},
		{Uint8, Int16, true, true},
		{Uint32, Uint64, true, true},
		{Float32, Float64, true, true},
		{Float16, Float32, true, true},
		{Int16, Float32, true, true},
		{Int32, Float64, true, true},
		{Uint8, Float16, true, true},
		{Float64, Float32, true, false}, // as the .npy path does
		{Int64, Int32, false, false},
		{Int8, Uint16, false, false}, // negatives
		{Uint16, Int16, false, false},
		{Int32, Float32, false, false}, // 2^24+1 rounds
		{Int64, Float64, false, false},
		{Int16, Float16, false, false},
		{Float32, Int64, false, false},
		{Float32, Float16, false, false},
		{Bool, Uint8, false, false},
		{Uint8, Bool, false, false},
	} {
		ok, exact := convertible(tc.from, tc.to)
		require.Equal(t, tc.ok, ok, "%s to %s", tc.from, tc.to)
		if ok {
			require.Equal(t, tc.exact, exact, "%s to %s", tc.from, tc.to)
		}
	}
}

var mixedSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.BinaryTypes.String},
	{Name: "f32", Type: arrow.PrimitiveTypes.Float32},
	{Name: "f64", Type: arrow.PrimitiveTypes.Float64},
	{Name: "i32", Type: arrow.PrimitiveTypes.Int32},
	{Name: "i64", Type: arrow.PrimitiveTypes.Int64},
	{Name: "vec", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
	{Name: "big", Type: arrow.LargeListOf(arrow.PrimitiveTypes.Float32)},
	{Name: "arr", Type: arrow.FixedSizeListOf(4, arrow.PrimitiveTypes.Float32)},
	{Name: "when", Type: arrow.FixedWidthTypes.Timestamp_us},
}, nil)

func TestNewPlanRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inputs []Input
		feed   map[string][]string
		want   string
	}{
		{"missing column", []Input{{"f23", Float32, []int64{-1}}}, nil, `input "f23": no column "f23" (nearest: f32, f64, id)`},
		{"feed names no input", []Input{{"x", Float32, []int64{-1}}}, map[string][]string{"y": {"f32"}, "x": {"f32"}}, `feed names input "y", which the model does not have (inputs: x)`},
		{"empty feed", []Input{{"x", Float32, []int64{-1}}}, map[string][]string{"x": {}}, `feed for input "x" names no columns`},
		{"string column", []Input{{"x", Float32, []int64{-1}}}, map[string][]string{"x": {"id"}}, `input "x": column "id" has type utf8, which cannot feed a model (float32 wanted)`},
		{"timestamp", []Input{{"x", Int64, []int64{-1}}}, map[string][]string{"x": {"when"}}, `column "when" has type timestamp[us, tz=UTC], which cannot feed a model (int64 wanted)`},
		{"lossy int", []Input{{"x", Int32, []int64{-1}}}, map[string][]string{"x": {"i64"}}, `input "x": column "i64" has type int64, which cannot become int32 without changing values`},
		{"float to int", []Input{{"x", Int64, []int64{-1}}}, map[string][]string{"x": {"f32"}}, `column "f32" has type float32, which cannot become int64`},
		{"int64 to float32", []Input{{"x", Float32, []int64{-1, 2}}}, map[string][]string{"x": {"f32", "i64"}}, `column "i64" has type int64, which cannot become float32`},
		{"columns vs fixed dims", []Input{{"x", Float32, []int64{-1, 3}}}, map[string][]string{"x": {"f32", "f64"}}, `input "x" takes 3 values a row (shape [? 3]); feed gives 2 columns`},
		{"fixed list vs dims", []Input{{"arr", Float32, []int64{-1, 3}}}, nil, `input "arr" takes 3 values a row (shape [? 3]); column "arr" holds lists of 4`},
		{"fixed list vs dyn dims", []Input{{"arr", Float32, []int64{-1, -1, 3}}}, nil, `takes a multiple of 3 values a row (shape [? ? 3]); column "arr" holds lists of 4`},
		{"list among columns", []Input{{"x", Float32, []int64{-1, 5}}}, map[string][]string{"x": {"f32", "vec"}}, `column "vec" is a list; a list column feeds an input alone`},
		{"two dynamic dims", []Input{{"vec", Float32, []int64{-1, -1, -1}}}, nil, `has more than one dynamic dimension after the rows`},
		{"scalar input", []Input{{"f32", Float32, nil}}, nil, `a scalar input (shape []) cannot take rows`},
		{"zero dim", []Input{{"f32", Float32, []int64{-1, 0}}}, nil, `has a dimension 0`},
		{"bad type", []Input{{"f32", ElemType(99), []int64{-1}}}, nil, `element type ElemType(99) is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewPlan(tc.inputs, mixedSchema, tc.feed)
			require.ErrorIs(t, err, ErrBadTable)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// batch builds a record of mixedSchema's numeric and list columns for rows.
func testBatch(t *testing.T, mem memory.Allocator, row0 int64, rows int, nullAt map[string]int, listLen func(i int) int) Batch {
	t.Helper()
	b := array.NewRecordBuilder(mem, mixedSchema)
	defer b.Release()
	for i := 0; i < rows; i++ {
		null := func(c string) bool { at, ok := nullAt[c]; return ok && at == i }
		if null("id") {
			b.Field(0).AppendNull()
		} else {
			b.Field(0).(*array.StringBuilder).Append("r")
		}
		if null("f32") {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.Float32Builder).Append(float32(i) + 0.5)
		}
		b.Field(2).(*array.Float64Builder).Append(float64(i) + 0.1)
		b.Field(3).(*array.Int32Builder).Append(int32(-i))
		b.Field(4).(*array.Int64Builder).Append(int64(i) << 40)
		for _, k := range []int{5, 6} {
			lb := b.Field(k).(array.ListLikeBuilder)
			lb.Append(true)
			for j := 0; j < listLen(i); j++ {
				if null("vec") && j == 1 {
					lb.ValueBuilder().AppendNull()
				} else {
					lb.ValueBuilder().(*array.Float32Builder).Append(float32(10*i + j))
				}
			}
		}
		fb := b.Field(7).(*array.FixedSizeListBuilder)
		fb.Append(true)
		fb.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{float32(i), 1, 2, 3}, nil)
		b.Field(8).(*array.TimestampBuilder).Append(0)
	}
	rec := b.NewRecordBatch()
	t.Cleanup(rec.Release)
	return Batch{Rec: rec, Row: row0}
}

func four(int) int { return 4 }

func TestFill(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the batches' cleanups
	inputs := []Input{
		{"float_input", Float64, []int64{-1, 3}}, // from 3 scalar columns
		{"i32", Int64, []int64{-1}},              // by name, int32 -> int64
		{"vec", Float32, []int64{-1, 2, 2}},      // list<float> of 4 fills [2, 2]
		{"big", Float64, []int64{-1, -1}},        // large_list, dynamic length
		{"arr", Float16, []int64{-1, 4, 1}},      // fixed_size_list<float, 4>: refused below (float32 -> float16)
		{"f64", Float32, []int64{-1}},            // rounds, as .npy does
	}
	feed := map[string][]string{"float_input": {"f32", "f64", "i32"}}
	_, err := NewPlan(inputs, mixedSchema, feed)
	require.ErrorContains(t, err, `column "arr" has type fixed_size_list<item: float32, nullable>[4], which cannot become float16`)

	inputs[4].Type = Float32
	plan, err := NewPlan(inputs, mixedSchema, feed)
	require.NoError(t, err)
	require.Equal(t, []Conversion{
		{Input: "float_input", Column: "f32", From: "float32", To: "float64", Exact: true},
		{Input: "float_input", Column: "i32", From: "int32", To: "float64", Exact: true},
		{Input: "i32", Column: "i32", From: "int32", To: "int64", Exact: true},
		{Input: "big", Column: "big", From: "float32", To: "float64", Exact: true},
		{Input: "f64", Column: "f64", From: "float64", To: "float32", Exact: false},
	}, plan.Conversions())
	require.Equal(t, map[string][]string{"float_input": {"f32", "f64", "i32"}, "i32": {"i32"}, "vec": {"vec"}, "big": {"big"}, "arr": {"arr"}, "f64": {"f64"}}, plan.Feed())

	b := testBatch(t, mem, 100, 3, nil, four)
	ts, err := plan.Fill(b, nil)
	require.NoError(t, err)
	require.Len(t, ts, 6)
	require.Equal(t, Tensor{Name: "float_input", Type: Float64, Shape: []int64{3, 3}}, Tensor{Name: ts[0].Name, Type: ts[0].Type, Shape: ts[0].Shape})
	require.Equal(t, []float64{0.5, 0.1, 0, 1.5, 1.1, -1, 2.5, 2.1, -2}, view[float64](ts[0].Data))
	require.Equal(t, []float32{0.1, 1.1, 2.1}, view[float32](ts[5].Data))
	require.Equal(t, []int64{3}, ts[1].Shape)
	require.Equal(t, []int64{0, -1, -2}, view[int64](ts[1].Data))
	require.Equal(t, []int64{3, 2, 2}, ts[2].Shape)
	require.Equal(t, []float32{0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23}, view[float32](ts[2].Data))
	require.Equal(t, []int64{3, 4}, ts[3].Shape)
	require.Equal(t, float64(23), view[float64](ts[3].Data)[11])
	require.Equal(t, []int64{3, 4, 1}, ts[4].Shape)
	require.Equal(t, []float32{2, 1, 2, 3}, view[float32](ts[4].Data)[8:])

	// A second batch reuses the buffers, and a slice (a resumed batch) reads from its offset.
	sl := Batch{Rec: b.Rec.NewSlice(1, 3), Row: 101}
	defer sl.Rec.Release()
	data0 := &ts[0].Data[0]
	ts, err = plan.Fill(sl, ts)
	require.NoError(t, err)
	require.Same(t, data0, &ts[0].Data[0])
	require.Equal(t, []float64{1.5, 1.1, -1, 2.5, 2.1, -2}, view[float64](ts[0].Data))
	require.Equal(t, []float32{10, 11, 12, 13, 20, 21, 22, 23}, view[float32](ts[2].Data))
	require.Equal(t, []float32{1, 1, 2, 3, 2, 1, 2, 3}, view[float32](ts[4].Data))
	require.Equal(t, []int64{2, 4}, ts[3].Shape)
}

func TestFillRefusals(t *testing.T) {
	t.Parallel()
	ragged := func(i int) int {
		if i == 2 {
			return 3
		}
		return 4
	}
	for _, tc := range []struct {
		name    string
		inputs  []Input
		feed    map[string][]string
		nullAt  map[string]int
		listLen func(int) int
		want    string
	}{
		{"null scalar", []Input{{"x", Float32, []int64{-1, 2}}}, map[string][]string{"x": {"f64", "f32"}}, map[string]int{"f32": 2}, four,
			`row 502, column "f32": null (input "x" needs a value in every row)`},
		{"null in unfed column is fine", []Input{{"f32", Float32, []int64{-1}}}, nil, map[string]int{"id": 1}, four, ""},
		{"null list element", []Input{{"vec", Float32, []int64{-1, 4}}}, nil, map[string]int{"vec": 3}, four,
			`row 503, column "vec": null list element`},
		{"wrong list length", []Input{{"vec", Float32, []int64{-1, 4}}}, nil, nil, ragged,
			`row 502, column "vec": a list of 3; input "vec" takes 4 values a row (shape [? 4])`},
		{"ragged batch", []Input{{"vec", Float32, []int64{-1, -1}}}, nil, nil, ragged,
			`row 502, column "vec": a list of 3 in a batch whose lists hold 4 from row 500 (input "vec", shape [? ?], takes one length a batch)`},
		{"first row wrong length", []Input{{"vec", Float32, []int64{-1, 2, 3}}}, nil, nil, four,
			`input "vec" takes 6 values a row (shape [? 2 3]); row 500, column "vec" holds a list of 4`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plan, err := NewPlan(tc.inputs, mixedSchema, tc.feed)
			require.NoError(t, err)
			_, err = plan.Fill(testBatch(t, memory.DefaultAllocator, 500, 5, tc.nullAt, tc.listLen), nil)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrBadTable)
			require.EqualError(t, err, tc.want+errSuffix(err.Error(), tc.want))
		})
	}
}

// errSuffix returns what follows want in got, so EqualError checks the start of the message exactly.
func errSuffix(got, want string) string {
	if len(got) >= len(want) && got[:len(want)] == want {
		return got[len(want):]
	}
	return ""
}

func TestFillTypes(t *testing.T) {
	t.Parallel()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "h", Type: arrow.FixedWidthTypes.Float16},
		{Name: "b", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "u8", Type: arrow.PrimitiveTypes.Uint8},
		{Name: "i8", Type: arrow.PrimitiveTypes.Int8},
	}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer bld.Release()
	bld.Field(0).(*array.Float16Builder).AppendValues([]float16.Num{float16.New(1.5), float16.New(-2)}, nil)
	bld.Field(1).(*array.BooleanBuilder).AppendValues([]bool{true, false}, nil)
	bld.Field(2).(*array.Uint8Builder).AppendValues([]uint8{255, 7}, nil)
	bld.Field(3).(*array.Int8Builder).AppendValues([]int8{-128, 5}, nil)
	rec := bld.NewRecordBatch()
	defer rec.Release()
	inputs := []Input{
		{"h", Float16, []int64{-1}}, {"h32", Float32, []int64{-1}}, {"b", Bool, []int64{-1, 1}},
		{"u8", Float16, []int64{-1}}, {"i8", Uint64, []int64{-1}}, {"u8i", Int32, []int64{-1}},
	}
	feed := map[string][]string{"h32": {"h"}, "u8i": {"u8"}}
	_, err := NewPlan(inputs, sc, feed)
	require.ErrorContains(t, err, `column "i8" has type int8, which cannot become uint64`)
	inputs[4].Type = Int64
	plan, err := NewPlan(inputs, sc, feed)
	require.NoError(t, err)
	ts, err := plan.Fill(Batch{Rec: rec}, nil)
	require.NoError(t, err)
	require.Equal(t, []uint16{float16.New(1.5).Uint16(), float16.New(-2).Uint16()}, view[uint16](ts[0].Data))
	require.Equal(t, []float32{1.5, -2}, view[float32](ts[1].Data))
	require.Equal(t, []byte{1, 0}, ts[2].Data)
	require.Equal(t, []int64{2, 1}, ts[2].Shape)
	require.Equal(t, []uint16{float16.New(255).Uint16(), float16.New(7).Uint16()}, view[uint16](ts[3].Data))
	require.Equal(t, []int64{-128, 5}, view[int64](ts[4].Data))
	require.Equal(t, []int32{255, 7}, view[int32](ts[5].Data))
	require.Len(t, plan.Conversions(), 4)
}

// The fixtures end to end: a DuckDB file through a plan, with the refusals the issue lists.
func TestFeedFromDuckDBParquet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inputs []Input
		feed   map[string][]string
		want   string // "" for success
	}{
		{"features and id", []Input{{"float_input", Float32, []int64{-1, 3}}, {"i64", Int64, []int64{-1}}, {"arr", Float32, []int64{-1, 4}}},
			map[string][]string{"float_input": {"f32", "i16", "u8"}}, ""},
		{"null in fed column", []Input{{"onenull", Float32, []int64{-1}}}, nil, `row 3000, column "onenull": null`},
		{"wrong list length", []Input{{"ragged", Float32, []int64{-1, 4}}}, nil, `row 4100, column "ragged": a list of 2; input "ragged" takes 4 values a row`},
		{"ragged batch", []Input{{"ragged", Float32, []int64{-1, -1}}}, nil, `row 4100, column "ragged": a list of 2 in a batch whose lists hold 4 from row 4096`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cols := append(NeededColumns(tc.inputs, tc.feed), "id", "maybe") // kept columns, nulls in maybe are fine
			r := open(t, "mixed_snappy.parquet", Options{Columns: cols, BatchRows: 1024})
			plan, err := NewPlan(tc.inputs, r.Schema(), tc.feed)
			require.NoError(t, err)
			var ts []Tensor
			rows := 0
			for {
				b, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				ts, err = plan.Fill(b, ts)
				b.Rec.Release()
				if tc.want != "" && err != nil {
					require.ErrorIs(t, err, ErrBadTable)
					require.ErrorContains(t, err, tc.want)
					return
				}
				require.NoError(t, err)
				if tc.name == "features and id" {
					n := int(b.Rec.NumRows())
					f := view[float32](ts[0].Data)
					for j := 0; j < n; j++ {
						i := int(b.Row) + j
						require.Equal(t, []float32{wantF32(i), float32(i % 100), float32(i % 200)}, f[3*j:3*j+3])
						require.Equal(t, wantI64(i), view[int64](ts[1].Data)[j])
						require.Equal(t, wantArr(i), view[float32](ts[2].Data)[4*j:4*j+4])
					}
				}
				rows += int(b.Rec.NumRows())
			}
			require.Empty(t, tc.want, "expected a refusal")
			require.Equal(t, 5000, rows)
		})
	}
}
