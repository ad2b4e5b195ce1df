package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/predictions"
	"github.com/inferstack/inferstack/internal/job"
)

// run does the job and returns its manifest once results and manifest are
// in S3, keeping its status object up to date as it goes. The bool is false
// when another delivery had already done the job: announcing it was that
// delivery's part, unless its status says it did not (Worker.unannounced),
// so duplicates yield one event. When engine ends (a
// hand-over) the engine stops at a chunk boundary, and the chunks it wrote
// are checkpointed under ctx before run returns.
func (w *Worker) run(ctx, engine context.Context, req job.Request, status *statusWriter, log *slog.Logger) (*inference.Manifest, bool, error) {
	inputKey := req.InputKey()
	head, err := w.store.head(ctx, inputKey)
	if err != nil {
		return nil, false, fmt.Errorf("input: %w", err)
	}
	modelKey := w.cfg.ModelKey
	if req.Model != "" {
		modelKey = job.ModelKey(req.Model)
	}
	model, err := w.model(ctx, modelKey)
	if err != nil {
		return nil, false, err
	}
	resultsPrefix := req.ResultsPrefix()
	etag := aws.ToString(head.ETag)

	var done inference.Manifest
	switch err := w.store.getJSON(ctx, resultsPrefix+inference.ManifestFile, &done); {
	case err == nil && done.Input.ETag == etag && done.Model.SHA256 == model.SHA256:
		log.Info("job already done for this input and model: acknowledging")
		return &done, false, nil
	case err != nil && !errors.Is(err, errNotFound):
		return nil, false, fmt.Errorf("read manifest: %w", err)
	}

	// The input is read ahead with concurrent ranged GETs (readahead.go);
	// a restart from scratch reads it again from the start. Its reads are
	// the engine's: a hand-over that stops the engine stops them too.
	input := w.store.reader(engine, inputKey, etag, aws.ToInt64(head.ContentLength), w.cfg.ReadPartBytes, w.cfg.ReadConcurrency)
	defer input.Close()
	ej := inference.Job{
		Model: model, Input: input, InputSize: aws.ToInt64(head.ContentLength),
		InputName: inputKey, InputETag: etag, Windowing: inference.Windowing{Window: req.Window, Hop: req.Hop},
		Device: inference.Device(w.cfg.Device), BatchSize: w.cfg.BatchSize, ChunkSamples: w.cfg.ChunkSamples, Threads: w.cfg.Threads, Logger: log,
	}
	if req.IsTable() {
		src, err := inference.OpenTable(input, ej.InputSize, inputKey, model, inference.TableOptions{Format: req.InputFormat, Feed: req.Feed, Keep: req.Keep})
		if err != nil {
			return nil, false, err
		}
		defer src.Close()
		ej.Source = src
	}
	var last time.Time
	ej.Progress = func(doneSamples, total int64) {
		status.progressed.Store(true)
		if time.Since(last) >= w.cfg.StatusEvery || doneSamples == total {
			last = time.Now()
			status.set(job.StateRunning, func(s *job.Status) { s.SamplesDone, s.SamplesTotal = doneSamples, total })
		}
	}
	prior := w.resumable(ctx, req.JobID, etag, model.SHA256, log)
	for restarted := false; ; restarted = true {
		attempt := ej
		sink := w.sink(ctx, req, ej.Source, checkpoint{InputETag: etag, ModelSHA256: model.SHA256, Threads: w.cfg.Threads}, prior)
		if prior != nil {
			attempt.BatchSize, attempt.ChunkSamples, attempt.StartChunk = prior.BatchSize, prior.ChunkSamples, prior.Done
			log.Info("resuming from checkpoint", "chunks_done", prior.Done)
		}
		status.set(job.StateRunning, func(s *job.Status) { s.ResumedAtChunk = attempt.StartChunk })
		m, err := inference.Run(engine, attempt, sink)
		if errors.Is(err, errUploadGone) && !restarted && ctx.Err() == nil {
			// Expired, aborted, or completed by another delivery of this job.
			if err := w.store.getJSON(ctx, resultsPrefix+inference.ManifestFile, &done); err == nil && done.Input.ETag == etag && done.Model.SHA256 == model.SHA256 {
				log.Info("job done meanwhile by another delivery: acknowledging")
				return &done, false, nil
			}
			log.Warn("the job's multipart upload is gone: restarting it from scratch", "err", err)
			w.abandon(ctx, req.JobID, log, prior, sink.progress())
			prior = nil
			continue
		}
		if err != nil {
			return nil, false, err
		}
		status.set(job.StateDone, doneFrom(m))
		return m, true, nil
	}
}

// resultSink is a job's results on their way to S3.
type resultSink interface {
	inference.Sink
	// progress is where the sink got, for abandoning its uploads after it stopped.
	progress() *checkpoint
}

// sink writes the job's results: a table's predictions.parquet, unless the
// request asks for npy, else one .npy per output; resuming prior if set.
func (w *Worker) sink(ctx context.Context, req job.Request, src inference.Source, cp checkpoint, prior *checkpoint) resultSink {
	if table, ok := src.(*inference.TableSource); ok && req.OutputFormat != job.OutputNpy {
		return &parquetSink{ctx: ctx, store: w.store, jobID: req.JobID, resultsPrefix: req.ResultsPrefix(), kept: table.KeptFields(),
			opts: predictions.Options{RowGroupBytes: w.cfg.ResultRowGroupBytes}, cp: cp, resume: prior}
	}
	return &s3Sink{ctx: ctx, store: w.store, jobID: req.JobID, resultsPrefix: req.ResultsPrefix(), cp: cp, resume: prior}
}

// doneFrom is the status change of a job done as its manifest m says.
func doneFrom(m *inference.Manifest) func(*job.Status) {
	return func(s *job.Status) {
		s.SamplesDone, s.SamplesTotal = m.Samples, m.Samples
		s.Device, s.FallbackReason = string(m.Device.Used), m.Device.Fallback
		s.EngineStartedAt, s.EngineFinishedAt = &m.StartedAt, &m.FinishedAt
	}
}
