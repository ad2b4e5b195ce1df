package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/worker/results"
)

// runShard runs one shard of a split job into its plan's results, then, if
// it is the last shard done, assembles the job's results (complete). A nil
// manifest with no error says its part is done and another shard assembles.
func (w *Worker) runShard(ctx, engine context.Context, req job.Request, in input, status *statusWriter, log *slog.Logger) (*inference.Manifest, bool, error) {
	ref := req.Shard
	var plan shardPlan
	switch err := w.store.GetJSON(ctx, planKey(req.JobID, ref.Plan), &plan); {
	case errors.Is(err, s3io.ErrNotFound):
		return nil, false, fmt.Errorf("%w: shard %d of plan %s: the plan does not exist", job.ErrInvalid, ref.Index, ref.Plan)
	case err != nil:
		return nil, false, fmt.Errorf("read the shards' plan: %w", err)
	case len(plan.Shards) != ref.Count:
		return nil, false, fmt.Errorf("%w: shard %d of %d: plan %s has %d shards", job.ErrInvalid, ref.Index, ref.Count, ref.Plan, len(plan.Shards))
	case plan.InputETag != in.etag || plan.ModelSHA256 != in.model.SHA256:
		return nil, false, fmt.Errorf("%w: %s or its model changed after the job was split into shards", inference.ErrBadInput, in.key)
	}
	var failure shardFailure
	switch err := w.store.GetJSON(ctx, failedKey(req.JobID, ref.Plan), &failure); {
	case err == nil && failure.Shard == ref.Index:
		// This shard failed the job on an earlier delivery that did not end
		// (its record or dead letter not written): it ends as that one would.
		return nil, false, &failedBefore{reason: failure.Reason}
	case err == nil:
		return nil, false, errJobFailed
	}
	to := results.Target{Prefix: job.ShardResultsPrefix(req.JobID, ref.Plan, ref.Index), Scope: status.scope, Rows: true}
	done, err := w.doneBefore(ctx, to.Prefix, in)
	if err != nil {
		return nil, false, err
	}
	if done == nil {
		shardEngine, stop := context.WithCancelCause(engine)
		defer stop(nil)
		unwatch := w.watchFailure(ctx, stop, req.JobID, ref.Plan)
		rows := plan.Shards[ref.Index]
		if len(plan.ReadEnds) == len(plan.Shards) {
			in.readEnd = plan.ReadEnds[ref.Index]
		}
		done, _, err = w.pass(ctx, shardEngine, req, in, &rows, to, status, log)
		unwatch()
		if errors.Is(context.Cause(shardEngine), errJobFailed) {
			return nil, false, errJobFailed
		}
		if err != nil {
			return nil, false, err
		}
		log.Info("shard done", "shard", ref.Index, "of", ref.Count, "samples", done.Samples)
	}
	status.set(job.StateDone, func(s *job.Status) { s.SamplesDone, s.SamplesTotal = done.Samples, done.Samples })
	if err := w.store.Put(ctx, doneKey(req.JobID, ref.Plan, ref.Index), nil, "application/octet-stream"); err != nil {
		return nil, false, fmt.Errorf("mark the shard done: %w", err)
	}
	return w.complete(ctx, req, plan, status, log)
}

// assemblyClaim is assembly.json: which shard assembles the job (the first
// to claim it once every shard is done, by a conditional write), and the
// uploads it began, which a redelivery of that shard aborts before it
// assembles again.
type assemblyClaim struct {
	Shard   int             `json:"shard"`
	Worker  string          `json:"worker"`
	At      time.Time       `json:"at"`
	Uploads []claimedUpload `json:"uploads,omitempty"`
}

type claimedUpload struct {
	Key      string `json:"key"`
	UploadID string `json:"upload_id"`
}

// complete assembles the job if every shard is done and this shard wins
// the claim to it (or won it on an earlier delivery); otherwise it returns
// no manifest: its shard is done.
func (w *Worker) complete(ctx context.Context, req job.Request, plan shardPlan, status *statusWriter, log *slog.Logger) (*inference.Manifest, bool, error) {
	ref := req.Shard
	_, keys, err := w.store.List(ctx, doneKeys(req.JobID, plan.Plan))
	if err != nil {
		return nil, false, err
	}
	done := len(keys)
	if done < len(plan.Shards) {
		log.Info("shard done; others still running", "done", done, "shards", len(plan.Shards))
		return nil, false, nil
	}
	claim := assemblyClaim{Shard: ref.Index, Worker: w.cfg.Name, At: time.Now().UTC()}
	data, _ := json.Marshal(claim)
	etag, err := w.store.Create(ctx, assemblyKey(req.JobID, plan.Plan), data)
	if errors.Is(err, s3io.ErrPrecondition) {
		var raw []byte
		if raw, etag, err = w.store.GetWithETag(ctx, assemblyKey(req.JobID, plan.Plan)); err != nil {
			return nil, false, err
		}
		if err := json.Unmarshal(raw, &claim); err != nil {
			return nil, false, fmt.Errorf("read the assembly's claim: %w", err)
		}
		if claim.Shard != ref.Index {
			log.Info("every shard done; another shard assembles the job", "assembler", claim.Shard)
			return nil, false, nil
		}
		log.Info("assembling again after an earlier delivery of this shard stopped", "uploads", len(claim.Uploads))
		for _, u := range claim.Uploads {
			if err := w.store.AbortUpload(ctx, u.Key, u.UploadID); err != nil {
				return nil, false, err
			}
		}
		claim.Uploads = nil
	} else if err != nil {
		return nil, false, fmt.Errorf("claim the assembly: %w", err)
	}
	m, err := w.assemble(ctx, req, plan, &claim, etag, log)
	if err != nil {
		return nil, false, err
	}
	status.promote(&job.ShardsProgress{Plan: plan.Plan, Total: len(plan.Shards), Done: len(plan.Shards)})
	status.set(job.StateDone, doneFrom(m))
	w.dropShardResults(ctx, req.JobID, plan, m, log)
	return m, true, nil
}

// assemble writes the job's results from its shards' (server-side copies),
// then its manifest, last.
func (w *Worker) assemble(ctx context.Context, req job.Request, plan shardPlan, claim *assemblyClaim, etag string, log *slog.Logger) (*inference.Manifest, error) {
	started := time.Now()
	shards, statuses, err := w.shardRecords(ctx, req.JobID, plan)
	if err != nil {
		return nil, err
	}
	// began records each upload in the claim before a part goes into it, so
	// a redelivery of this shard can abort it; a claim changed meanwhile
	// means another delivery of this shard took the assembly over.
	began := func(key string) func(string) error {
		return func(id string) error {
			claim.Uploads = append(claim.Uploads, claimedUpload{Key: key, UploadID: id})
			data, _ := json.Marshal(claim)
			var err error
			if etag, err = w.store.Replace(ctx, assemblyKey(req.JobID, plan.Plan), etag, data); err != nil {
				_ = w.store.AbortUpload(ctx, key, id)
				if errors.Is(err, s3io.ErrPrecondition) {
					return fmt.Errorf("%w: another delivery of shard %d is assembling the job", errTakenBack, claim.Shard)
				}
				return err
			}
			return nil
		}
	}
	m := joinManifests(shards, statuses, plan)
	prefix := req.ResultsPrefix()
	if slices.ContainsFunc(m.Outputs, func(o inference.OutputFile) bool { return o.File == inference.PredictionsFile }) {
		// Parquet files cannot be joined by copying their bytes: the result
		// is a dataset of ordered part files, one per shard.
		for i := range shards {
			src := job.ShardResultsPrefix(req.JobID, plan.Plan, i) + inference.PredictionsFile
			size, err := w.store.Head(ctx, src)
			if err != nil {
				return nil, fmt.Errorf("shard %d's result: %w", i, err)
			}
			part := fmt.Sprintf("%s/part-%05d.parquet", strings.TrimSuffix(inference.PredictionsFile, ".parquet"), i)
			seg := []s3io.Segment{{Key: src, From: 0, To: *size.ContentLength}}
			if err := w.store.Assemble(ctx, prefix+part, seg, began(prefix+part)); err != nil {
				return nil, err
			}
			m.Parts = append(m.Parts, part)
		}
		for i := range m.Outputs {
			m.Outputs[i].File = path.Dir(m.Parts[0]) + "/"
		}
	} else {
		for _, out := range m.Outputs {
			dt, err := npy.ParseDescr(out.DType)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", out.Name, err)
			}
			segs := []s3io.Segment{{Data: npy.EncodeHeader(dt, out.Shape)}}
			rowBytes := int64(dt.Size)
			for _, d := range out.Shape[1:] {
				rowBytes *= d
			}
			for i, s := range shards {
				segs = append(segs, s3io.Segment{Key: job.ShardResultsPrefix(req.JobID, plan.Plan, i) + out.File, From: 0, To: s.Samples * rowBytes})
			}
			if err := w.store.Assemble(ctx, prefix+out.File, segs, began(prefix+out.File)); err != nil {
				return nil, err
			}
		}
	}
	m.FinishedAt = time.Now().UTC()
	m.Durations.Total = m.FinishedAt.Sub(m.StartedAt).Seconds()
	m.SamplesPerSecond = float64(m.Samples) / max(m.Durations.Total, 1e-9)
	data, err := m.JSON()
	if err != nil {
		return nil, err
	}
	if err := w.store.Put(ctx, prefix+inference.ManifestFile, data, "application/json"); err != nil {
		return nil, fmt.Errorf("upload manifest: %w", err)
	}
	log.Info("job assembled from its shards", "shards", len(shards), "samples", m.Samples, "seconds", time.Since(started).Seconds())
	return m, nil
}

// shardRecords reads every shard's manifest and status, several at a time.
func (w *Worker) shardRecords(ctx context.Context, jobID string, plan shardPlan) ([]inference.Manifest, []job.ShardStatus, error) {
	shards := make([]inference.Manifest, len(plan.Shards))
	statuses := make([]job.ShardStatus, len(plan.Shards))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range plan.Shards {
		g.Go(func() error {
			if err := w.store.GetJSON(gctx, job.ShardResultsPrefix(jobID, plan.Plan, i)+inference.ManifestFile, &shards[i]); err != nil {
				return fmt.Errorf("shard %d's manifest: %w", i, err)
			}
			// The status only names the worker: a missing one costs the name.
			_ = w.store.GetJSON(gctx, job.ShardStatusKey(jobID, plan.Plan, i), &statuses[i])
			return nil
		})
	}
	return shards, statuses, g.Wait()
}

// joinManifests is the manifest of the whole job from its shards': their
// samples and chunks added up, stage times added up (busy time on all
// workers), the outputs' first dimension the whole's, and the shards listed.
func joinManifests(shards []inference.Manifest, statuses []job.ShardStatus, plan shardPlan) *inference.Manifest {
	m := shards[0]
	m.Samples, m.Chunks, m.ResumedAt, m.Durations = 0, 0, 0, manifest.Durations{}
	m.Outputs = slices.Clone(shards[0].Outputs)
	for i, s := range shards {
		m.Samples += s.Samples
		m.Chunks += s.Chunks
		m.PeakRSSBytes = max(m.PeakRSSBytes, s.PeakRSSBytes)
		if s.StartedAt.Before(m.StartedAt) {
			m.StartedAt = s.StartedAt
		}
		d := s.Durations
		m.Durations.RuntimeLoad += d.RuntimeLoad
		m.Durations.ModelLoad += d.ModelLoad
		m.Durations.Sessions += d.Sessions
		m.Durations.Probe += d.Probe
		m.Durations.Calibrate += d.Calibrate
		m.Durations.Read += d.Read
		m.Durations.Infer += d.Infer
		m.Durations.Write += d.Write
		r := plan.Shards[i]
		m.Shards = append(m.Shards, manifest.Shard{Index: i, Unit: r.Unit, From: r.From, To: r.To, Samples: s.Samples, Worker: statuses[i].Worker,
			BatchSize: s.BatchSize, Threads: s.Threads, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt})
	}
	for i, o := range m.Outputs {
		m.Outputs[i].Shape = append([]int64{m.Samples}, o.Shape[1:]...)
	}
	return &m
}

// dropShardResults deletes the shards' results once the job's are whole:
// they would double what the job stores until the checkpoints expire. The
// shards' manifests stay, so that a late redelivery of a shard finds it
// done. Failures are logged; the bucket's lifecycle rule removes what is left.
func (w *Worker) dropShardResults(ctx context.Context, jobID string, plan shardPlan, m *inference.Manifest, log *slog.Logger) {
	var files []string
	for _, o := range m.Outputs {
		if !slices.Contains(files, o.File) {
			files = append(files, o.File)
		}
	}
	if len(m.Parts) > 0 {
		files = []string{inference.PredictionsFile}
	}
	var g errgroup.Group
	g.SetLimit(16)
	for i := range plan.Shards {
		for _, f := range files {
			g.Go(func() error {
				if err := w.store.Delete(ctx, job.ShardResultsPrefix(jobID, plan.Plan, i)+f); err != nil {
					log.Warn("cannot delete a shard's result; the lifecycle rule will", "shard", i, "err", err)
				}
				return nil
			})
		}
	}
	_ = g.Wait()
}
