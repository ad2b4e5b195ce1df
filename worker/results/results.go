// Package results writes a job's results to S3 as multipart uploads and
// checkpoints them, so that another delivery of the job resumes them.
package results

import (
	"context"
	"fmt"
	"sync"

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

// Target is where a run's results go: its files and manifest under
// Prefix, its checkpoint and tail objects under Scope (a job id, or a
// shard's job.ShardScope). Rows makes each .npy output its rows alone, with
// no header: a shard's, which assembly puts behind the whole file's header.
type Target struct {
	Prefix string
	Scope  string
	Rows   bool
}

// JobTarget is where a job run by one worker writes.
func JobTarget(req job.Request) Target { return Target{Prefix: req.ResultsPrefix(), Scope: req.JobID} }

// Open returns the sink of a run's results: a table's predictions.parquet,
// unless the output format is npy, else one .npy per output. run identifies
// the run (input version, model, threads); prior, if set, is the checkpoint
// it resumes (Resumable). rowGroupBytes sizes a new Parquet file's row
// groups (0: the predictions writer's default).
func Open(ctx context.Context, store *s3io.Store, to Target, outputFormat string, src inference.Source, run Checkpoint, prior *Checkpoint, rowGroupBytes int64) Sink {
	if table, ok := src.(*inference.TableSource); ok && outputFormat != job.OutputNpy {
		return &parquetSink{ctx: ctx, store: store, scope: to.Scope, resultsPrefix: to.Prefix, kept: table.KeptFields(),
			opts: predictions.Options{RowGroupBytes: rowGroupBytes}, cp: run, resume: prior}
	}
	return &npySink{ctx: ctx, store: store, scope: to.Scope, resultsPrefix: to.Prefix, rowsOnly: to.Rows, cp: run, resume: prior}
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

// background is a sink's uploads in the background: the context they run
// in, and the first failure, which cancels the others and is every later
// call's answer.
type background struct {
	run    context.Context // the sink's, cancelled on the first failure
	cancel context.CancelFunc
	failed chan struct{} // closed on the first failure, kept in err
	once   sync.Once
	err    error
}

func (b *background) start(ctx context.Context) {
	b.run, b.cancel = context.WithCancel(ctx)
	b.failed = make(chan struct{})
}

func (b *background) fail(err error) {
	b.once.Do(func() {
		b.err = err
		close(b.failed)
		b.cancel()
	})
}

// failure is the first failure, nil while there is none.
func (b *background) failure() error {
	select {
	case <-b.failed:
		return b.err
	default:
		return nil
	}
}
