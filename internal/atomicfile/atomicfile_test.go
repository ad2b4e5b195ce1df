package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteReplacesTheFileAndLeavesNoTemporary(t *testing.T) {
	t.Parallel()
	for _, sync := range []bool{true, false} {
		dir := t.TempDir()
		path := filepath.Join(dir, "sub", "state.json")
		require.NoError(t, Write(path, []byte("old"), sync))
		require.NoError(t, Write(path, []byte("new"), sync))
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, "new", string(got))
		entries, err := os.ReadDir(filepath.Dir(path))
		require.NoError(t, err)
		require.Len(t, entries, 1, "no temporary file is left beside it")
	}
}

func TestAFailedWriteLeavesTheOldFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	require.NoError(t, Write(path, []byte("old"), true))
	// A directory where the file should go: the rename fails.
	require.Error(t, Write(dir, []byte("new"), true))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "old", string(got))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
}
