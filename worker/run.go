package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/worker/results"
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
	head, err := w.store.Head(ctx, inputKey)
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
	switch err := w.store.GetJSON(ctx, resultsPrefix+inference.ManifestFile, &done); {
	case err == nil && done.Input.ETag == etag && done.Model.SHA256 == model.SHA256:
		log.Info("job already done for this input and model: acknowledging")
		return &done, false, nil
	case err != nil && !errors.Is(err, s3io.ErrNotFound):
		return nil, false, fmt.Errorf("read manifest: %w", err)
	}

	// The input is read ahead with concurrent ranged GETs (s3io.RangeReader);
	// a restart from scratch reads it again from the start. Its reads are
	// the engine's: a hand-over that stops the engine stops them too.
	input := w.store.Reader(engine, inputKey, etag, aws.ToInt64(head.ContentLength), w.cfg.ReadPartBytes, w.cfg.ReadConcurrency)
	defer input.Close()
	ej := inference.Pass{
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
	identity := results.Checkpoint{InputETag: etag, ModelSHA256: model.SHA256, Threads: w.cfg.Threads}
	prior := results.Resumable(ctx, w.store, req.JobID, identity, log)
	for restarted := false; ; restarted = true {
		attempt := ej
		sink := results.Open(ctx, w.store, results.JobTarget(req), req.OutputFormat, ej.Source, identity, prior, w.cfg.ResultRowGroupBytes)
		if prior != nil {
			attempt.BatchSize, attempt.ChunkSamples, attempt.StartChunk = prior.BatchSize, prior.ChunkSamples, prior.Done
			log.Info("resuming from checkpoint", "chunks_done", prior.Done)
		}
		status.set(job.StateRunning, func(s *job.Status) { s.ResumedAtChunk = attempt.StartChunk })
		m, err := inference.Run(engine, attempt, sink)
		if errors.Is(err, s3io.ErrUploadGone) && !restarted && ctx.Err() == nil {
			// Expired, aborted, or completed by another delivery of this job.
			if err := w.store.GetJSON(ctx, resultsPrefix+inference.ManifestFile, &done); err == nil && done.Input.ETag == etag && done.Model.SHA256 == model.SHA256 {
				log.Info("job done meanwhile by another delivery: acknowledging")
				return &done, false, nil
			}
			log.Warn("the job's multipart upload is gone: restarting it from scratch", "err", err)
			results.Abandon(ctx, w.store, req.JobID, log, prior, sink.Progress())
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
