package onnxmodel

import (
	"math/rand/v2"

	"github.com/inferstack/inferstack/internal/onnxpb"
)

// Tensor declares one graph input or output of a multi-input model: its name,
// element type (numpy-style names, as inference reports them: "float32",
// "float64", "int32", "int64", "bool") and shape, -1 for a dynamic dim. Each
// model's Inputs and Outputs are what its graph declares, so a test can check
// what ONNX Runtime reads back against the same values.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
}

var elemTypes = map[string]onnxpb.TensorProto_DataType{
	"float32": onnxpb.TensorProto_FLOAT,
	"float64": onnxpb.TensorProto_DOUBLE,
	"int32":   onnxpb.TensorProto_INT32,
	"int64":   onnxpb.TensorProto_INT64,
	"bool":    onnxpb.TensorProto_BOOL,
}

// elemType panics on an unknown name: the names are constants in this package.
func (t Tensor) elemType() onnxpb.TensorProto_DataType {
	e, ok := elemTypes[t.DType]
	if !ok {
		panic("onnxmodel: unknown dtype " + t.DType)
	}
	return e
}

// weights draws fixed random weights from a seed, so a test that rebuilds a
// model with the same seed gets the same one.
type weights struct{ r *rand.Rand }

func newWeights(seed uint64) weights {
	return weights{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// normal returns n draws of N(0, scale²) as float32.
func (w weights) normal(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(w.r.NormFloat64() * scale)
	}
	return v
}

// normal64 returns n draws of N(0, scale²).
func (w weights) normal64(n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = w.r.NormFloat64() * scale
	}
	return v
}
