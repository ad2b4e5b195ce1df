package inference

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/atomicfile"
)

// ManifestFile is the name of the manifest in an output directory.
const ManifestFile = manifest.File

// DirSink writes one .npy per model output into a local directory, then the
// manifest. A stale manifest is removed before anything else is written, so a
// failed re-run never leaves an old manifest beside new partial outputs.
type DirSink struct {
	Dir string

	files   []*os.File
	paths   []string // every file Start created, for Abort
	outputs []OutputFile
}

var _ Sink = (*DirSink)(nil)

// NewDirSink returns a sink writing into dir (created if needed).
func NewDirSink(dir string) *DirSink { return &DirSink{Dir: dir} }

// Start creates the output files with their final headers.
func (d *DirSink) Start(plan Plan, outputs []OutputSpec) error {
	if err := prepareDir(d.Dir); err != nil {
		return err
	}
	files, headers := NpyOutputs(plan.Samples, outputs)
	d.outputs = files
	for i, o := range files {
		f, err := os.Create(filepath.Join(d.Dir, o.File))
		if err != nil {
			d.Abort()
			return withKind(ErrOutput, "create output: %w", err)
		}
		d.files, d.paths = append(d.files, f), append(d.paths, f.Name())
		if _, err := f.Write(headers[i]); err != nil {
			d.Abort()
			return withKind(ErrOutput, "write output: %w", err)
		}
	}
	return nil
}

// WriteChunk appends the chunk's rows to each output file.
func (d *DirSink) WriteChunk(_ int64, outputs [][]byte) error {
	for i, rows := range outputs {
		if _, err := d.files[i].Write(rows); err != nil {
			return withKind(ErrOutput, "write output: %w", err)
		}
	}
	return nil
}

// Finish syncs the outputs and then writes the manifest atomically.
func (d *DirSink) Finish(m *Manifest) error {
	for _, f := range d.files {
		if err := f.Sync(); err != nil {
			return withKind(ErrOutput, "sync output: %w", err)
		}
		if err := f.Close(); err != nil {
			return withKind(ErrOutput, "close output: %w", err)
		}
	}
	d.files = nil
	m.Outputs = d.outputs
	return writeManifest(d.Dir, m)
}

// prepareDir creates an output directory and removes a stale manifest from
// it before anything else is written.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return withKind(ErrOutput, "create output directory: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return withKind(ErrOutput, "remove stale manifest: %w", err)
	}
	return nil
}

// writeManifest writes m into dir atomically: the last thing a sink writes.
func writeManifest(dir string, m *Manifest) error {
	data, err := m.JSON()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, ManifestFile), data, true); err != nil {
		return withKind(ErrOutput, "write manifest: %w", err)
	}
	return nil
}

// Abort closes and removes the outputs written so far, as far as it can:
// without a manifest they are never taken for complete anyway.
func (d *DirSink) Abort() {
	for _, f := range d.files {
		_ = f.Close()
	}
	for _, p := range d.paths {
		_ = os.Remove(p)
	}
	d.files, d.paths = nil, nil
}

// NpyOutputs names the .npy file of each output of a run over samples
// samples, with its dtype and shape, and gives its header: what a sink
// writes before the rows. Every sink uses it, so their files agree.
func NpyOutputs(samples int64, outputs []OutputSpec) ([]OutputFile, [][]byte) {
	taken := map[string]bool{strings.TrimSuffix(ManifestFile, ".json"): true}
	files := make([]OutputFile, len(outputs))
	headers := make([][]byte, len(outputs))
	for i, o := range outputs {
		shape := append([]int64{samples}, o.SampleShape...)
		files[i] = OutputFile{Name: o.Name, File: uniqueFileName(o.Name, taken) + ".npy", DType: o.dt.String(), Shape: shape}
		headers[i] = npy.EncodeHeader(o.dt, shape)
	}
	return files, headers
}

// uniqueFileName turns an ONNX output name (which may hold '/', ':' and the
// like) into a safe file name that no other output of the run uses.
func uniqueFileName(name string, taken map[string]bool) string {
	safe := strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, name)
	safe = strings.TrimLeft(safe, ".")
	if safe == "" {
		safe = "output"
	}
	candidate := safe
	for i := 2; taken[candidate]; i++ {
		candidate = fmt.Sprintf("%s_%d", safe, i)
	}
	taken[candidate] = true
	return candidate
}
