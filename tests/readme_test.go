package tests

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's layout table names every Go package's folder (or a folder
// above it), and every folder it names exists: folders show the
// architecture, so the map of them must not drift.
func TestReadmeLayoutMatchesTheFolders(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(readme), "\n## Layout\n")
	require.True(t, ok, "README has a Layout section")
	if next := strings.Index(table, "\n## "); next >= 0 {
		table = table[:next]
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)`").FindAllStringSubmatch(table, -1) {
		named[m[1]] = true
	}
	for dir := range named {
		if strings.HasSuffix(dir, ".go") || strings.Contains(dir, "*") {
			continue // files, such as main.go and Pulumi*.yaml
		}
		info, err := os.Stat(filepath.Join("..", dir))
		require.NoError(t, err, "the layout names %s, which does not exist", dir)
		require.True(t, info.IsDir(), dir)
	}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", path)
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || rel == "bin" || rel == "out" || rel == "dist") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".go") || filepath.Dir(rel) == "." {
			return nil
		}
		for dir := filepath.Dir(rel); dir != "."; dir = filepath.Dir(dir) {
			if named[dir] {
				return nil
			}
		}
		t.Errorf("the README's layout table does not name %s (or a folder above it)", filepath.Dir(rel))
		return nil
	})
	require.NoError(t, err)
}
