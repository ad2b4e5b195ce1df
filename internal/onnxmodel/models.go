package onnxmodel

import (
	"math"
	"math/rand/v2"
)

// MLP is a two-layer perceptron with fixed random weights: x[N,In] -> Relu(x·W1+b1)
// -> logits = h·W2+b2 -> probs = Softmax(logits). Its two outputs let tests cover
// multi-output models; Reference recomputes both in float64.
type MLP struct {
	In, Hidden, Out int
	W1, B1, W2, B2  []float32
}

// NewMLP draws the weights from a seeded generator so a test can rebuild the same model.
func NewMLP(in, hidden, out int, seed uint64) *MLP {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	fill := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	return &MLP{
		In: in, Hidden: hidden, Out: out,
		W1: fill(in*hidden, 1/math.Sqrt(float64(in))),
		B1: fill(hidden, 0.1),
		W2: fill(hidden*out, 1/math.Sqrt(float64(hidden))),
		B2: fill(out, 0.1),
	}
}

// Model returns the serialized ONNX model with input "x" [N,In] and outputs
// "logits" and "probs" [N,Out], N dynamic.
func (m *MLP) Model() ([]byte, error) {
	g := newGraph("mlp")
	g.input("x", -1, int64(m.In))
	w1 := g.constant("w1", []int64{int64(m.In), int64(m.Hidden)}, m.W1)
	b1 := g.constant("b1", []int64{int64(m.Hidden)}, m.B1)
	w2 := g.constant("w2", []int64{int64(m.Hidden), int64(m.Out)}, m.W2)
	b2 := g.constant("b2", []int64{int64(m.Out)}, m.B2)
	h := g.node("MatMul", "h0", []string{"x", w1})
	h = g.node("Add", "h1", []string{h, b1})
	h = g.node("Relu", "h2", []string{h})
	l := g.node("MatMul", "l0", []string{h, w2})
	g.node("Add", "logits", []string{l, b2})
	g.node("Softmax", "probs", []string{"logits"}, intAttr("axis", -1))
	g.output("logits", -1, int64(m.Out))
	g.output("probs", -1, int64(m.Out))
	return g.model("two-layer perceptron with fixed random weights (inferstack test model)")
}

// Reference computes logits and probs for the samples in x (len(x) = N*In) in float64.
func (m *MLP) Reference(x []float32) (logits, probs []float64) {
	n := len(x) / m.In
	logits = make([]float64, n*m.Out)
	probs = make([]float64, n*m.Out)
	h := make([]float64, m.Hidden)
	for s := range n {
		row := x[s*m.In : (s+1)*m.In]
		for j := range m.Hidden {
			acc := float64(m.B1[j])
			for i, v := range row {
				acc += float64(v) * float64(m.W1[i*m.Hidden+j])
			}
			h[j] = max(acc, 0)
		}
		out := logits[s*m.Out : (s+1)*m.Out]
		for k := range m.Out {
			acc := float64(m.B2[k])
			for j, v := range h {
				acc += v * float64(m.W2[j*m.Out+k])
			}
			out[k] = acc
		}
		softmax(probs[s*m.Out:(s+1)*m.Out], out)
	}
	return logits, probs
}

func softmax(dst, logits []float64) {
	peak := math.Inf(-1)
	for _, v := range logits {
		peak = max(peak, v)
	}
	var sum float64
	for i, v := range logits {
		dst[i] = math.Exp(v - peak)
		sum += dst[i]
	}
	for i := range dst {
		dst[i] /= sum
	}
}

// EnergyDetector classifies windows of a signal as quiet or event by their mean
// energy: probs[N,2] = Softmax([-z/2, z/2]) with z = Scale·(mean(x²) - Threshold).
// Input "x" is [N,Window]. It is the demo's model: simple enough to judge by eye.
type EnergyDetector struct {
	Window           int
	Threshold, Scale float32
}

// Model returns the serialized detector.
func (d EnergyDetector) Model() ([]byte, error) {
	g := newGraph("energy_detector")
	g.input("x", -1, int64(d.Window))
	sq := g.node("Mul", "sq", []string{"x", "x"})
	energy := g.node("ReduceMean", "energy", []string{sq}, intsAttr("axes", 1), intAttr("keepdims", 1))
	centred := g.node("Sub", "centred", []string{energy, g.constant("threshold", []int64{1}, []float32{d.Threshold})})
	half := g.node("Mul", "half", []string{centred, g.constant("half_scale", []int64{1}, []float32{d.Scale / 2})})
	neg := g.node("Neg", "neg", []string{half})
	both := g.node("Concat", "both", []string{neg, half}, intAttr("axis", 1))
	g.node("Softmax", "probs", []string{both}, intAttr("axis", 1))
	g.output("probs", -1, 2)
	return g.model("window energy detector: probs[:,1] is the probability of an event (inferstack demo model)")
}

// Reference returns the event probability of each window in x (len(x) = N*Window).
func (d EnergyDetector) Reference(x []float32) []float64 {
	n := len(x) / d.Window
	p := make([]float64, n)
	for s := range n {
		var e float64
		for _, v := range x[s*d.Window : (s+1)*d.Window] {
			e += float64(v) * float64(v)
		}
		z := float64(d.Scale) * (e/float64(d.Window) - float64(d.Threshold))
		p[s] = 1 / (1 + math.Exp(-z))
	}
	return p
}

// ChannelMean averages x[N,L,C] over its dynamic length axis L into "mean"[N,C];
// tests use it for inputs whose non-batch dims come from the file, and for
// windowing a multi-channel signal [T,C].
func ChannelMean(channels int) ([]byte, error) {
	g := newGraph("channel_mean")
	g.input("x", -1, -1, int64(channels))
	g.node("ReduceMean", "mean", []string{"x"}, intsAttr("axes", 1), intAttr("keepdims", 0))
	g.output("mean", -1, int64(channels))
	return g.model("mean over axis 1 (inferstack test model)")
}

// ModelWithBatch is Model with the batch dim fixed to batch, as some exported
// models have; the engine must pad their last batch.
func (m *MLP) ModelWithBatch(batch int64) ([]byte, error) {
	data, err := m.Model()
	if err != nil {
		return nil, err
	}
	return fixBatchDim(data, batch)
}
