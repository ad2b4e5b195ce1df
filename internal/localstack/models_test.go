package localstack

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlanModels(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		stack  string
		extra  []string
		want   []Model
		refuse string
	}{
		{name: "the stack's own", stack: "mlp.onnx", want: []Model{{File: "mlp.onnx", Key: "models/mlp.onnx"}}},
		{name: "by base name", stack: "mlp.onnx", extra: []string{"../elsewhere/my.onnx", "b.onnx"},
			want: []Model{{"mlp.onnx", "models/mlp.onnx"}, {"../elsewhere/my.onnx", "models/my.onnx"}, {"b.onnx", "models/b.onnx"}}},
		{name: "one file named twice", stack: "mlp.onnx", extra: []string{"./mlp.onnx", filepath.Join(dir, "x.onnx"), filepath.Join(dir, "x.onnx")},
			want: []Model{{"mlp.onnx", "models/mlp.onnx"}, {filepath.Join(dir, "x.onnx"), "models/x.onnx"}}},
		{name: "two files, one key", stack: "mlp.onnx", extra: []string{filepath.Join(dir, "mlp.onnx")}, refuse: "would both be models/mlp.onnx"},
		{name: "two extras, one key", stack: "mlp.onnx", extra: []string{"a/m.onnx", "b/m.onnx"}, refuse: "would both be models/m.onnx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanModels(tc.stack, tc.extra)
			if tc.refuse != "" {
				require.ErrorContains(t, err, tc.refuse)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	require.Equal(t, "my.onnx", Model{Key: "models/my.onnx"}.Name())
}
