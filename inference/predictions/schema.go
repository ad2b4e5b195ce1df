package predictions

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
)

// ShapeKey is the field metadata key (and, with the output's name after a
// dot, the file key-value metadata key) that records an output's per-sample
// shape as JSON, e.g. "[3,4]". Every output column carries it; for rank > 1
// it is the only record of the shape, the column itself being flat.
const ShapeKey = "inferstack.shape"

// ErrNameClash is returned by New and Resume when two result columns would
// share a name (an output and a kept column, or two of either).
var ErrNameClash = errors.New("result column name used twice")

// ErrUnsupportedType is returned for an output element type the writer does
// not carry.
var ErrUnsupportedType = errors.New("unsupported output element type")

// Output describes one model output: its name (the column's name), its
// element type, and its shape per sample (without the batch dimension).
//
// Shape [] and [1] give a scalar column, [K] a fixed_size_list<K> column,
// and higher ranks a fixed_size_list of their product with the shape in the
// column's metadata under ShapeKey.
type Output struct {
	Name  string
	Type  arrow.DataType // one of ElementTypes
	Shape []int64
}

// ElementTypes are the output element types the writer accepts: those an
// ONNX model's outputs have and Parquet stores without loss.
var ElementTypes = []arrow.DataType{
	arrow.PrimitiveTypes.Float32, arrow.FixedWidthTypes.Float16, arrow.PrimitiveTypes.Float64,
	arrow.PrimitiveTypes.Int8, arrow.PrimitiveTypes.Int16, arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int64,
	arrow.PrimitiveTypes.Uint8, arrow.PrimitiveTypes.Uint16, arrow.PrimitiveTypes.Uint32, arrow.PrimitiveTypes.Uint64,
	arrow.FixedWidthTypes.Boolean,
}

// elemBytes is the size of one element in the raw tensor bytes Write takes
// (ONNX Runtime's layout: bool is one byte).
func elemBytes(t arrow.DataType) (int, error) {
	for _, e := range ElementTypes {
		if arrow.TypeEqual(e, t) {
			if t.ID() == arrow.BOOL {
				return 1, nil
			}
			return t.(arrow.FixedWidthDataType).BitWidth() / 8, nil
		}
	}
	return 0, fmt.Errorf("%w: %v", ErrUnsupportedType, t)
}

// outputCol is an Output resolved to its column.
type outputCol struct {
	Output
	width    int   // elements per sample
	rowBytes int64 // raw bytes per sample
	field    arrow.Field
}

func resolveOutput(o Output) (outputCol, error) {
	eb, err := elemBytes(o.Type)
	if err != nil {
		return outputCol{}, fmt.Errorf("output %q: %w", o.Name, err)
	}
	width := int64(1)
	for _, d := range o.Shape {
		if d < 1 {
			return outputCol{}, fmt.Errorf("output %q: shape %v: every dimension must be fixed and at least 1", o.Name, o.Shape)
		}
		width *= d
	}
	shape, _ := json.Marshal(shapeOrEmpty(o.Shape))
	md := arrow.NewMetadata([]string{ShapeKey}, []string{string(shape)})
	f := arrow.Field{Name: o.Name, Type: o.Type, Metadata: md}
	if len(o.Shape) != 0 && (len(o.Shape) != 1 || o.Shape[0] != 1) {
		f.Type = arrow.FixedSizeListOfNonNullable(int32(width), o.Type)
	}
	return outputCol{Output: o, width: int(width), rowBytes: width * int64(eb), field: f}, nil
}

func shapeOrEmpty(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

// resultSchema is the result's arrow schema: kept columns in input order,
// then one column per output. It refuses a name used twice.
func resultSchema(kept []arrow.Field, outputs []Output) (*arrow.Schema, []outputCol, error) {
	seen := make(map[string]string, len(kept)+len(outputs))
	fields := make([]arrow.Field, 0, len(kept)+len(outputs))
	for _, f := range kept {
		if prev, ok := seen[f.Name]; ok {
			return nil, nil, fmt.Errorf("%w: kept column %q is also %s", ErrNameClash, f.Name, prev)
		}
		seen[f.Name] = "a kept column"
		fields = append(fields, f)
	}
	cols := make([]outputCol, 0, len(outputs))
	keys, vals := []string{}, []string{}
	for _, o := range outputs {
		if prev, ok := seen[o.Name]; ok {
			return nil, nil, fmt.Errorf("%w: model output %q has the same name as %s; keep fewer columns or rename that column in the input", ErrNameClash, o.Name, prev)
		}
		seen[o.Name] = "a model output"
		c, err := resolveOutput(o)
		if err != nil {
			return nil, nil, err
		}
		cols = append(cols, c)
		fields = append(fields, c.field)
		keys = append(keys, ShapeKey+"."+o.Name)
		vals = append(vals, c.field.Metadata.Values()[0])
	}
	md := arrow.NewMetadata(keys, vals)
	return arrow.NewSchema(fields, &md), cols, nil
}
