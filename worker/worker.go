package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
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
	errCeiling     = errors.New("visibility ceiling: the message cannot be kept any longer")
)

// Worker serves one queue, one job at a time. This file is its life: poll,
// and take each message to one of its endings; job.go runs a job through
// the engine, records.go writes what a job leaves behind (status, error
// record, dead letter), events.go announces how it ended, models.go keeps
// models loaded, metrics.go reports.
type Worker struct {
	cfg     Config
	queue   Queue
	store   *store
	events  Events
	log     *slog.Logger
	metrics io.Writer
	protect protection

	// stopping is when the soft stop (SIGTERM) came, in Unix nanoseconds; 0 before.
	stopping atomic.Int64

	mu     sync.Mutex
	models map[string]*inference.Model
}

// New returns a worker; events publishes to cfg.EventsTopicARN, metrics
// receives CloudWatch embedded-metric-format lines.
func New(cfg Config, queue Queue, objects Objects, events Events, log *slog.Logger, metrics io.Writer) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = io.Discard
	}
	return &Worker{
		cfg: cfg, queue: queue, store: &store{s3: objects, bucket: cfg.Bucket}, events: events, log: log.With("tier", cfg.Tier, "worker", cfg.WorkerID),
		metrics: metrics, protect: protection{uri: cfg.ECSAgentURI, client: &http.Client{}}, models: map[string]*inference.Model{},
	}
}

// Run polls until ctx ends (SIGTERM: soft stop). A job running then gets
// StopTimeout to finish; otherwise it stops at a chunk boundary and its
// message is handed back at once. Run returns nil after a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	w.log.Info("worker started", "queue", w.cfg.QueueURL)
	defer w.closeModels()
	stop := context.AfterFunc(ctx, func() { w.stopping.Store(time.Now().UnixNano()) })
	defer stop()
	for ctx.Err() == nil {
		// The receive is not cancelled by a soft stop: SQS may hand a message
		// to a long poll whose connection was dropped, and that message would
		// then stay invisible for a whole visibility timeout.
		rctx, cancel := context.WithTimeout(context.Background(), w.cfg.PollWait+10*time.Second)
		// SQS's visibility ceiling counts from its receipt of this request.
		asked := time.Now()
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
			w.handle(ctx, m, asked)
		}
	}
	w.log.Info("worker stopped")
	return nil
}

// cleanup is the context of what a job's ending writes (status, error
// record, dead letter, delete, hand-back). Normally transient failures get
// maxOutage of retries; after a soft stop, it ends within ECS's stop
// timeout (the job's StopTimeout plus half the margin the deployment leaves
// after it), so a poison path during shutdown cannot outlive the SIGKILL.
func (w *Worker) cleanup() (context.Context, context.CancelFunc) {
	if at := w.stopping.Load(); at != 0 {
		return context.WithDeadline(context.Background(), time.Unix(0, at).Add(w.cfg.StopTimeout+runenv.StopMargin/2))
	}
	return context.WithTimeout(context.Background(), maxOutage)
}

// handle runs one message, received by a request sent at asked, to one of
// its endings: done (deleted), poison (error record, dead letter, deleted),
// handed back (visible again), handed over (replaced by a fresh copy at the
// visibility ceiling), or taken back (another worker has it).
func (w *Worker) handle(soft context.Context, m sqstypes.Message, asked time.Time) {
	started := time.Now()
	log := w.log.With("message_id", aws.ToString(m.MessageId))
	receives, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	req, err := job.Parse([]byte(aws.ToString(m.Body)))
	if err != nil {
		w.poison(m, nil, err, log)
		return
	}
	log = log.With("job_id", req.JobID)
	status := w.newStatus(req, m, started)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// A hand-over stops only the engine, at a chunk boundary: the sink keeps
	// ctx to checkpoint every chunk the engine wrote.
	engine, stopEngine := context.WithCancelCause(ctx)
	defer stopEngine(nil)
	// After a soft stop the job has StopTimeout left.
	stopWatch := context.AfterFunc(soft, func() {
		time.AfterFunc(w.cfg.StopTimeout, func() { cancel(errStopTimeout) })
	})
	defer stopWatch()
	if err := w.protect.set(ctx, true); err != nil {
		log.Warn("cannot set scale-in protection", "err", err)
	}
	defer func() {
		ctx, cancel := w.cleanup()
		defer cancel()
		if err := w.protect.set(ctx, false); err != nil {
			log.Warn("cannot clear scale-in protection", "err", err)
		}
	}()
	beat := w.heartbeat(ctx, cancel, stopEngine, m, asked, log)
	manifest, ran, err := w.run(ctx, engine, req, status, log)
	beat()

	switch cause := context.Cause(ctx); {
	case err == nil:
		// Published before the delete, while the message is still ours, and
		// recorded in the status once sent: a worker killed before that
		// leaves a redelivery that finds the manifest and announces the job
		// (a duplicate at worst, never a lost event); after, the redelivery
		// acknowledges in silence. A deleted message never comes back to
		// announce anything.
		if ran || w.unannounced(req, status, manifest, log) {
			if w.publish(w.finishedEvent(status, manifest), log) {
				status.announced()
			}
		}
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
		w.poison(m, status, err, log)
	case errors.Is(context.Cause(engine), errCeiling) && ctx.Err() == nil:
		// Copies are first receives, so a job that never finishes a chunk
		// would be handed over for ever: its copies count the stalls in a
		// row, and the last one it is allowed ends it as a failure does.
		stalls := 0
		if !status.progressed.Load() {
			stalls = stallsOf(m) + 1
		}
		if stalls >= w.cfg.MaxReceives {
			w.poison(m, status, fmt.Errorf("gave up after %d deliveries in a row that finished no chunk within the %s visibility ceiling",
				stalls, w.cfg.ceiling()), log)
			break
		}
		w.handOver(m, stalls, log)
	case errors.Is(cause, errStopTimeout) || soft.Err() != nil && ctx.Err() != nil:
		w.release(m, 0, log)
		status.set(job.StateInterrupted, nil)
		log.Warn("job handed back at shutdown; its checkpoints remain", "err", err)
	case permanent(err):
		w.poison(m, status, err, log)
	case receives >= w.cfg.MaxReceives:
		w.poison(m, status, fmt.Errorf("gave up after %d deliveries: %w", receives, err), log)
	default:
		delay := backoff(receives)
		log.Warn("job failed, retrying later", "err", err, "retry_in", delay.String())
		w.release(m, delay, log)
	}
}

// stallsOf is the message's count of stalled hand-overs (job.AttrStalls).
func stallsOf(m sqstypes.Message) int {
	n, _ := strconv.Atoi(aws.ToString(m.MessageAttributes[job.AttrStalls].StringValue))
	return n
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
// Before the visibility ceiling (counted from asked) it stops the engine
// for a hand-over. The returned function stops it.
func (w *Worker) heartbeat(ctx context.Context, cancel, stopEngine context.CancelCauseFunc, m sqstypes.Message, asked time.Time, log *slog.Logger) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		every := w.cfg.Visibility / 3
		tick := time.NewTicker(every)
		defer tick.Stop()
		handing := false
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			extend, handOver := beat(time.Since(asked), w.cfg.Visibility, every, w.cfg.ceiling())
			var err error
			if extend > 0 {
				_, err = w.queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
					QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(extend.Seconds()),
				})
			}
			switch {
			case err == nil:
			case awserr.IsDenied(err):
				cancel(awserr.Denied(err, "sqs:ChangeMessageVisibility", w.cfg.QueueURL))
				return
			case ceilingRefused(err):
				// Not taken back: the message stays ours until its visibility ends.
				log.Warn("SQS refused to extend the message's visibility: its ceiling is reached", "err", err,
					"since_receive", time.Since(asked).Round(time.Second).String(), "ceiling", w.cfg.ceiling().String())
				handOver = true
			case status(err) >= 400 && status(err) < 500 && !transient(err):
				// ReceiptHandleIsInvalid / MessageNotInflight: the visibility ran out.
				cancel(fmt.Errorf("%w: %v", errTakenBack, err))
				return
			default:
				log.Warn("heartbeat failed, retrying", "err", err)
			}
			if handOver && !handing {
				handing = true
				log.Info("the message nears SQS's visibility ceiling: stopping the job at a chunk boundary to hand it over",
					"since_receive", time.Since(asked).Round(time.Second).String(), "ceiling", w.cfg.ceiling().String())
				stopEngine(errCeiling)
			}
			if err := w.protect.set(ctx, true); err != nil {
				log.Warn("cannot renew scale-in protection", "err", err)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// ceilingMargin is what a heartbeat leaves below the ceiling, for the
// latency of its own request.
func ceilingMargin(ceiling time.Duration) time.Duration { return min(time.Minute, ceiling/20) }

// beat is the heartbeat at elapsed since the receive request, beating every
// interval: the visibility to ask for (whole seconds, as SQS takes it; 0:
// none, the message keeps what it has), and whether to hand the job over
// now, because the next beat could not extend a full visibility under the
// ceiling. Handing over at this beat leaves the job at least the rest of
// the visibility it has to stop and be replaced.
func beat(elapsed, visibility, interval, ceiling time.Duration) (extend time.Duration, handOver bool) {
	limit := ceiling - ceilingMargin(ceiling)
	extend = min(visibility, limit-elapsed).Truncate(time.Second)
	if extend < time.Second {
		extend = 0 // a visibility of 0 would hand the message back at once
	}
	return extend, elapsed+interval+visibility > limit
}

// ceilingRefused says whether SQS refused a visibility change for the
// message's total visibility ("InvalidParameterValue: ... Total
// VisibilityTimeout for the message is beyond the limit [43200 seconds]"):
// the one parameter of a well-formed ChangeMessageVisibility that can be.
func ceilingRefused(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "InvalidParameterValue"
}
