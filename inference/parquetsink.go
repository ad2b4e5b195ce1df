package inference

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/inferstack/inferstack/inference/predictions"
	"github.com/inferstack/inferstack/inference/tables"
)

// PredictionsFile is a table job's result beside its manifest: the kept
// columns, then one column per model output.
const PredictionsFile = "predictions.parquet"

// ParquetDirSink writes a table job's result into a local directory as
// PredictionsFile, then the manifest.
type ParquetDirSink struct {
	Dir  string
	Kept []arrow.Field // the kept columns, as the source reads them
	// Options tune the result's row groups (the zero value: the defaults,
	// as the worker's unless its deployment says otherwise).
	Options predictions.Options

	f       *os.File
	w       *predictions.Writer
	files   []OutputFile
	started bool
}

var _ RowsSink = (*ParquetDirSink)(nil)

// NewParquetDirSink returns a sink writing into dir (created if needed).
func NewParquetDirSink(dir string, kept []arrow.Field) *ParquetDirSink {
	return &ParquetDirSink{Dir: dir, Kept: kept}
}

// PredictionsOutputs are the model outputs as result columns.
func PredictionsOutputs(outputs []OutputSpec) ([]predictions.Output, error) {
	cols := make([]predictions.Output, len(outputs))
	for i, o := range outputs {
		t, err := tables.ParseElemType(o.DType)
		if err != nil {
			return nil, withKind(ErrBadModel, "output %q: %w", o.Name, err)
		}
		cols[i] = predictions.Output{Name: o.Name, Type: t.ArrowType(), Shape: o.SampleShape}
	}
	return cols, nil
}

// Start creates the result file.
func (d *ParquetDirSink) Start(plan Plan, outputs []OutputSpec) error {
	if err := prepareDir(d.Dir); err != nil {
		return err
	}
	cols, err := PredictionsOutputs(outputs)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(d.Dir, PredictionsFile))
	if err != nil {
		return withKind(ErrOutput, "create output: %w", err)
	}
	w, err := predictions.New(f, d.Kept, cols, d.Options)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return PredictionsError(err)
	}
	d.f, d.w, d.started = f, w, true
	d.files = ParquetOutputs(plan.Samples, outputs)
	return nil
}

// ParquetOutputs are the outputs as the manifest lists them when they are
// columns of PredictionsFile.
func ParquetOutputs(samples int64, outputs []OutputSpec) []OutputFile {
	files := make([]OutputFile, len(outputs))
	for i, o := range outputs {
		files[i] = OutputFile{Name: o.Name, File: PredictionsFile, DType: o.DType, Shape: append([]int64{samples}, o.SampleShape...)}
	}
	return files
}

// PredictionsError is how a sink reports a writer's refusal to start: a
// kept column named as an output is the input's fault.
func PredictionsError(err error) error {
	if errors.Is(err, predictions.ErrNameClash) {
		return withKind(ErrBadInput, "%w", err)
	}
	return withKind(ErrOutput, "start %s: %w", PredictionsFile, err)
}

// WriteChunk stores a chunk of a job without kept columns.
func (d *ParquetDirSink) WriteChunk(start int64, outputs [][]byte) error {
	return d.WriteRows(start, outputs, nil)
}

// WriteRows appends the chunk's rows: its kept columns and its outputs.
func (d *ParquetDirSink) WriteRows(_ int64, outputs [][]byte, kept arrow.RecordBatch) error {
	n := 0
	if len(outputs) > 0 && len(d.files) > 0 {
		n = len(outputs[0]) / int(max(1, rowBytes(d.files[0])))
	}
	if kept == nil {
		kept = array.NewRecordBatch(arrow.NewSchema(d.Kept, nil), nil, int64(n))
		defer kept.Release()
	}
	if err := d.w.Write(kept, outputs, int(kept.NumRows())); err != nil {
		return withKind(ErrOutput, "write %s: %w", PredictionsFile, err)
	}
	return nil
}

// rowBytes is one row of an output as the pipeline hands it over.
func rowBytes(o OutputFile) int64 {
	return product(o.Shape[1:]) * elemSizes[o.DType]
}

// Finish closes the result file, then writes the manifest atomically.
func (d *ParquetDirSink) Finish(m *Manifest) error {
	if err := d.w.Close(); err != nil {
		return withKind(ErrOutput, "finish %s: %w", PredictionsFile, err)
	}
	if err := d.f.Sync(); err != nil {
		return withKind(ErrOutput, "sync output: %w", err)
	}
	if err := d.f.Close(); err != nil {
		return withKind(ErrOutput, "close output: %w", err)
	}
	d.f = nil
	m.Outputs = d.files
	return writeManifest(d.Dir, m)
}

// Abort removes the result file.
func (d *ParquetDirSink) Abort() {
	if d.f != nil {
		_ = d.f.Close()
		d.f = nil
	}
	if d.started {
		_ = os.Remove(filepath.Join(d.Dir, PredictionsFile))
	}
}
