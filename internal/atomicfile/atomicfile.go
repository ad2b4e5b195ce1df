// Package atomicfile replaces a file's contents so that readers see the old
// file or the new, never a part of either.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a temporary file beside path (creating its
// directory), syncs it to disk when sync is set, and renames it into place.
// Without sync a crash may leave the new file empty, never half-written.
func Write(path string, data []byte, sync bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil && sync {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name()) // best effort: a stray temp file is harmless
	}
	return err
}
