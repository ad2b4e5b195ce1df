package nearest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		want string
		have []string
		n    int
		got  []string
	}{
		{"cpuMaxTask", []string{"gpuMaxTasks", "cpuMaxTasks", "tier"}, 1, []string{"cpuMaxTasks"}},
		{"gpuTaskMem", []string{"gpuTaskCpu", "gpuTaskMemory"}, 1, []string{"gpuTaskMemory"}},
		{"Feature1", []string{"id", "feature_2", "feature_1"}, 2, []string{"feature_1", "feature_2"}},
		{"x", nil, 3, []string{}},
		{"ab", []string{"ax", "ay", "zz"}, 2, []string{"ax", "ay"}}, // ties keep their order
	} {
		require.Equal(t, c.got, Names(c.want, c.have, c.n), c.want)
	}
	require.Equal(t, 3, distance("kitten", "sitting"))
}
