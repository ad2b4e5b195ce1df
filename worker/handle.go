package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
)

// Why a job did not finish; each has its own ending.
var (
	errTakenBack   = errors.New("message taken back: another worker owns the job now")
	errStopTimeout = errors.New("stop timeout: job handed back for another worker")
	errCeiling     = errors.New("visibility ceiling: the message cannot be kept any longer")
)

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
		ctx, cancel := w.endingContext()
		defer cancel()
		if err := w.protect.set(ctx, false); err != nil {
			log.Warn("cannot clear scale-in protection", "err", err)
		}
	}()
	beat := w.heartbeat(ctx, cancel, stopEngine, m, asked, log)
	manifest, ran, err := w.run(ctx, engine, req, m, status, log)
	beat()

	switch cause := context.Cause(ctx); {
	case err == nil && manifest == nil:
		// Split into shards, or a shard whose job another shard assembles.
		w.finish(m, log)
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
	case errors.Is(err, errJobFailed):
		w.abortUploads(status.scope, log)
		status.set(job.StateFailed, func(s *job.Status) { s.Reason = err.Error() })
		w.finish(m, log)
		log.Warn("shard stopped: another shard failed the job")
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
		errors.Is(err, inference.ErrBadModel) || errors.Is(err, s3io.ErrNotFound) || errors.As(err, new(*failedBefore))
}

// backoff grows the delay before a failed job is seen again: 10 s, 20 s, 40 s... up to 15 min.
func backoff(receives int) time.Duration {
	return min(15*time.Minute, 10*time.Second<<min(max(receives-1, 0), 10))
}
