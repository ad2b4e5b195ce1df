// Package worker runs inference jobs from a tier's SQS queue: it streams each
// input from S3 through the engine, checkpoints every chunk so a redelivered
// job resumes, writes results and the manifest last, and only then deletes
// the message. Poison is dead-lettered at once with an error record. The
// worker's rooms: this package, a message's life from poll to ending;
// worker/results, the results and their checkpoints; internal/s3io, the
// transfers.
package worker

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/s3io"
)

// Queue is the SQS API the worker uses; *sqs.Client satisfies it.
type Queue interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

var _ Queue = (*sqs.Client)(nil)

// Worker serves one queue, one job at a time. This file is its poll loop;
// a message then goes, in file order, through handle.go (one message to
// its ending), heartbeat.go (keeping it while the job runs), run.go (the job
// through the engine, its results written by package results), shards.go
// (a large job split into shards, one message each) and assemble.go (a
// shard's run, and the last one's assembly of the job), endings.go (done,
// poison, handed back or over), status.go and events.go (what clients
// read), beside models.go, calibrations.go, protection.go and metrics.go.
type Worker struct {
	cfg     Config
	queue   Queue
	store   *s3io.Store
	events  Events
	log     *slog.Logger
	metrics io.Writer
	protect protection

	// lastCalls ends StopTimeout plus half the margin after the soft stop
	// (SIGTERM): every ending's AWS call is under it, those begun before
	// the stop too (a status write retrying through an outage, say).
	lastCalls    context.Context
	endLastCalls context.CancelFunc

	mu     sync.Mutex
	models map[string]*inference.Model
}

// New returns a worker; events publishes to cfg.EventsTopicARN, metrics
// receives CloudWatch embedded-metric-format lines.
func New(cfg Config, queue Queue, objects s3io.Objects, events Events, log *slog.Logger, metrics io.Writer) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = io.Discard
	}
	w := &Worker{
		cfg: cfg, queue: queue, store: &s3io.Store{S3: objects, Bucket: cfg.Bucket}, events: events, log: log.With("tier", cfg.Tier, "worker", cfg.Name),
		metrics: metrics, protect: protection{uri: cfg.ECSAgentURI, client: &http.Client{}}, models: map[string]*inference.Model{},
	}
	w.lastCalls, w.endLastCalls = context.WithCancel(context.Background())
	return w
}

// Run polls until ctx ends (SIGTERM: soft stop). A job running then gets
// StopTimeout to finish; otherwise it stops at a chunk boundary and its
// message is handed back at once. Run returns nil after a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	w.log.Info("worker started", "queue", w.cfg.QueueURL)
	defer w.closeModels()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(w.cfg.StopTimeout+runenv.StopMargin/2, w.endLastCalls) })
	defer stop()
	defer w.endLastCalls()
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
