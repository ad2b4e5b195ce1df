package onnxmodel

import (
	"fmt"
	"math"

	"github.com/inferstack/inferstack/internal/onnxpb"
)

// TextEncoder is a sentence encoder of the shape text models have: token ids
// and an attention mask, both int64 [N,Length] with Length fixed in the model,
// in; a masked mean of the token embeddings through one dense layer out:
//
//	pooled    = Σ_l mask[l]·Emb[ids[l]] / max(Σ_l mask[l], 1)
//	embedding = Tanh(pooled·W + B)               float32 [N,Dim]
//	score     = Sigmoid(embedding·U + C)         float32 [N]
//	tokens    = Σ_l mask[l]                      int64   [N]
//
// The mask's values are weights (a tokenizer writes 0 and 1). The guarded
// denominator defines a row with no tokens: pooled is zero, so its embedding
// is Tanh(B). tokens is there to give the model an int64 output.
type TextEncoder struct {
	Vocab, Length, Dim int
	Emb                []float32 // [Vocab,Dim]
	W                  []float32 // [Dim,Dim]
	B                  []float32 // [Dim]
	U                  []float32 // [Dim]
	C                  float32
}

// NewTextEncoder draws the weights from seed.
func NewTextEncoder(vocab, length, dim int, seed uint64) *TextEncoder {
	w := newWeights(seed)
	return &TextEncoder{
		Vocab: vocab, Length: length, Dim: dim,
		Emb: w.normal(vocab*dim, 1),
		W:   w.normal(dim*dim, 1/math.Sqrt(float64(dim))),
		B:   w.normal(dim, 0.1),
		U:   w.normal(dim, 1/math.Sqrt(float64(dim))),
		C:   w.normal(1, 0.1)[0],
	}
}

// Inputs are "input_ids" and "attention_mask", int64 [N,Length].
func (m *TextEncoder) Inputs() []Tensor {
	l := int64(m.Length)
	return []Tensor{
		{Name: "input_ids", DType: "int64", Shape: []int64{-1, l}},
		{Name: "attention_mask", DType: "int64", Shape: []int64{-1, l}},
	}
}

// Outputs are "embedding" float32 [N,Dim], "score" float32 [N] and "tokens"
// int64 [N].
func (m *TextEncoder) Outputs() []Tensor {
	return []Tensor{
		{Name: "embedding", DType: "float32", Shape: []int64{-1, int64(m.Dim)}},
		{Name: "score", DType: "float32", Shape: []int64{-1}},
		{Name: "tokens", DType: "int64", Shape: []int64{-1}},
	}
}

// Model returns the serialized ONNX model, N dynamic.
func (m *TextEncoder) Model() ([]byte, error) {
	d := int64(m.Dim)
	g := newGraph("text_encoder")
	for _, t := range m.Inputs() {
		g.typedInput(t)
	}
	emb := g.constant("emb", []int64{int64(m.Vocab), d}, m.Emb)
	w := g.constant("w", []int64{d, d}, m.W)
	b := g.constant("b", []int64{d}, m.B)
	u := g.constant("u", []int64{d}, m.U)
	c := g.constant("c", []int64{1}, []float32{m.C})
	// Since opset 13 ReduceSum and Unsqueeze take their axes as an input.
	axis1 := g.int64s("axis1", []int64{1}, []int64{1})
	axis2 := g.int64s("axis2", []int64{1}, []int64{2})

	tok := g.node("Gather", "tok", []string{emb, "input_ids"}, intAttr("axis", 0)) // [N,L,D]
	mask := g.node("Cast", "mask", []string{"attention_mask"}, intAttr("to", int64(onnxpb.TensorProto_FLOAT)))
	mask3 := g.node("Unsqueeze", "mask3", []string{mask, axis2}) // [N,L,1]
	masked := g.node("Mul", "masked", []string{tok, mask3})
	sum := g.node("ReduceSum", "sum", []string{masked, axis1}, intAttr("keepdims", 0))   // [N,D]
	count := g.node("ReduceSum", "count", []string{mask, axis1}, intAttr("keepdims", 1)) // [N,1]
	denom := g.node("Max", "denom", []string{count, g.constant("one", []int64{1}, []float32{1})})
	pooled := g.node("Div", "pooled", []string{sum, denom})
	h := g.node("MatMul", "h0", []string{pooled, w})
	h = g.node("Add", "h1", []string{h, b})
	e := g.node("Tanh", "embedding", []string{h})
	s := g.node("MatMul", "s0", []string{e, u}) // [N]
	s = g.node("Add", "s1", []string{s, c})
	g.node("Sigmoid", "score", []string{s})
	g.node("ReduceSum", "tokens", []string{"attention_mask", axis1}, intAttr("keepdims", 0))
	for _, t := range m.Outputs() {
		g.typedOutput(t)
	}
	return g.model("masked-mean text encoder with fixed random weights (inferstack test model)")
}

// Reference computes embedding [N*Dim], score [N] and tokens [N] in float64
// (tokens in int64) for ids and mask (len N*Length each). An id follows ONNX
// Gather (negative ids count from the end of the vocabulary, others outside
// it are an error), so it is checked where its mask is 0 too.
func (m *TextEncoder) Reference(ids, mask []int64) (embedding, score []float64, tokens []int64, err error) {
	if len(ids) != len(mask) || len(ids)%m.Length != 0 {
		return nil, nil, nil, fmt.Errorf("%d ids and %d mask values for rows of %d", len(ids), len(mask), m.Length)
	}
	n := len(ids) / m.Length
	embedding = make([]float64, n*m.Dim)
	score = make([]float64, n)
	tokens = make([]int64, n)
	pooled := make([]float64, m.Dim)
	for s := range n {
		clear(pooled)
		var count float64
		for l := range m.Length {
			k := s*m.Length + l
			id, err := gatherIndex(ids[k], m.Vocab)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("row %d: input_ids[%d]: %w", s, l, err)
			}
			weight := float64(mask[k])
			count += weight
			tokens[s] += mask[k]
			for j := range m.Dim {
				pooled[j] += weight * float64(m.Emb[id*m.Dim+j])
			}
		}
		denom := max(count, 1)
		for j := range pooled {
			pooled[j] /= denom
		}
		out := embedding[s*m.Dim : (s+1)*m.Dim]
		z := float64(m.C)
		for k := range m.Dim {
			acc := float64(m.B[k])
			for j, v := range pooled {
				acc += v * float64(m.W[j*m.Dim+k])
			}
			out[k] = math.Tanh(acc)
			z += out[k] * float64(m.U[k])
		}
		score[s] = sigmoid(z)
	}
	return embedding, score, tokens, nil
}
