package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
)

// Queue is the SQS API the worker uses; *sqs.Client satisfies it.
type Queue interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

var _ Queue = (*sqs.Client)(nil)

// Why a job did not finish; each has its own ending.
var (
	errTakenBack   = errors.New("message taken back: another worker owns the job now")
	errStopTimeout = errors.New("stop timeout: job handed back for another worker")
)

// Worker serves one queue, one job at a time.
type Worker struct {
	cfg     Config
	queue   Queue
	store   *store
	log     *slog.Logger
	metrics io.Writer
	protect protection

	mu     sync.Mutex
	models map[string]*inference.Model
}

// New returns a worker; metrics receives CloudWatch embedded-metric-format lines.
func New(cfg Config, queue Queue, objects Objects, log *slog.Logger, metrics io.Writer) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = io.Discard
	}
	return &Worker{
		cfg: cfg, queue: queue, store: &store{s3: objects, bucket: cfg.Bucket}, log: log.With("tier", cfg.Tier, "worker", cfg.WorkerID),
		metrics: metrics, protect: protection{uri: cfg.ECSAgentURI, client: &http.Client{}}, models: map[string]*inference.Model{},
	}
}

// Run polls until ctx ends (SIGTERM: soft stop). A job running then gets
// StopTimeout to finish; otherwise it stops at a chunk boundary and its
// message is handed back at once. Run returns nil after a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	w.log.Info("worker started", "queue", w.cfg.QueueURL)
	defer w.closeModels()
	for ctx.Err() == nil {
		// The receive is not cancelled by a soft stop: SQS may hand a message
		// to a long poll whose connection was dropped, and that message would
		// then stay invisible for a whole visibility timeout.
		rctx, cancel := context.WithTimeout(context.Background(), w.cfg.PollWait+10*time.Second)
		out, err := w.queue.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(w.cfg.QueueURL), MaxNumberOfMessages: 1, WaitTimeSeconds: int32(w.cfg.PollWait.Seconds()),
			VisibilityTimeout:           int32(w.cfg.Visibility.Seconds()),
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		cancel()
		if err != nil {
			wait := time.Second
			if awserr.IsDenied(err) {
				// Nothing is received, so nothing is lost: say what is
				// missing, loudly, and keep trying in case it is granted.
				err, wait = awserr.Denied(err, "sqs:ReceiveMessage", w.cfg.QueueURL), 30*time.Second
				w.log.Error("cannot receive jobs: a permission is missing", "err", err)
			} else {
				w.log.Warn("receive failed, retrying", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		for _, m := range out.Messages {
			if ctx.Err() != nil {
				w.release(m, 0, w.log.With("message_id", aws.ToString(m.MessageId)))
				continue
			}
			w.handle(ctx, m)
		}
	}
	w.log.Info("worker stopped")
	return nil
}

func (w *Worker) closeModels() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.models {
		m.Close()
	}
}

// handle runs one message to one of its endings: done (deleted), poison
// (error record, dead letter, deleted), handed back (visible again), or
// taken back (another worker has it).
func (w *Worker) handle(soft context.Context, m sqstypes.Message) {
	started := time.Now()
	log := w.log.With("message_id", aws.ToString(m.MessageId))
	receives, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	req, err := job.Parse([]byte(aws.ToString(m.Body)))
	if err != nil {
		w.poison(m, "", err, log)
		return
	}
	log = log.With("job_id", req.JobID)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// After a soft stop the job has StopTimeout left.
	stopWatch := context.AfterFunc(soft, func() {
		time.AfterFunc(w.cfg.StopTimeout, func() { cancel(errStopTimeout) })
	})
	defer stopWatch()
	if err := w.protect.set(ctx, true); err != nil {
		log.Warn("cannot set scale-in protection", "err", err)
	}
	defer func() {
		if err := w.protect.set(context.Background(), false); err != nil {
			log.Warn("cannot clear scale-in protection", "err", err)
		}
	}()
	beat := w.heartbeat(ctx, cancel, m, log)
	// When the job reached each stage, for the status object (and latency breakdowns).
	timing := map[string]any{"received_at": started.UTC()}
	if v := m.MessageAttributes["dispatched_at"].StringValue; v != nil {
		timing["dispatched_at"] = *v
	}
	manifest, err := w.run(ctx, req, timing, log)
	beat()

	switch cause := context.Cause(ctx); {
	case err == nil:
		w.finish(m, log)
		w.emit(req.JobID, manifest, time.Since(started))
		log.Info("job done", "samples", manifest.Samples, "seconds", time.Since(started).Seconds(), "device", manifest.Device.Used)
	case errors.Is(cause, errTakenBack):
		log.Warn("job abandoned", "err", cause)
	case awserr.IsDenied(err) || awserr.IsDenied(cause):
		// A missing permission is the deployment's fault, and no retry
		// cures it: end the job now with a record of what to grant.
		if !awserr.IsDenied(err) {
			err = cause
		}
		log.Error("job failed: a permission is missing", "err", err)
		w.poison(m, req.JobID, err, log)
	case errors.Is(cause, errStopTimeout) || soft.Err() != nil && ctx.Err() != nil:
		w.release(m, 0, log)
		w.setStatus(req.JobID, "interrupted", nil)
		log.Warn("job handed back at shutdown; its checkpoints remain", "err", err)
	case permanent(err):
		w.poison(m, req.JobID, err, log)
	case receives >= w.cfg.MaxReceives:
		w.poison(m, req.JobID, fmt.Errorf("gave up after %d deliveries: %w", receives, err), log)
	default:
		delay := backoff(receives)
		log.Warn("job failed, retrying later", "err", err, "retry_in", delay.String())
		w.release(m, delay, log)
	}
}

// permanent errors can never succeed on a retry.
func permanent(err error) bool {
	return errors.Is(err, job.ErrInvalid) || errors.Is(err, inference.ErrBadInput) ||
		errors.Is(err, inference.ErrBadModel) || errors.Is(err, errNotFound)
}

// backoff grows the delay before a failed job is seen again: 10 s, 20 s, 40 s... up to 15 min.
func backoff(receives int) time.Duration {
	return min(15*time.Minute, 10*time.Second<<min(max(receives-1, 0), 10))
}

// heartbeat keeps the message invisible while the job runs, renews the
// scale-in protection, and cancels the job when the message was taken back.
// The returned function stops it.
func (w *Worker) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, m sqstypes.Message, log *slog.Logger) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(w.cfg.Visibility / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := w.queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(w.cfg.Visibility.Seconds()),
			})
			switch {
			case err == nil:
			case awserr.IsDenied(err):
				cancel(awserr.Denied(err, "sqs:ChangeMessageVisibility", w.cfg.QueueURL))
				return
			case status(err) >= 400 && status(err) < 500 && !transient(err):
				// ReceiptHandleIsInvalid / MessageNotInflight: the visibility ran out.
				cancel(fmt.Errorf("%w: %v", errTakenBack, err))
				return
			default:
				log.Warn("heartbeat failed, retrying", "err", err)
			}
			if err := w.protect.set(ctx, true); err != nil {
				log.Warn("cannot renew scale-in protection", "err", err)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// run does the job and returns its manifest once results and manifest are in S3.
func (w *Worker) run(ctx context.Context, req job.Request, timing map[string]any, log *slog.Logger) (*inference.Manifest, error) {
	inputKey := job.InputPrefix + req.Filename
	head, err := w.store.head(ctx, inputKey)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	modelKey := w.cfg.ModelKey
	if req.Model != "" {
		modelKey = job.ModelsPrefix + req.Model
	}
	model, err := w.model(ctx, modelKey)
	if err != nil {
		return nil, err
	}
	out := req.OutputPrefix
	if out == "" {
		out = req.JobID
	}
	resultsPrefix := job.ResultsPrefix + strings.TrimSuffix(out, "/") + "/"
	etag := aws.ToString(head.ETag)

	var done inference.Manifest
	switch err := w.store.getJSON(ctx, resultsPrefix+inference.ManifestFile, &done); {
	case err == nil && done.Input.ETag == etag && done.Model.SHA256 == model.SHA256:
		log.Info("job already done for this input and model: acknowledging")
		return &done, nil
	case err != nil && !errors.Is(err, errNotFound):
		return nil, fmt.Errorf("read manifest: %w", err)
	}

	ej := inference.Job{
		Model: model, Input: &rangeReader{ctx: ctx, s: w.store, key: inputKey, etag: etag, size: aws.ToInt64(head.ContentLength)}, InputSize: aws.ToInt64(head.ContentLength),
		InputName: inputKey, InputETag: etag, Windowing: inference.Windowing{Window: req.Window, Hop: req.Hop},
		Device: inference.Device(w.cfg.Device), BatchSize: w.cfg.BatchSize, ChunkSamples: w.cfg.ChunkSamples, Threads: w.cfg.Threads, Logger: log,
	}
	sink := &s3Sink{ctx: ctx, store: w.store, jobID: req.JobID, resultsPrefix: resultsPrefix,
		cp: checkpoint{InputETag: etag, ModelSHA256: model.SHA256, Threads: w.cfg.Threads}}
	var prior checkpoint
	if err := w.store.getJSON(ctx, checkpointKey(req.JobID), &prior); err == nil &&
		prior.InputETag == etag && prior.ModelSHA256 == model.SHA256 && prior.Threads == w.cfg.Threads && prior.Done > 0 {
		ej.BatchSize, ej.ChunkSamples, ej.StartChunk = prior.BatchSize, prior.ChunkSamples, prior.Done
		sink.resume = &prior
		log.Info("resuming from checkpoint", "chunks_done", prior.Done)
	}
	var last time.Time
	ej.Progress = func(doneSamples, total int64) {
		if time.Since(last) >= w.cfg.StatusEvery || doneSamples == total {
			last = time.Now()
			w.setStatus(req.JobID, "running", map[string]any{"samples_done": doneSamples, "samples_total": total})
		}
	}
	w.setStatus(req.JobID, "running", with(timing, map[string]any{"input": inputKey, "resumed_at_chunk": ej.StartChunk}))
	m, err := inference.Run(ctx, ej, sink)
	if err != nil {
		return nil, err
	}
	w.setStatus(req.JobID, "done", with(timing, map[string]any{"samples_done": m.Samples, "samples_total": m.Samples, "device": m.Device.Used,
		"fallback_reason": m.Device.Fallback, "results": "s3://" + w.cfg.Bucket + "/" + resultsPrefix,
		"engine_started_at": m.StartedAt, "engine_finished_at": m.FinishedAt}))
	return m, nil
}

// with merges maps into a new one.
func with(maps ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// model returns the model at key, downloaded once per process and kept loaded.
func (w *Worker) model(ctx context.Context, key string) (*inference.Model, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.models[key]; ok {
		return m, nil
	}
	data, err := w.store.get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	dir := filepath.Join(os.TempDir(), "inferstack-models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Written aside and renamed: other workers on this machine may be
	// loading the same model at the same moment.
	tmp, err := os.CreateTemp(dir, ".model-*")
	if err != nil {
		return nil, err
	}
	_, err = tmp.Write(data)
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	path := filepath.Join(dir, strings.ReplaceAll(key, "/", "_"))
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return nil, err
	}
	m, err := inference.LoadModel(path)
	if err != nil {
		return nil, err
	}
	w.models[key] = m
	return m, nil
}

// setStatus writes status/<job>.json; a client draws its progress bar from it.
func (w *Worker) setStatus(jobID, state string, fields map[string]any) {
	s := map[string]any{"job_id": jobID, "state": state, "tier": w.cfg.Tier, "worker": w.cfg.WorkerID, "updated_at": time.Now().UTC()}
	for k, v := range fields {
		s[k] = v
	}
	if err := w.store.putJSON(context.Background(), job.StatusPrefix+jobID+".json", s); err != nil {
		w.log.Warn("cannot write status", "job_id", jobID, "err", err)
	}
}

// finish deletes the message: its manifest is in S3.
func (w *Worker) finish(m sqstypes.Message, log *slog.Logger) {
	err := retry(context.Background(), func() error {
		_, err := w.queue.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle})
		return err
	})
	switch {
	case awserr.IsDenied(err):
		log.Error("cannot delete finished message: a permission is missing; its redeliveries will be acknowledged",
			"err", awserr.Denied(err, "sqs:DeleteMessage", w.cfg.QueueURL))
	case err != nil:
		// Redelivery finds the manifest and acknowledges without recomputing.
		log.Warn("cannot delete finished message", "err", err)
	}
}

// release makes the message visible again after delay (0: at once).
func (w *Worker) release(m sqstypes.Message, delay time.Duration, log *slog.Logger) {
	_, err := w.queue.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(delay.Seconds()),
	})
	if err != nil {
		log.Warn("cannot hand the message back; it returns after its visibility timeout", "err", err)
	}
}

// poison records why a job can never succeed, dead-letters its message with
// the reason and deletes it, so it ends in seconds rather than after every
// redelivery the queue allows.
func (w *Worker) poison(m sqstypes.Message, jobID string, cause error, log *slog.Logger) {
	if jobID == "" {
		jobID = "message-" + aws.ToString(m.MessageId)
	}
	reason := cause.Error()
	ctx := context.Background()
	record := map[string]any{"job_id": jobID, "state": "failed", "reason": reason, "message_id": aws.ToString(m.MessageId),
		"body": aws.ToString(m.Body), "tier": w.cfg.Tier, "worker": w.cfg.WorkerID, "failed_at": time.Now().UTC()}
	if err := w.store.putJSON(ctx, job.ErrorsPrefix+jobID+".json", record); err != nil {
		log.Error("cannot write error record; leaving the message for redelivery", "err", err)
		return
	}
	w.setStatus(jobID, "failed", map[string]any{"reason": reason})
	err := retry(ctx, func() error {
		_, err := w.queue.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl: aws.String(w.cfg.DeadLetterURL), MessageBody: m.Body,
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{
				"reason":            {DataType: aws.String("String"), StringValue: aws.String(truncate(reason, 1024))},
				"job_id":            {DataType: aws.String("String"), StringValue: aws.String(jobID)},
				"origin_message_id": {DataType: aws.String("String"), StringValue: m.MessageId},
			},
		})
		return err
	})
	if err != nil {
		log.Error("cannot dead-letter; leaving the message for redelivery", "err", awserr.Denied(err, "sqs:SendMessage", w.cfg.DeadLetterURL))
		return
	}
	w.finish(m, log)
	log.Warn("job dead-lettered", "reason", reason)
	w.emitFailure()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// emit writes one embedded-metric-format line: CloudWatch Logs extracts the
// metrics from it (namespace Inferstack, by tier) whatever sent it, the ECS
// awslogs driver included (CloudWatch user guide, "Using the PutLogEvents API
// to send manually-created embedded metric format logs": the json/emf header
// is optional).
func (w *Worker) emit(jobID string, m *inference.Manifest, took time.Duration) {
	fallbacks := 0
	if m.Device.Fallback != "" {
		fallbacks = 1
	}
	w.writeEMF(map[string]any{"job_id": jobID, "Jobs": 1, "Samples": m.Samples, "JobSeconds": took.Seconds(),
		"SamplesPerSecond": m.SamplesPerSecond, "CPUFallbacks": fallbacks, "device": string(m.Device.Used)},
		[]metric{{"Jobs", "Count"}, {"Samples", "Count"}, {"JobSeconds", "Seconds"}, {"SamplesPerSecond", "Count/Second"}, {"CPUFallbacks", "Count"}})
}

func (w *Worker) emitFailure() {
	w.writeEMF(map[string]any{"FailedJobs": 1}, []metric{{"FailedJobs", "Count"}})
}

type metric struct{ Name, Unit string }

func (w *Worker) writeEMF(fields map[string]any, metrics []metric) {
	defs := make([]map[string]string, len(metrics))
	for i, m := range metrics {
		defs[i] = map[string]string{"Name": m.Name, "Unit": m.Unit}
	}
	fields["Tier"] = w.cfg.Tier
	fields["_aws"] = map[string]any{
		"Timestamp": time.Now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace": job.MetricsNamespace, "Dimensions": [][]string{{"Tier"}}, "Metrics": defs,
		}},
	}
	data, _ := json.Marshal(fields)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.metrics.Write(append(data, '\n'))
}
