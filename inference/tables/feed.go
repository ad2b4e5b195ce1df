package tables

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/inferstack/inferstack/internal/nearest"
)

// ElemType is a tensor element type a model input may take.
type ElemType uint8

// The element types a table can feed.
const (
	Float32 ElemType = iota + 1
	Float16
	Float64
	Int8
	Int16
	Int32
	Int64
	Uint8
	Uint16
	Uint32
	Uint64
	Bool
)

var elemNames = map[ElemType]string{
	Float32: "float32", Float16: "float16", Float64: "float64",
	Int8: "int8", Int16: "int16", Int32: "int32", Int64: "int64",
	Uint8: "uint8", Uint16: "uint16", Uint32: "uint32", Uint64: "uint64", Bool: "bool",
}

var elemSizes = map[ElemType]int{
	Float32: 4, Float16: 2, Float64: 8, Int8: 1, Int16: 2, Int32: 4, Int64: 8,
	Uint8: 1, Uint16: 2, Uint32: 4, Uint64: 8, Bool: 1,
}

func (t ElemType) String() string {
	if n, ok := elemNames[t]; ok {
		return n
	}
	return fmt.Sprintf("ElemType(%d)", uint8(t))
}

// Size is the element's size in bytes (bool: one byte, 0 or 1, as ONNX Runtime takes it).
func (t ElemType) Size() int { return elemSizes[t] }

// ParseElemType returns the element type named like String returns it.
func ParseElemType(s string) (ElemType, error) {
	for t, n := range elemNames {
		if n == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown element type %q", s)
}

// ArrowType is the arrow type holding values of t.
func (t ElemType) ArrowType() arrow.DataType {
	switch t {
	case Float32:
		return arrow.PrimitiveTypes.Float32
	case Float16:
		return arrow.FixedWidthTypes.Float16
	case Float64:
		return arrow.PrimitiveTypes.Float64
	case Int8:
		return arrow.PrimitiveTypes.Int8
	case Int16:
		return arrow.PrimitiveTypes.Int16
	case Int32:
		return arrow.PrimitiveTypes.Int32
	case Int64:
		return arrow.PrimitiveTypes.Int64
	case Uint8:
		return arrow.PrimitiveTypes.Uint8
	case Uint16:
		return arrow.PrimitiveTypes.Uint16
	case Uint32:
		return arrow.PrimitiveTypes.Uint32
	case Uint64:
		return arrow.PrimitiveTypes.Uint64
	case Bool:
		return arrow.FixedWidthTypes.Boolean
	}
	return nil
}

// elemOf returns the element type of an arrow type, or false for types no input takes.
func elemOf(t arrow.DataType) (ElemType, bool) {
	switch t.ID() {
	case arrow.FLOAT32:
		return Float32, true
	case arrow.FLOAT16:
		return Float16, true
	case arrow.FLOAT64:
		return Float64, true
	case arrow.INT8:
		return Int8, true
	case arrow.INT16:
		return Int16, true
	case arrow.INT32:
		return Int32, true
	case arrow.INT64:
		return Int64, true
	case arrow.UINT8:
		return Uint8, true
	case arrow.UINT16:
		return Uint16, true
	case arrow.UINT32:
		return Uint32, true
	case arrow.UINT64:
		return Uint64, true
	case arrow.BOOL:
		return Bool, true
	}
	return 0, false
}

// Input describes one model input, free of ONNX Runtime: its name, element type and shape, where
// the first dimension is the rows and -1 marks a dynamic dimension.
type Input struct {
	Name  string
	Type  ElemType
	Shape []int64
}

// Conversion records a column whose values change type on their way to an input.
type Conversion struct {
	Input  string `json:"input"`
	Column string `json:"column"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Exact is false where values may round (float64 to float32, as the .npy path does).
	Exact bool `json:"exact"`
}

// convertible says whether values of type from may feed an input of type to, and whether exactly.
// Only conversions where no value changes are allowed, plus float64 to float32.
func convertible(from, to ElemType) (ok, exact bool) {
	if from == to {
		return true, true
	}
	if from == Float64 && to == Float32 {
		return true, false
	}
	// widths of integer magnitude each float holds exactly: float16 11 bits, float32 24, float64 53.
	intBits := map[ElemType]int{Int8: 7, Int16: 15, Int32: 31, Int64: 63, Uint8: 8, Uint16: 16, Uint32: 32, Uint64: 64}
	floatBits := map[ElemType]int{Float16: 11, Float32: 24, Float64: 53}
	signed := func(t ElemType) bool { return t == Int8 || t == Int16 || t == Int32 || t == Int64 }
	switch {
	case from == Float16 && (to == Float32 || to == Float64), from == Float32 && to == Float64:
		return true, true
	case intBits[from] > 0 && intBits[to] > 0:
		if signed(from) && !signed(to) {
			return false, false
		}
		return from.Size() < to.Size(), true
	case intBits[from] > 0 && floatBits[to] > 0:
		return intBits[from] <= floatBits[to], true
	}
	return false, false
}

// DefaultColumns is the feed's column list for an input: feed[name], or the column of the input's name.
func DefaultColumns(in Input, feed map[string][]string) []string {
	if cols, ok := feed[in.Name]; ok {
		return cols
	}
	return []string{in.Name}
}

// NeededColumns lists the columns the inputs read under feed, in input order, each once.
func NeededColumns(inputs []Input, feed map[string][]string) []string {
	var out []string
	for _, in := range inputs {
		for _, c := range DefaultColumns(in, feed) {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// TextTypes gives each fed column the element type of its input, for Options.Types: text formats
// then parse those columns as the model wants them. A column feeding two inputs takes the first's.
func TextTypes(inputs []Input, feed map[string][]string) map[string]arrow.DataType {
	out := map[string]arrow.DataType{}
	for _, in := range inputs {
		for _, c := range DefaultColumns(in, feed) {
			if _, ok := out[c]; !ok && in.Type.ArrowType() != nil {
				out[c] = in.Type.ArrowType()
			}
		}
	}
	return out
}

// Plan says how each input is built from a record's columns. Build one per table with NewPlan.
type Plan struct {
	feeds       []inputFeed
	conversions []Conversion
}

type inputFeed struct {
	in       Input
	cols     []int    // record column indices
	names    []string // their names
	srcs     []ElemType
	list     bool    // one list column (else scalar columns)
	rowShape []int64 // the input's shape after the rows, -1 at dyn
	dyn      int     // index of the dynamic dim in rowShape, or -1
	fixed    int64   // product of rowShape's fixed dims
}

// NewPlan checks that the table's schema can feed the inputs under feed (input name -> columns;
// an input without an entry reads the column of its name) and returns the plan.
func NewPlan(inputs []Input, schema *arrow.Schema, feed map[string][]string) (*Plan, error) {
	if !hostLittleEndian {
		return nil, fmt.Errorf("tables: big-endian hosts are not supported")
	}
	var names []string
	for _, in := range inputs {
		names = append(names, in.Name)
	}
	keys := make([]string, 0, len(feed))
	for k := range feed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(names, k) {
			return nil, badf("feed names input %q, which the model does not have (inputs: %s)", k, strings.Join(names, ", "))
		}
		if len(feed[k]) == 0 {
			return nil, badf("feed for input %q names no columns", k)
		}
	}
	var have []string
	for _, f := range schema.Fields() {
		have = append(have, f.Name)
	}
	p := &Plan{}
	for _, in := range inputs {
		f, err := planInput(in, schema, have, DefaultColumns(in, feed))
		if err != nil {
			return nil, err
		}
		for i, s := range f.srcs {
			if s != in.Type {
				_, exact := convertible(s, in.Type)
				p.conversions = append(p.conversions, Conversion{
					Input: in.Name, Column: f.names[i], From: s.String(), To: in.Type.String(), Exact: exact,
				})
			}
		}
		p.feeds = append(p.feeds, f)
	}
	return p, nil
}

func planInput(in Input, schema *arrow.Schema, have, cols []string) (inputFeed, error) {
	f := inputFeed{in: in, dyn: -1, fixed: 1}
	if in.Type.Size() == 0 {
		return f, badf("input %q: element type %s is not supported", in.Name, in.Type)
	}
	if len(in.Shape) < 1 {
		return f, badf("input %q: a scalar input (shape []) cannot take rows", in.Name)
	}
	f.rowShape = slices.Clone(in.Shape[1:])
	for i, d := range f.rowShape {
		switch {
		case d == -1 && f.dyn >= 0:
			return f, badf("input %q: shape %v has more than one dynamic dimension after the rows; a table can fill only one", in.Name, in.Shape)
		case d == -1:
			f.dyn = i
		case d <= 0:
			return f, badf("input %q: shape %v has a dimension %d", in.Name, in.Shape, d)
		default:
			f.fixed *= d
		}
	}
	shapeMsg := func() string { return shapeString(in.Shape) }
	for _, c := range cols {
		i := slices.Index(have, c)
		if i < 0 {
			near := nearest.Names(c, have, 3)
			return f, badf("input %q: no column %q (nearest: %s)", in.Name, c, strings.Join(near, ", "))
		}
		typ := schema.Field(i).Type
		elemT, listLen := typ, int64(-1)
		switch lt := typ.(type) {
		case *arrow.ListType:
			elemT, f.list = lt.Elem(), true
		case *arrow.LargeListType:
			elemT, f.list = lt.Elem(), true
		case *arrow.FixedSizeListType:
			elemT, f.list, listLen = lt.Elem(), true, int64(lt.Len())
		}
		src, ok := elemOf(elemT)
		if !ok {
			return f, badf("input %q: column %q has type %s, which cannot feed a model (%s wanted)", in.Name, c, typ, in.Type)
		}
		if ok, _ := convertible(src, in.Type); !ok {
			return f, badf("input %q: column %q has type %s, which cannot become %s without changing values", in.Name, c, typ, in.Type)
		}
		if f.list && len(cols) > 1 {
			return f, badf("input %q: column %q is a list; a list column feeds an input alone, not among %d columns", in.Name, c, len(cols))
		}
		if listLen >= 0 {
			if err := f.checkLen(listLen, fmt.Sprintf("column %q holds lists of %d", c, listLen), shapeMsg()); err != nil {
				return f, err
			}
		}
		f.cols = append(f.cols, i)
		f.names = append(f.names, c)
		f.srcs = append(f.srcs, src)
	}
	if !f.list {
		if err := f.checkLen(int64(len(cols)), fmt.Sprintf("feed gives %d columns", len(cols)), shapeMsg()); err != nil {
			return f, err
		}
	}
	return f, nil
}

// checkLen checks that n values a row fill the input's row shape.
func (f *inputFeed) checkLen(n int64, what, shape string) error {
	if f.dyn < 0 && n != f.fixed {
		return badf("input %q takes %d values a row (shape %s); %s", f.in.Name, f.fixed, shape, what)
	}
	if f.dyn >= 0 && (n == 0 || n%f.fixed != 0) {
		return badf("input %q takes a multiple of %d values a row (shape %s); %s", f.in.Name, f.fixed, shape, what)
	}
	return nil
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
		if d < 0 {
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Conversions lists the type conversions the plan makes, for the manifest.
func (p *Plan) Conversions() []Conversion { return slices.Clone(p.conversions) }

// Feed returns the columns each input reads, for the manifest.
func (p *Plan) Feed() map[string][]string {
	out := map[string][]string{}
	for _, f := range p.feeds {
		out[f.in.Name] = slices.Clone(f.names)
	}
	return out
}

// Tensor is one input's values for a batch: Shape[0] rows, Data flat little-endian elements of Type
// (bool as one byte 0 or 1), 8-byte aligned.
type Tensor struct {
	Name  string
	Type  ElemType
	Shape []int64
	Data  []byte
}

// Fill builds one tensor per input (in the plan's input order) from a batch, reusing out's buffers
// where large enough. b.Rec must have the schema the plan was made for.
func (p *Plan) Fill(b Batch, out []Tensor) ([]Tensor, error) {
	if len(out) != len(p.feeds) {
		out = make([]Tensor, len(p.feeds))
	}
	n := int(b.Rec.NumRows())
	for k := range p.feeds {
		f := &p.feeds[k]
		t := &out[k]
		t.Name, t.Type = f.in.Name, f.in.Type
		var err error
		if f.list {
			err = f.fillList(b, n, t)
		} else {
			err = f.fillScalars(b, n, t)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (f *inputFeed) shape(n int, perRow int64) []int64 {
	s := make([]int64, 0, 1+len(f.rowShape))
	s = append(s, int64(n))
	for i, d := range f.rowShape {
		if i == f.dyn {
			d = perRow / f.fixed
		}
		s = append(s, d)
	}
	return s
}

func (f *inputFeed) fillScalars(b Batch, n int, t *Tensor) error {
	k := len(f.cols)
	t.Shape = f.shape(n, int64(k))
	t.Data = alignedBytes(t.Data, n*k*f.in.Type.Size())
	for j, c := range f.cols {
		arr := b.Rec.Column(c)
		if arr.NullN() > 0 {
			for i := 0; i < n; i++ {
				if arr.IsNull(i) {
					return badf("row %d, column %q: null (input %q needs a value in every row)", b.Row+int64(i), f.names[j], f.in.Name)
				}
			}
		}
	}
	// Columns become rows a tile of rows at a time, so that the rows being written stay in cache
	// while every column writes its value into each.
	const tileRows = 64
	rowBytes := k * f.in.Type.Size()
	for lo := 0; lo < n; lo += tileRows {
		hi := min(lo+tileRows, n)
		for j, c := range f.cols {
			convertInto(t.Data[lo*rowBytes:], f.in.Type, b.Rec.Column(c), lo, hi, k, j)
		}
	}
	return nil
}

func (f *inputFeed) fillList(b Batch, n int, t *Tensor) error {
	col := f.names[0]
	arr, ok := b.Rec.Column(f.cols[0]).(array.ListLike)
	if !ok {
		return fmt.Errorf("tables: column %q is not a list array", col)
	}
	var per, lo, hi int64
	for i := 0; i < n; i++ {
		if arr.IsNull(i) {
			return badf("row %d, column %q: null (input %q needs a value in every row)", b.Row+int64(i), col, f.in.Name)
		}
		s, e := arr.ValueOffsets(i)
		if i == 0 {
			per, lo = e-s, s
			if err := f.checkLen(per, fmt.Sprintf("row %d, column %q holds a list of %d", b.Row, col, per), shapeString(f.in.Shape)); err != nil {
				return err
			}
		} else if e-s != per {
			if f.dyn < 0 {
				return badf("row %d, column %q: a list of %d; input %q takes %d values a row (shape %s)", b.Row+int64(i), col, e-s, f.in.Name, f.fixed, shapeString(f.in.Shape))
			}
			return badf("row %d, column %q: a list of %d in a batch whose lists hold %d from row %d (input %q, shape %s, takes one length a batch)",
				b.Row+int64(i), col, e-s, per, b.Row, f.in.Name, shapeString(f.in.Shape))
		} else if s != hi {
			return fmt.Errorf("tables: column %q: list values are not contiguous", col)
		}
		hi = e
	}
	if n == 0 {
		per = f.fixed
	}
	vals := arr.ListValues()
	if vals.NullN() > 0 {
		for v := lo; v < hi; v++ {
			if vals.IsNull(int(v)) {
				row := b.Row + (v-lo)/max(per, 1)
				return badf("row %d, column %q: null list element (input %q needs a value everywhere)", row, col, f.in.Name)
			}
		}
	}
	t.Shape = f.shape(n, per)
	t.Data = alignedBytes(t.Data, int(hi-lo)*f.in.Type.Size())
	convertInto(t.Data, f.in.Type, vals, int(lo), int(hi), 1, 0)
	return nil
}

// alignedBytes returns n bytes, reusing buf if it has the room; a new buffer is 8-byte aligned (it
// is carved from a []uint64) so the typed views in convert.go are aligned.
func alignedBytes(buf []byte, n int) []byte {
	if cap(buf) >= n {
		return buf[:n]
	}
	words := make([]uint64, (n+7)/8)
	if len(words) == 0 {
		return []byte{}
	}
	return unsafeBytes(words)[:n]
}

var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
