package tests

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Test harnesses stay out of production binaries (STYLE.md, habit 13):
// nothing the commands under cmd/ link imports testing, a dependency's
// included.
func TestBinariesDoNotLinkTesting(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-deps", "./cmd/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	require.NoError(t, err, "go list -deps ./cmd/...")
	deps := strings.Fields(string(out))
	require.NotEmpty(t, deps)
	require.False(t, slices.Contains(deps, "testing"), "a binary under cmd/ links package testing: `go list -deps ./cmd/...` says which package brings it in")
}
