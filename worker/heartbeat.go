package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/inferstack/inferstack/internal/awserr"
)

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
			case awserr.HTTPStatus(err) >= 400 && awserr.HTTPStatus(err) < 500 && !awserr.Transient(err):
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
