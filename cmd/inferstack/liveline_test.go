package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLiveLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tty    bool
		states []string
		want   string
	}{
		{name: "not a terminal: each change once, a line each", states: []string{"a", "a", "a", "b", "b", "a", "a"}, want: "a\nb\na\n"},
		{name: "not a terminal: nothing shown, nothing written", want: ""},
		{name: "not a terminal: an empty state is a state", states: []string{"", "", "x"}, want: "\nx\n"},
		{name: "terminal: redrawn in place every time", tty: true, states: []string{"a", "a", "b"}, want: "\ra   \ra   \rb   \n"},
		{name: "terminal: nothing drawn, no newline", tty: true, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			l := &liveLine{w: &b, tty: tc.tty}
			for _, s := range tc.states {
				l.Show(s)
			}
			l.End()
			require.Equal(t, tc.want, b.String())
		})
	}
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close() //nolint:errcheck // a test file
	require.False(t, isTerminal(f), "a file")
	require.False(t, isTerminal(&bytes.Buffer{}), "a buffer")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close() //nolint:errcheck // a test pipe
	defer w.Close() //nolint:errcheck // a test pipe
	require.False(t, isTerminal(w), "a pipe")
}
