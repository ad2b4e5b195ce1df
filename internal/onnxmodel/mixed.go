package onnxmodel

import (
	"fmt"
	"math"

	"github.com/inferstack/inferstack/internal/onnxpb"
)

// MixedTypes is a model whose inputs and outputs have none of the types the
// other models use, to exercise more element types: x float64 [N,Features],
// flag bool [N] and offset int32 [N] in;
//
//	y        = flag ? x·W + offset : -(x·W)   float64 [N]
//	positive = y > 0                          bool    [N]
//
// out.
type MixedTypes struct {
	Features int
	W        []float64 // [Features]
}

// NewMixedTypes draws the weights from seed.
func NewMixedTypes(features int, seed uint64) *MixedTypes {
	return &MixedTypes{Features: features, W: newWeights(seed).normal64(features, 1/math.Sqrt(float64(features)))}
}

// Inputs are "x" float64 [N,Features], "flag" bool [N] and "offset" int32 [N].
func (m *MixedTypes) Inputs() []Tensor {
	return []Tensor{
		{Name: "x", DType: "float64", Shape: []int64{-1, int64(m.Features)}},
		{Name: "flag", DType: "bool", Shape: []int64{-1}},
		{Name: "offset", DType: "int32", Shape: []int64{-1}},
	}
}

// Outputs are "y" float64 [N] and "positive" bool [N].
func (m *MixedTypes) Outputs() []Tensor {
	return []Tensor{
		{Name: "y", DType: "float64", Shape: []int64{-1}},
		{Name: "positive", DType: "bool", Shape: []int64{-1}},
	}
}

// Model returns the serialized ONNX model, N dynamic.
func (m *MixedTypes) Model() ([]byte, error) {
	g := newGraph("mixed_types")
	for _, t := range m.Inputs() {
		g.typedInput(t)
	}
	w := g.float64s("w", []int64{int64(m.Features)}, m.W)
	dot := g.node("MatMul", "dot", []string{"x", w}) // [N]
	off := g.node("Cast", "offset64", []string{"offset"}, intAttr("to", int64(onnxpb.TensorProto_DOUBLE)))
	on := g.node("Add", "on", []string{dot, off})
	neg := g.node("Neg", "neg", []string{dot})
	y := g.node("Where", "y", []string{"flag", on, neg})
	g.node("Greater", "positive", []string{y, g.float64s("zero", nil, []float64{0})})
	for _, t := range m.Outputs() {
		g.typedOutput(t)
	}
	return g.model("float64, bool and int32 inputs (inferstack test model)")
}

// Reference computes y and positive for x (len N*Features), flag and offset (len N).
func (m *MixedTypes) Reference(x []float64, flag []bool, offset []int32) (y []float64, positive []bool, err error) {
	n := len(flag)
	if len(x) != n*m.Features || len(offset) != n {
		return nil, nil, fmt.Errorf("%d x values, %d flags and %d offsets for rows of %d", len(x), n, len(offset), m.Features)
	}
	y = make([]float64, n)
	positive = make([]bool, n)
	for s := range n {
		var dot float64
		for i, v := range x[s*m.Features : (s+1)*m.Features] {
			dot += v * m.W[i]
		}
		if flag[s] {
			y[s] = dot + float64(offset[s])
		} else {
			y[s] = -dot
		}
		positive[s] = y[s] > 0
	}
	return y, positive, nil
}
