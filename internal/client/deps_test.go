package client

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A client reads manifests through their contract package: it links neither
// ONNX Runtime nor the engine.
func TestClientLinksNoONNXRuntime(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/inferstack/inferstack/internal/client").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, dep := range strings.Fields(string(out)) {
		require.NotEqual(t, "github.com/yalue/onnxruntime_go", dep)
		require.NotEqual(t, "github.com/inferstack/inferstack/inference", dep)
	}
	require.Contains(t, strings.Fields(string(out)), "github.com/inferstack/inferstack/inference/manifest")
}
