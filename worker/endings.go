package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/worker/results"
)

// endingContext is the context of what a job's ending writes (status, error
// record, dead letter, delete, hand-back). Normally transient failures get
// awserr.MaxOutage of retries; after a soft stop, every such call, begun
// before the stop or after, ends within ECS's stop timeout (the job's
// StopTimeout plus half the margin the deployment leaves after it), so
// neither a poison path nor a status write in flight can outlive the SIGKILL.
func (w *Worker) endingContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(w.lastCalls, awserr.MaxOutage)
}

// finish deletes the message: its manifest is in S3.
func (w *Worker) finish(m sqstypes.Message, log *slog.Logger) {
	ctx, cancel := w.endingContext()
	defer cancel()
	err := awserr.Retry(ctx, func() error {
		_, err := w.queue.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle})
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

// abortUploads aborts the uploads of a run that ends for good.
func (w *Worker) abortUploads(scope string, log *slog.Logger) {
	ctx, cancel := w.endingContext()
	defer cancel()
	results.AbortUploads(ctx, w.store, scope, log)
}

// release makes the message visible again after delay (0: at once).
func (w *Worker) release(m sqstypes.Message, delay time.Duration, log *slog.Logger) {
	ctx, cancel := w.endingContext()
	defer cancel()
	_, err := w.queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(delay.Seconds()),
	})
	if err != nil {
		log.Warn("cannot hand the message back; it returns after its visibility timeout", "err", err)
	}
}

// poison records why a job can never succeed (status nil: the message did
// not parse), publishes its failed event, dead-letters its message with the
// reason and deletes it, so it ends in seconds rather than after every
// redelivery the queue allows.
func (w *Worker) poison(m sqstypes.Message, status *statusWriter, cause error, log *slog.Logger) {
	jobID := job.MessageJobID(aws.ToString(m.MessageId))
	if status != nil {
		jobID = status.s.JobID
	}
	reason := cause.Error()
	ctx, cancel := w.endingContext()
	defer cancel()
	// A shard's failure fails its job, once: the first shard to fail
	// records and announces it; a later one only ends its own message.
	first := true
	if shard := status.shardRef(); shard != nil {
		if !errors.As(cause, new(*failedBefore)) {
			reason = fmt.Sprintf("shard %d of %d: %s", shard.Index, shard.Count, reason)
		}
		var err error
		if first, err = w.failJob(ctx, jobID, shard, reason); err != nil {
			log.Error("cannot record the shard's failure; leaving the message for redelivery", "err", err)
			return
		}
		status.set(job.StateFailed, func(s *job.Status) { s.Reason = reason })
		if first {
			status.promote(&job.ShardsProgress{Plan: shard.Plan, Total: shard.Count})
		}
	}
	if first && !w.recordFailure(ctx, m, jobID, reason, status, log) {
		return
	}
	if status != nil {
		// The job ends for good: its multipart uploads would only be billed.
		results.AbortUploads(ctx, w.store, status.scope, log)
	}
	err := awserr.Retry(ctx, func() error {
		_, err := w.queue.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl: aws.String(w.cfg.DeadLetterURL), MessageBody: m.Body,
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{
				job.AttrReason:          {DataType: aws.String("String"), StringValue: aws.String(job.Truncate(reason, job.MaxReasonBytes))},
				job.AttrJobID:           {DataType: aws.String("String"), StringValue: aws.String(jobID)},
				job.AttrOriginMessageID: {DataType: aws.String("String"), StringValue: m.MessageId},
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

// recordFailure writes the job's error record, its failed status and its
// failed event; false when the record cannot be written (the message is
// then left for redelivery).
func (w *Worker) recordFailure(ctx context.Context, m sqstypes.Message, jobID, reason string, status *statusWriter, log *slog.Logger) bool {
	record := job.ErrorRecord{JobID: jobID, State: job.StateFailed, Reason: reason, Stage: job.StageWorker,
		MessageID: aws.ToString(m.MessageId), Body: aws.ToString(m.Body), Tier: w.cfg.Tier, Worker: w.cfg.Name, FailedAt: time.Now().UTC()}
	if err := w.store.PutJSON(ctx, job.ErrorKey(jobID), record); err != nil {
		log.Error("cannot write error record; leaving the message for redelivery", "err", err)
		return false
	}
	if status != nil {
		status.set(job.StateFailed, func(s *job.Status) { s.Reason = reason })
	}
	// Announced as soon as the error record is written. A worker killed
	// after this leaves the message for redelivery, which fails again and
	// announces again (a duplicate); but at the message's last receive SQS
	// dead-letters it itself, and nothing would announce it: the window
	// between the record and the event is kept as small as it can be.
	if w.publish(w.failedEvent(jobID, reason, status), log) && status != nil {
		status.announced()
	}
	return true
}

// handOver replaces m, whose visibility cannot be extended past SQS's
// ceiling, with a fresh copy (same body and attributes, no delay: a new
// receive count and a new ceiling), then deletes m. The job has stopped at
// a chunk boundary with its checkpoints written; whichever worker receives
// the copy, this one included, resumes from them. This worker does not try
// to keep the job: SendMessage returns no receipt handle, and a receive of
// its own could take another message while another worker takes the copy.
// The copy goes first: a crash between the two leaves a duplicate
// delivery, which ends as one result, where the other order could lose the job.
func (w *Worker) handOver(m sqstypes.Message, stalls int, log *slog.Logger) {
	ctx, cancel := w.endingContext()
	defer cancel()
	attrs := forwardedAttributes(m)
	if stalls > 0 {
		attrs[job.AttrStalls] = sqstypes.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(stalls))}
	}
	var copyID string
	err := awserr.Retry(ctx, func() error {
		out, err := w.queue.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(w.cfg.QueueURL), MessageBody: m.Body,
			MessageAttributes: attrs, DelaySeconds: 0})
		if err == nil {
			copyID = aws.ToString(out.MessageId)
		}
		return err
	})
	if err != nil {
		// Handed back instead: the next delivery resumes all the same, at the cost of a receive.
		log.Error("cannot replace the message at its visibility ceiling; handing it back", "err", awserr.Denied(err, "sqs:SendMessage", w.cfg.QueueURL))
		w.release(m, 0, log)
		return
	}
	w.finish(m, log)
	log.Info("job handed over to a fresh copy of its message at the visibility ceiling; it resumes from its checkpoint", "copy_message_id", copyID)
}

// forwardedAttributes are m's message attributes as a message that carries
// its job on (a fresh copy, a shard) sends them: all but the stalls, which
// count one message's hand-overs.
func forwardedAttributes(m sqstypes.Message) map[string]sqstypes.MessageAttributeValue {
	attrs := make(map[string]sqstypes.MessageAttributeValue, len(m.MessageAttributes))
	for name, v := range m.MessageAttributes {
		if name != job.AttrStalls {
			attrs[name] = sqstypes.MessageAttributeValue{DataType: v.DataType, StringValue: v.StringValue, BinaryValue: v.BinaryValue}
		}
	}
	return attrs
}
