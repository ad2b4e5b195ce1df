package onnxmodel

import (
	"fmt"
	"math"
)

// Tabular is a logistic scorer of a tabular row with a categorical feature, the
// shape of a typical tabular model: float features x[N,K] and an int64
// category c[N] (0..Categories-1) in, score = Sigmoid(x·W + B + Emb[c]) [N,1]
// and probs = [1-score, score] [N,2] out. The category goes through an
// embedding lookup (Gather), so the model reads int64 values, not floats.
type Tabular struct {
	Features, Categories int
	W                    []float32 // [Features]
	B                    float32
	Emb                  []float32 // [Categories], one logit offset per category
}

// NewTabular draws the weights from seed.
func NewTabular(features, categories int, seed uint64) *Tabular {
	w := newWeights(seed)
	return &Tabular{
		Features: features, Categories: categories,
		W:   w.normal(features, 1/math.Sqrt(float64(features))),
		B:   w.normal(1, 0.1)[0],
		Emb: w.normal(categories, 1),
	}
}

// Inputs are "float_input" float32 [N,Features] and "category" int64 [N].
func (m *Tabular) Inputs() []Tensor {
	return []Tensor{
		{Name: "float_input", DType: "float32", Shape: []int64{-1, int64(m.Features)}},
		{Name: "category", DType: "int64", Shape: []int64{-1}},
	}
}

// Outputs are "score" float32 [N,1] and "probs" float32 [N,2].
func (m *Tabular) Outputs() []Tensor {
	return []Tensor{
		{Name: "score", DType: "float32", Shape: []int64{-1, 1}},
		{Name: "probs", DType: "float32", Shape: []int64{-1, 2}},
	}
}

// Model returns the serialized ONNX model, N dynamic.
func (m *Tabular) Model() ([]byte, error) {
	g := newGraph("tabular")
	for _, t := range m.Inputs() {
		g.typedInput(t)
	}
	w := g.constant("w", []int64{int64(m.Features), 1}, m.W)
	b := g.constant("b", []int64{1}, []float32{m.B})
	emb := g.constant("emb", []int64{int64(m.Categories), 1}, m.Emb)
	lin := g.node("MatMul", "lin0", []string{"float_input", w})
	lin = g.node("Add", "lin", []string{lin, b})
	// Gather of emb [C,1] at c [N] gives [N,1], the row's category offset.
	off := g.node("Gather", "cat_offset", []string{emb, "category"}, intAttr("axis", 0))
	z := g.node("Add", "logit", []string{lin, off})
	score := g.node("Sigmoid", "score", []string{z})
	rest := g.node("Sub", "rest", []string{g.constant("one", []int64{1}, []float32{1}), score})
	g.node("Concat", "probs", []string{rest, score}, intAttr("axis", 1))
	for _, t := range m.Outputs() {
		g.typedOutput(t)
	}
	return g.model("tabular logistic scorer with a category embedding, fixed random weights (inferstack test model)")
}

// Reference computes score [N] and probs [N*2] in float64 for x (len N*Features)
// and category (len N). A category follows ONNX Gather: -Categories..-1 count
// from the end; anything outside [-Categories, Categories) is an error, as
// ONNX Runtime refuses it too.
func (m *Tabular) Reference(x []float32, category []int64) (score, probs []float64, err error) {
	n := len(category)
	if len(x) != n*m.Features {
		return nil, nil, fmt.Errorf("%d features for %d rows of %d", len(x), n, m.Features)
	}
	score = make([]float64, n)
	probs = make([]float64, 2*n)
	for s := range n {
		c, err := gatherIndex(category[s], m.Categories)
		if err != nil {
			return nil, nil, fmt.Errorf("row %d: category: %w", s, err)
		}
		z := float64(m.B) + float64(m.Emb[c])
		for i, v := range x[s*m.Features : (s+1)*m.Features] {
			z += float64(v) * float64(m.W[i])
		}
		score[s] = sigmoid(z)
		probs[2*s], probs[2*s+1] = 1-score[s], score[s]
	}
	return score, probs, nil
}

// gatherIndex resolves an index as ONNX Gather does.
func gatherIndex(i int64, n int) (int, error) {
	if i < -int64(n) || i >= int64(n) {
		return 0, fmt.Errorf("index %d out of range [%d, %d)", i, -n, n)
	}
	if i < 0 {
		i += int64(n)
	}
	return int(i), nil
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
