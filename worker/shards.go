package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
)

// A large job is split: the worker that receives it plans its shards
// (reading only the input's header or footer), sends one message per shard
// to its own tier queue and deletes the job's message. Each shard then runs
// as a job of its own (checkpoints, heartbeat, hand-overs, poison), writing
// its results under its plan; the last to finish assembles them (assemble.go).

// errJobFailed ends a shard whose job another shard failed: it stops at a
// chunk boundary, aborts its uploads and is deleted.
var errJobFailed = errors.New("another shard of the job failed")

// failedBefore is the failure a shard recorded (failed.json) on an earlier
// delivery; it is permanent, and its reason is the one recorded.
type failedBefore struct{ reason string }

func (f *failedBefore) Error() string { return f.reason }

// shardPlan is a split job's plan: what its shards share, written once by
// the worker that split the job and read by every shard.
type shardPlan struct {
	JobID       string `json:"job_id"`
	Plan        string `json:"plan"`
	Input       string `json:"input"`
	InputETag   string `json:"input_etag"`
	ModelSHA256 string `json:"model_sha256"`
	// Samples is the whole input's, where its header or footer says (not a
	// text table's, whose shards count their own).
	Samples int64             `json:"samples,omitempty"`
	Shards  []inference.Range `json:"shards"`
	// ReadEnds bound each shard's read-ahead: the byte after which it reads
	// nothing (0: no bound known, as for Parquet, whose footer is at the end).
	ReadEnds  []int64   `json:"read_ends,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func planKey(jobID, plan string) string     { return job.PlanPrefix(jobID, plan) + "plan.json" }
func failedKey(jobID, plan string) string   { return job.PlanPrefix(jobID, plan) + "failed.json" }
func assemblyKey(jobID, plan string) string { return job.PlanPrefix(jobID, plan) + "assembly.json" }

// doneKey marks a shard whose results are complete; the plan's done/ holds
// one per shard, a page of a listing (the shards' own prefixes hold their
// checkpoints' tail objects, thousands of keys).
func doneKey(jobID, plan string, index int) string {
	return fmt.Sprintf("%s%05d", doneKeys(jobID, plan), index)
}

func doneKeys(jobID, plan string) string { return job.PlanPrefix(jobID, plan) + "done/" }

// shardCount is how many shards req asks for, or its input's size does.
func (w *Worker) shardCount(req job.Request, size int64) int {
	switch {
	case req.Shards > 0:
		return req.Shards
	case w.cfg.ShardBytes > 0:
		return int(min(job.MaxShards, (size+w.cfg.ShardBytes-1)/w.cfg.ShardBytes))
	}
	return 1
}

// planShards cuts in's input into at most n shards: sample ranges of a
// .npy or raw input starting at whole batches, row-group ranges of a
// Parquet table, line-aligned byte ranges of CSV and JSON Lines. It reads
// the header, the footer or the bytes around the split points, never the
// whole input.
func (w *Worker) planShards(ctx context.Context, req job.Request, in input, n int, plan *shardPlan) error {
	r := w.store.Reader(ctx, in.key, in.etag, in.size, planReadBytes, 1)
	defer r.Close()
	if req.IsTable() {
		shards, err := inference.PlanTableShards(r, in.size, in.key, req.InputFormat, n)
		if err != nil {
			return err
		}
		plan.Shards, plan.ReadEnds = shards, make([]int64, len(shards))
		for i, s := range shards {
			switch s.Unit {
			case inference.RangeRows:
				plan.Samples = s.To
			case inference.RangeBytes:
				// A shard reads on to the end of its last line, which is
				// the next shard's first byte.
				plan.ReadEnds[i] = min(in.size, s.To+1)
			}
		}
		return nil
	}
	layout, err := inference.NewLayout(r, in.size, in.key, in.model.Inputs, inference.Windowing{Window: req.Window, Hop: req.Hop})
	if err != nil {
		return err
	}
	align := int64(inference.ShardAlign)
	switch {
	case in.model.BatchDim() > 0:
		align = in.model.BatchDim()
	case w.cfg.BatchSize > 0:
		align = w.cfg.BatchSize
	}
	plan.Samples, plan.Shards = layout.Samples(), inference.PlanSampleShards(layout.Samples(), n, align)
	for _, s := range plan.Shards {
		plan.ReadEnds = append(plan.ReadEnds, layout.ByteEnd(s.To))
	}
	return nil
}

// planReadBytes is what a plan reads at a time: a header, a footer, the
// bytes around a split point.
const planReadBytes = 256 << 10

// split plans req's shards and sends their messages; false when the input
// makes one shard only (it then runs unsplit). The plan is named after the
// job's message, so a redelivery of it finds the plan and sends the same
// shards again (duplicates end as one result, as any redelivery does).
func (w *Worker) split(ctx context.Context, req job.Request, m sqstypes.Message, in input, n int, status *statusWriter, log *slog.Logger) (bool, error) {
	plan := shardPlan{JobID: req.JobID, Plan: aws.ToString(m.MessageId), Input: in.key, InputETag: in.etag, ModelSHA256: in.model.SHA256, CreatedAt: time.Now().UTC()}
	key := planKey(req.JobID, plan.Plan)
	switch err := w.store.GetJSON(ctx, key, &plan); {
	case errors.Is(err, s3io.ErrNotFound):
		if err := w.planShards(ctx, req, in, n, &plan); err != nil {
			return false, err
		}
		if len(plan.Shards) < 2 {
			return false, nil
		}
		data, _ := json.Marshal(plan)
		if _, err := w.store.Create(ctx, key, data); err != nil && !errors.Is(err, s3io.ErrPrecondition) {
			return false, fmt.Errorf("write the shards' plan: %w", err)
		}
	case err != nil:
		return false, fmt.Errorf("read the shards' plan: %w", err)
	}
	status.set(job.StateRunning, func(s *job.Status) {
		s.Shards = &job.ShardsProgress{Plan: plan.Plan, Total: len(plan.Shards)}
		s.SamplesTotal = plan.Samples
	})
	if err := w.sendShards(ctx, req, m, plan); err != nil {
		return false, err
	}
	log.Info("job split into shards", "plan", plan.Plan, "shards", len(plan.Shards), "samples", plan.Samples)
	return true, nil
}

// sendShards sends one message per shard to the tier queue, ten to a call,
// with the job's message attributes (its dispatch time, among others).
func (w *Worker) sendShards(ctx context.Context, req job.Request, m sqstypes.Message, plan shardPlan) error {
	attrs := forwardedAttributes(m)
	for first := 0; first < len(plan.Shards); first += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for i := first; i < min(first+10, len(plan.Shards)); i++ {
			shard := req
			shard.Shards, shard.Shard = 0, &job.ShardRef{Plan: plan.Plan, Index: i, Count: len(plan.Shards)}
			body, _ := json.Marshal(shard)
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(body)), MessageAttributes: attrs})
		}
		for len(entries) > 0 {
			var out *sqs.SendMessageBatchOutput
			err := awserr.Retry(ctx, func() (err error) {
				out, err = w.queue.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(w.cfg.QueueURL), Entries: entries})
				return err
			})
			if err != nil {
				return fmt.Errorf("send the job's shards: %w", awserr.Denied(err, "sqs:SendMessage", w.cfg.QueueURL))
			}
			// A batch can fail entry by entry: those are sent again.
			var again []sqstypes.SendMessageBatchRequestEntry
			for _, f := range out.Failed {
				if f.SenderFault {
					return fmt.Errorf("send shard %s: %s", aws.ToString(f.Id), aws.ToString(f.Message))
				}
				for _, e := range entries {
					if aws.ToString(e.Id) == aws.ToString(f.Id) {
						again = append(again, e)
					}
				}
			}
			entries = again
		}
	}
	return nil
}

// watchFailure stops a shard's engine (a chunk boundary) once another shard
// has failed the job, checking every StatusEvery; the returned function
// stops the watch.
func (w *Worker) watchFailure(ctx context.Context, stop context.CancelCauseFunc, jobID, plan string) func() {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(max(w.cfg.StatusEvery, 100*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := w.store.Head(ctx, failedKey(jobID, plan)); err == nil {
				stop(errJobFailed)
				return
			}
		}
	}()
	return func() { close(done) }
}

// shardFailure is failed.json: the first shard to fail its job for good
// writes it (a conditional write: one of them wins), and only that one
// writes the job's error record and failed event.
type shardFailure struct {
	Shard  int       `json:"shard"`
	Reason string    `json:"reason"`
	Worker string    `json:"worker"`
	At     time.Time `json:"at"`
}

// failJob records that shard's failure fails the job, and says whether this
// call is the first (it then records and announces the job's failure).
func (w *Worker) failJob(ctx context.Context, jobID string, shard *job.ShardRef, reason string) (bool, error) {
	data, _ := json.Marshal(shardFailure{Shard: shard.Index, Reason: reason, Worker: w.cfg.Name, At: time.Now().UTC()})
	_, err := w.store.Create(ctx, failedKey(jobID, shard.Plan), data)
	if errors.Is(err, s3io.ErrPrecondition) {
		var first shardFailure
		if err := w.store.GetJSON(ctx, failedKey(jobID, shard.Plan), &first); err != nil {
			return false, err
		}
		// A redelivery of the first failing shard (its record or event may
		// not have gone out) goes on as the first.
		return first.Shard == shard.Index, nil
	}
	return err == nil, err
}
