package job

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseFeed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in    string
		input string
		cols  []string
		bad   bool
	}{
		{in: "float_input=a,b,c", input: "float_input", cols: []string{"a", "b", "c"}},
		{in: "x=features", input: "x", cols: []string{"features"}},
		{in: " x = a , b ", input: "x", cols: []string{"a", "b"}},
		{in: "x", bad: true},
		{in: "=a", bad: true},
		{in: "x=", bad: true},
		{in: "x=a,,b", bad: true},
	} {
		input, cols, err := ParseFeed(c.in)
		if c.bad {
			require.Error(t, err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		require.Equal(t, c.input, input)
		require.Equal(t, c.cols, cols)
	}
	cols, err := ParseColumns("id, ts")
	require.NoError(t, err)
	require.Equal(t, []string{"id", "ts"}, cols)
	for _, bad := range []string{"", "id,,ts", "id,id"} {
		_, err := ParseColumns(bad)
		require.Error(t, err, bad)
	}
}
