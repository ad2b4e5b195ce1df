// Package onnxmodel builds small ONNX models from Go: the models the demo and the
// tests run through the real ONNX Runtime, together with pure-Go reference
// computations to check ORT's answers against.
package onnxmodel

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/inferstack/inferstack/internal/onnxpb"
)

// IR version 8 and opset 17 are what ONNX Runtime 1.24 and every tool since
// 2022 read; opset 17 still takes ReduceMean's axes as an attribute.
const (
	irVersion = 8
	opset     = 17
)

// graph accumulates nodes and initializers; it keeps the builders below short.
type graph struct {
	g *onnxpb.GraphProto
}

func newGraph(name string) *graph {
	return &graph{g: &onnxpb.GraphProto{Name: proto.String(name)}}
}

// input declares a float32 graph input; a dim of -1 is dynamic and gets a name.
func (b *graph) input(name string, dims ...int64) {
	b.g.Input = append(b.g.Input, valueInfo(name, onnxpb.TensorProto_FLOAT, dims))
}

func (b *graph) output(name string, dims ...int64) {
	b.g.Output = append(b.g.Output, valueInfo(name, onnxpb.TensorProto_FLOAT, dims))
}

// typedInput declares a graph input of any element type Tensor names.
func (b *graph) typedInput(t Tensor) {
	b.g.Input = append(b.g.Input, valueInfo(t.Name, t.elemType(), t.Shape))
}

func (b *graph) typedOutput(t Tensor) {
	b.g.Output = append(b.g.Output, valueInfo(t.Name, t.elemType(), t.Shape))
}

// int64s adds an int64 initializer (Gather indices, ReduceSum and Unsqueeze
// axes) and returns its name.
func (b *graph) int64s(name string, dims []int64, data []int64) string {
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name:      proto.String(name),
		Dims:      dims,
		DataType:  proto.Int32(int32(onnxpb.TensorProto_INT64)),
		Int64Data: data,
	})
	return name
}

// float64s adds a float64 initializer and returns its name.
func (b *graph) float64s(name string, dims []int64, data []float64) string {
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name:       proto.String(name),
		Dims:       dims,
		DataType:   proto.Int32(int32(onnxpb.TensorProto_DOUBLE)),
		DoubleData: data,
	})
	return name
}

// constant adds a float32 initializer and returns its name.
func (b *graph) constant(name string, dims []int64, data []float32) string {
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name:      proto.String(name),
		Dims:      dims,
		DataType:  proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
		FloatData: data,
	})
	return name
}

// node adds an operator and returns the name of its single output.
func (b *graph) node(op string, out string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{
		Name:      proto.String(out),
		OpType:    proto.String(op),
		Input:     inputs,
		Output:    []string{out},
		Attribute: attrs,
	})
	return out
}

func (b *graph) model(doc string) ([]byte, error) {
	m := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(irVersion),
		ProducerName: proto.String("inferstack"),
		DocString:    proto.String(doc),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:        b.g,
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal model: %w", err)
	}
	return data, nil
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func valueInfo(name string, elem onnxpb.TensorProto_DataType, dims []int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for i, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: fmt.Sprintf("%s_dim%d", name, i)}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(elem)),
			Shape:    shape,
		}}},
	}
}

// fixBatchDim rewrites dim 0 of every graph input and output to batch.
func fixBatchDim(data []byte, batch int64) ([]byte, error) {
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("unmarshal model: %w", err)
	}
	for _, v := range append(m.Graph.Input, m.Graph.Output...) {
		v.GetType().GetTensorType().GetShape().Dim[0].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: batch}
	}
	return proto.Marshal(&m)
}
