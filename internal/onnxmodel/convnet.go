package onnxmodel

import (
	"math"
	"math/rand/v2"
)

// ConvNet is a small image classifier with fixed random weights, a model of
// another character than the MLP (compute-bound convolutions, larger
// per-sample input): x[N,C,H,W] -> Conv3x3(Filters)+Relu -> Conv3x3
// stride 2 (2*Filters)+Relu -> GlobalAveragePool -> Flatten -> logits[N,Classes].
// It exists for benchmarks; there is no reference computation.
type ConvNet struct {
	Channels, Filters, Classes int
	seed                       uint64
}

// NewConvNet describes a ConvNet whose weights are drawn from seed.
func NewConvNet(channels, filters, classes int, seed uint64) ConvNet {
	return ConvNet{Channels: channels, Filters: filters, Classes: classes, seed: seed}
}

// Model returns the serialized ONNX model with input "x" [N,C,H,W] (N, H and
// W dynamic) and output "logits" [N,Classes].
func (c ConvNet) Model() ([]byte, error) {
	r := rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15))
	fill := func(n int, fanIn int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() / math.Sqrt(float64(fanIn)))
		}
		return v
	}
	ch, f1, f2, k := int64(c.Channels), int64(c.Filters), int64(2*c.Filters), int64(c.Classes)
	g := newGraph("convnet")
	g.input("x", -1, ch, -1, -1)
	w1 := g.constant("w1", []int64{f1, ch, 3, 3}, fill(int(f1*ch*9), int(ch*9)))
	b1 := g.constant("b1", []int64{f1}, fill(int(f1), 10))
	w2 := g.constant("w2", []int64{f2, f1, 3, 3}, fill(int(f2*f1*9), int(f1*9)))
	b2 := g.constant("b2", []int64{f2}, fill(int(f2), 10))
	w3 := g.constant("w3", []int64{f2, k}, fill(int(f2*k), int(f2)))
	b3 := g.constant("b3", []int64{k}, fill(int(k), 10))
	h := g.node("Conv", "c1", []string{"x", w1, b1}, intsAttr("kernel_shape", 3, 3), intsAttr("pads", 1, 1, 1, 1))
	h = g.node("Relu", "r1", []string{h})
	h = g.node("Conv", "c2", []string{h, w2, b2}, intsAttr("kernel_shape", 3, 3), intsAttr("pads", 1, 1, 1, 1), intsAttr("strides", 2, 2))
	h = g.node("Relu", "r2", []string{h})
	h = g.node("GlobalAveragePool", "gap", []string{h})
	h = g.node("Flatten", "flat", []string{h}, intAttr("axis", 1))
	h = g.node("MatMul", "l0", []string{h, w3})
	g.node("Add", "logits", []string{h, b3})
	g.output("logits", -1, k)
	return g.model("small convolutional classifier with fixed random weights (inferstack benchmark model)")
}
