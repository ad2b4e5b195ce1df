package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/worker/results"
)

// input is a job's input and model, as the run found them.
type input struct {
	key   string
	etag  string
	size  int64
	model *inference.Model
	// readEnd, where set, is where a shard's reads end (shardPlan.ReadEnds).
	readEnd int64
}

// run does the job and returns its manifest once results and manifest are
// in S3, keeping its status object up to date as it goes. The bool is false
// when another delivery had already done the job: announcing it was that
// delivery's part, unless its status says it did not (Worker.unannounced),
// so duplicates yield one event. A nil manifest with no error says the
// message's part is done but the job goes on: it was split into shards, or
// it is a shard that did not assemble the job. When engine ends (a
// hand-over) the engine stops at a chunk boundary, and the chunks it wrote
// are checkpointed under ctx before run returns.
func (w *Worker) run(ctx, engine context.Context, req job.Request, m sqstypes.Message, status *statusWriter, log *slog.Logger) (*inference.Manifest, bool, error) {
	in := input{key: req.InputKey()}
	head, err := w.store.Head(ctx, in.key)
	if err != nil {
		return nil, false, fmt.Errorf("input: %w", err)
	}
	in.etag, in.size = aws.ToString(head.ETag), aws.ToInt64(head.ContentLength)
	modelKey := w.cfg.ModelKey
	if req.Model != "" {
		modelKey = job.ModelKey(req.Model)
	}
	if in.model, err = w.model(ctx, modelKey); err != nil {
		return nil, false, err
	}
	if done, err := w.doneBefore(ctx, req.ResultsPrefix(), in); done != nil || err != nil {
		if done != nil {
			log.Info("job already done for this input and model: acknowledging")
		}
		return done, false, err
	}
	switch {
	case req.Shard != nil:
		return w.runShard(ctx, engine, req, in, status, log)
	case w.shardCount(req, in.size) > 1:
		split, err := w.split(ctx, req, m, in, w.shardCount(req, in.size), status, log)
		if split || err != nil {
			return nil, false, err
		}
	}
	done, ran, err := w.pass(ctx, engine, req, in, nil, results.JobTarget(req), status, log)
	if err == nil && ran {
		status.set(job.StateDone, doneFrom(done))
	}
	return done, ran, err
}

// doneBefore is the manifest under prefix of a run of this input and model
// that an earlier delivery finished, nil if there is none.
func (w *Worker) doneBefore(ctx context.Context, prefix string, in input) (*inference.Manifest, error) {
	var done inference.Manifest
	switch err := w.store.GetJSON(ctx, prefix+inference.ManifestFile, &done); {
	case err == nil && done.Input.ETag == in.etag && done.Model.SHA256 == in.model.SHA256:
		return &done, nil
	case err != nil && !errors.Is(err, s3io.ErrNotFound):
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return nil, nil
}

// pass runs the engine over the input (or the shard of it that rows says)
// into the results at to, resuming from to's checkpoint, and returns the
// manifest it wrote; false when another delivery finished it meanwhile.
func (w *Worker) pass(ctx, engine context.Context, req job.Request, in input, rows *inference.Range, to results.Target, status *statusWriter, log *slog.Logger) (*inference.Manifest, bool, error) {
	// The input is read ahead with concurrent ranged GETs (s3io.RangeReader);
	// a restart from scratch reads it again from the start. Its reads are
	// the engine's: a hand-over that stops the engine stops them too.
	reader := w.store.Reader(engine, in.key, in.etag, in.size, w.cfg.ReadPartBytes, w.cfg.ReadConcurrency)
	defer reader.Close()
	if in.readEnd > 0 {
		reader.Within(in.readEnd)
	}
	ej := inference.Pass{
		Model: in.model, Input: reader, InputSize: in.size,
		InputName: in.key, InputETag: in.etag, Windowing: inference.Windowing{Window: req.Window, Hop: req.Hop},
		Device: inference.Device(w.cfg.Device), BatchSize: w.cfg.BatchSize, ChunkSamples: w.cfg.ChunkSamples, Threads: w.cfg.Threads, Logger: log,
		Calibrations: Calibrations{Store: w.store},
	}
	if req.IsTable() {
		src, err := inference.OpenTable(reader, ej.InputSize, in.key, in.model, inference.TableOptions{Format: req.InputFormat, Feed: req.Feed, Keep: req.Keep, Range: rows})
		if err != nil {
			return nil, false, err
		}
		defer src.Close()
		ej.Source = src
	} else {
		ej.Range = rows
	}
	var last time.Time
	ej.Progress = func(doneSamples, total int64) {
		status.progressed.Store(true)
		if time.Since(last) >= w.cfg.StatusEvery || doneSamples == total {
			last = time.Now()
			status.set(job.StateRunning, func(s *job.Status) { s.SamplesDone, s.SamplesTotal = doneSamples, total })
		}
	}
	identity := results.Checkpoint{InputETag: in.etag, ModelSHA256: in.model.SHA256, Threads: w.cfg.Threads}
	prior := results.Resumable(ctx, w.store, to.Scope, identity, log)
	for restarted := false; ; restarted = true {
		attempt := ej
		sink := results.Open(ctx, w.store, to, req.OutputFormat, ej.Source, identity, prior, w.cfg.ResultRowGroupBytes)
		if prior != nil {
			attempt.BatchSize, attempt.ChunkSamples, attempt.StartChunk = prior.BatchSize, prior.ChunkSamples, prior.Done
			log.Info("resuming from checkpoint", "chunks_done", prior.Done)
		}
		status.set(job.StateRunning, func(s *job.Status) { s.ResumedAtChunk = attempt.StartChunk })
		m, err := inference.Run(engine, attempt, sink)
		if errors.Is(err, s3io.ErrUploadGone) && !restarted && ctx.Err() == nil {
			// Expired, aborted, or completed by another delivery of this job.
			if done, err := w.doneBefore(ctx, to.Prefix, in); done != nil || err != nil {
				if done != nil {
					log.Info("job done meanwhile by another delivery: acknowledging")
				}
				return done, false, err
			}
			log.Warn("the job's multipart upload is gone: restarting it from scratch", "err", err)
			results.Abandon(ctx, w.store, to.Scope, log, prior, sink.Progress())
			prior = nil
			continue
		}
		return m, err == nil, err
	}
}
