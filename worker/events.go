package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/jobevents"
	"github.com/inferstack/inferstack/internal/s3io"
)

// Events is the SNS API the worker publishes job events with; *sns.Client
// satisfies it.
type Events interface {
	Publish(ctx context.Context, in *sns.PublishInput, opts ...func(*sns.Options)) (*sns.PublishOutput, error)
}

var _ Events = (*sns.Client)(nil)

// finishedEvent is the event of a job this delivery ran to its manifest.
func (w *Worker) finishedEvent(status *statusWriter, m *inference.Manifest) job.Event {
	s := status.snapshot()
	return job.Event{State: job.EventFinished, JobID: s.JobID, Bucket: w.cfg.Bucket, Input: s.Input, Tier: w.cfg.Tier,
		Results: s.Results, Samples: m.Samples, Timings: s.Timings, At: time.Now().UTC()}
}

// failedEvent is the event of a job whose error record is in S3 (status nil:
// the message did not parse).
func (w *Worker) failedEvent(jobID, reason string, status *statusWriter) job.Event {
	ev := job.Event{State: job.EventFailed, JobID: jobID, Bucket: w.cfg.Bucket, Tier: w.cfg.Tier, Reason: reason,
		Stage: job.StageWorker, ErrorRecord: job.ErrorKey(jobID), At: time.Now().UTC()}
	if status != nil {
		s := status.snapshot()
		ev.Input, ev.Timings = s.Input, s.Timings
	}
	return ev
}

// unannounced says whether the job an earlier delivery finished (its
// manifest m found) still has to be announced: its status does not say it
// was. Then status takes over the stored one, completed from the manifest,
// so that the event carries the job's own timings. A status that cannot be
// read counts as unannounced: a duplicate event is acceptable, a lost one
// is not.
func (w *Worker) unannounced(req job.Request, status *statusWriter, m *inference.Manifest, log *slog.Logger) bool {
	ctx, cancel := w.endingContext()
	defer cancel()
	// A shard's redelivery that finds its job assembled speaks for the job.
	status.promote(nil)
	var stored job.Status
	switch err := w.store.GetJSON(ctx, job.StatusKey(req.JobID), &stored); {
	case err == nil && stored.Announced:
		return false
	case err == nil:
		status.adopt(stored)
	case !errors.Is(err, s3io.ErrNotFound):
		log.Warn("cannot read the job's status: announcing it, perhaps again", "err", err)
	}
	log.Info("job done by an earlier delivery that did not announce it: announcing it now")
	status.set(job.StateDone, doneFrom(m))
	return true
}

// publish sends ev to the events topic and says whether it was sent. The
// result or error record in S3 is the record of truth and the event only
// announces it: an event that cannot be sent is logged, and never fails or
// re-runs the job.
func (w *Worker) publish(ev job.Event, log *slog.Logger) bool {
	ctx, cancel := w.endingContext()
	defer cancel()
	err := awserr.Retry(ctx, func() error {
		_, err := w.events.Publish(ctx, jobevents.PublishInput(w.cfg.EventsTopicARN, ev))
		return err
	})
	if err != nil {
		log.Error("cannot publish the job's event; its record in S3 stands", "state", ev.State,
			"err", awserr.Denied(err, "sns:Publish", w.cfg.EventsTopicARN))
		return false
	}
	return true
}
