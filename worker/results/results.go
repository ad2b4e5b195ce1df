// Package results writes a job's results to S3 as multipart uploads and
// checkpoints them, so that another delivery of the job resumes them.
package results

import (
	"context"
	"fmt"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/predictions"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
)

// Sink is a job's results on their way to S3.
type Sink interface {
	inference.Sink
	// Progress is where the sink got, for abandoning its uploads after it stopped.
	Progress() *Checkpoint
}

// Open returns the sink of req's results: a table's predictions.parquet,
// unless the request asks for npy, else one .npy per output. run identifies
// the run (input version, model, threads); prior, if set, is the checkpoint
// it resumes (Resumable). rowGroupBytes sizes a new Parquet file's row
// groups (0: the predictions writer's default).
func Open(ctx context.Context, store *s3io.Store, req job.Request, src inference.Source, run Checkpoint, prior *Checkpoint, rowGroupBytes int64) Sink {
	if table, ok := src.(*inference.TableSource); ok && req.OutputFormat != job.OutputNpy {
		return &parquetSink{ctx: ctx, store: store, jobID: req.JobID, resultsPrefix: req.ResultsPrefix(), kept: table.KeptFields(),
			opts: predictions.Options{RowGroupBytes: rowGroupBytes}, cp: run, resume: prior}
	}
	return &npySink{ctx: ctx, store: store, jobID: req.JobID, resultsPrefix: req.ResultsPrefix(), cp: run, resume: prior}
}

// putManifest writes the manifest of a job whose results are complete,
// listing files. Last: its presence says the results are complete.
func putManifest(ctx context.Context, store *s3io.Store, resultsPrefix string, m *inference.Manifest, files []inference.OutputFile) error {
	m.Outputs = files
	data, err := m.JSON()
	if err != nil {
		return err
	}
	if err := store.Put(ctx, resultsPrefix+inference.ManifestFile, data, "application/json"); err != nil {
		return fmt.Errorf("upload manifest: %w", err)
	}
	return nil
}
