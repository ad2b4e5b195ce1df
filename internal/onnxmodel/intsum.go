package onnxmodel

// IntSum sums each row of an int64 [N,K] input "ids" into "sum" int64 [N]:
// the smallest model with one input that is not float32.
func IntSum(k int) ([]byte, error) {
	g := newGraph("int_sum")
	g.typedInput(Tensor{Name: "ids", DType: "int64", Shape: []int64{-1, int64(k)}})
	axes := g.int64s("axes", []int64{1}, []int64{1})
	g.node("ReduceSum", "sum", []string{"ids", axes}, intAttr("keepdims", 0))
	g.typedOutput(Tensor{Name: "sum", DType: "int64", Shape: []int64{-1}})
	return g.model("row sums of int64 ids (inferstack test model)")
}
