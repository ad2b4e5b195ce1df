package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
)

// The AWS calls the dispatcher makes, one interface per client, with the
// SDK's exact signatures so the real clients satisfy them.
type (
	// Queues sends to SQS.
	Queues interface {
		SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	}
	// Parameters reads the tier setting.
	Parameters interface {
		GetParameter(ctx context.Context, in *ssm.GetParameterInput, opts ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	}
	// Objects sizes inputs for tier auto and keeps error records.
	Objects interface {
		HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
		PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	}
)

var (
	_ Queues     = (*sqs.Client)(nil)
	_ Parameters = (*ssm.Client)(nil)
	_ Objects    = (*s3.Client)(nil)
)

// Dispatcher routes intake messages. It is safe for concurrent use.
type Dispatcher struct {
	cfg     Config
	queues  Queues
	params  Parameters
	objects Objects
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	tier     job.Tier
	tierRead time.Time
}

// New returns a dispatcher; log and now may be nil (discard, time.Now).
func New(cfg Config, queues Queues, params Parameters, objects Objects, log *slog.Logger, now func() time.Time) *Dispatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Dispatcher{cfg: cfg, queues: queues, params: params, objects: objects, log: log, now: now}
}

// outgoing is a message on its way to a tier queue or the dead-letter queue.
type outgoing struct {
	msg   events.SQSMessage
	jobID string
	tier  job.Tier
	why   string // the route, or the reason it is dead-lettered
}

// Handle forwards every valid message to its tier's queue and dead-letters
// every invalid one, each exactly as received plus attributes. A message
// whose routing IAM refuses (reading the tier, sizing the input, sending to
// the tier queue) is dead-lettered too, with the denied action as its
// reason: no retry can cure a missing permission. Only messages that hit a
// transient failure come back as batch item failures, for SQS to redeliver;
// a handler error is never returned, so one bad record cannot make SQS retry
// its whole batch.
func (d *Dispatcher) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	retry := func(msg events.SQSMessage) {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: msg.MessageId})
	}
	byTier := map[job.Tier][]outgoing{}
	var dead []outgoing
	for _, msg := range ev.Records {
		log := d.log.With("message_id", msg.MessageId)
		req, err := job.Parse([]byte(msg.Body))
		if err == nil {
			log = log.With("job_id", req.JobID)
			var o outgoing
			o, err = d.route(ctx, msg, req)
			if err == nil {
				byTier[o.tier] = append(byTier[o.tier], o)
				continue
			}
		}
		switch {
		case errors.Is(err, job.ErrInvalid):
			log.Warn("dead-lettering invalid message", "reason", err.Error())
			dead = append(dead, outgoing{msg: msg, jobID: req.JobID, why: err.Error()})
		case awserr.IsDenied(err):
			log.Error("dead-lettering message: a permission is missing", "err", err)
			dead = append(dead, outgoing{msg: msg, jobID: req.JobID, why: err.Error()})
		default:
			log.Error("cannot route message now, SQS will redeliver it", "err", err)
			retry(msg)
		}
	}
	for tier, out := range byTier {
		for _, f := range d.send(ctx, tierQueueURL(d.cfg, tier), out, true) {
			if awserr.IsDenied(f.err) {
				f.o.why = f.err.Error()
				d.logFor(f.o).Error("dead-lettering message: a permission is missing", "err", f.err)
				dead = append(dead, f.o)
				continue
			}
			retry(f.o.msg)
		}
	}
	// An invalid message ends as an error record plus a dead letter; without
	// its record it is not dead-lettered yet, but retried.
	var recorded []outgoing
	for _, o := range dead {
		if err := d.record(ctx, o); err != nil {
			d.logFor(o).Error("cannot write error record, SQS will redeliver", "err", err)
			retry(o.msg)
			continue
		}
		recorded = append(recorded, o)
	}
	for _, f := range d.send(ctx, d.cfg.DeadLetterURL, recorded, false) {
		retry(f.o.msg)
	}
	return resp, nil
}

// record writes errors/<job>.json for a message refused at the front door,
// where clients look for why a job failed (the worker writes the same
// records for jobs that fail later).
func (d *Dispatcher) record(ctx context.Context, o outgoing) error {
	id := o.jobID
	if id == "" {
		id = job.MessageJobID(o.msg.MessageId)
	}
	data, err := json.Marshal(job.ErrorRecord{JobID: id, State: job.StateFailed, Reason: o.why, Stage: job.StageDispatch,
		MessageID: o.msg.MessageId, Body: o.msg.Body, FailedAt: d.now().UTC()})
	if err != nil {
		return err
	}
	key := job.ErrorKey(id)
	_, err = d.objects.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(d.cfg.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(data), ContentType: aws.String("application/json")})
	return awserr.Denied(err, "s3:PutObject", "s3://"+d.cfg.Bucket+"/"+key)
}

// route picks the tier of a valid request.
func (d *Dispatcher) route(ctx context.Context, msg events.SQSMessage, req job.Request) (outgoing, error) {
	setting := req.Tier
	if setting != "" && !d.cfg.AllowOverride {
		return outgoing{}, fmt.Errorf("%w: this deployment does not allow a per-message tier", job.ErrInvalid)
	}
	if setting == "" {
		var err error
		if setting, err = d.tierSetting(ctx); err != nil {
			return outgoing{}, err
		}
	}
	var size int64
	if setting == job.TierAuto {
		var err error
		if size, err = d.inputSize(ctx, req.Filename); err != nil {
			return outgoing{}, err
		}
	}
	tier, why := ChooseTier(setting, size, d.cfg.AutoGPUMin, d.cfg.GPUQueueURL != "")
	return outgoing{msg: msg, jobID: req.JobID, tier: tier, why: why}, nil
}

// tierSetting reads the SSM parameter, trusting a read for TierCacheTTL so
// that a busy function does not hammer SSM, and a switch takes effect within
// the TTL.
func (d *Dispatcher) tierSetting(ctx context.Context) (job.Tier, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tier != "" && d.now().Sub(d.tierRead) < d.cfg.TierCacheTTL {
		return d.tier, nil
	}
	out, err := d.params.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(d.cfg.TierParameter)})
	if err != nil {
		return "", fmt.Errorf("read tier parameter: %w", awserr.Denied(err, "ssm:GetParameter", "parameter "+d.cfg.TierParameter))
	}
	tier, err := job.ParseTier(aws.ToString(out.Parameter.Value))
	if err != nil {
		// A bad setting is the deployment's fault, not the message's: retry.
		return "", fmt.Errorf("tier parameter %s: %w", d.cfg.TierParameter, err)
	}
	d.tier, d.tierRead = tier, d.now()
	return tier, nil
}

func (d *Dispatcher) inputSize(ctx context.Context, filename string) (int64, error) {
	key := d.cfg.InputPrefix + filename
	out, err := d.objects.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(d.cfg.Bucket), Key: aws.String(key)})
	var notFound *s3types.NotFound
	if errors.As(err, &notFound) {
		return 0, fmt.Errorf("%w: input s3://%s/%s does not exist", job.ErrInvalid, d.cfg.Bucket, key)
	}
	if err != nil {
		// HeadObject is authorised as s3:GetObject; a missing input reads as
		// denied (403) unless the role may also list inputs/.
		return 0, fmt.Errorf("size input: %w", awserr.Denied(err, "s3:GetObject", "s3://"+d.cfg.Bucket+"/"+key))
	}
	return aws.ToInt64(out.ContentLength), nil
}

// notSent is a message SQS did not take, and why.
type notSent struct {
	o   outgoing
	err error
}

// send puts the messages on queueURL in as few calls as the batch limits
// allow and returns those SQS did not take. forwarded says whether they are
// routed jobs (tier attributes) or dead letters (a reason attribute).
func (d *Dispatcher) send(ctx context.Context, queueURL string, msgs []outgoing, forwarded bool) []notSent {
	entries := make([]sqstypes.SendMessageBatchRequestEntry, len(msgs))
	sizes := make([]int, len(msgs))
	now := d.now().UTC().Format(time.RFC3339Nano)
	for i, o := range msgs {
		attrs := map[string]sqstypes.MessageAttributeValue{
			job.AttrOriginMessageID: stringAttr(o.msg.MessageId),
			job.AttrDispatchedAt:    stringAttr(now),
		}
		if o.jobID != "" {
			attrs[job.AttrJobID] = stringAttr(o.jobID)
		}
		if forwarded {
			attrs[job.AttrTier] = stringAttr(string(o.tier))
		} else {
			attrs[job.AttrReason] = stringAttr(job.Truncate(o.why, job.MaxReasonBytes))
		}
		entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(o.msg.Body), MessageAttributes: attrs}
		sizes[i] = len(o.msg.Body)
		for k, v := range attrs {
			sizes[i] += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue))
		}
	}
	var failed []notSent
	for _, r := range splitBatches(sizes) {
		out, err := d.queues.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries[r[0]:r[1]]})
		if err != nil {
			err = awserr.Denied(err, "sqs:SendMessage", queueURL)
			for _, o := range msgs[r[0]:r[1]] {
				if !awserr.IsDenied(err) || !forwarded {
					d.logFor(o).Error("send failed, SQS will redeliver", "queue", queueURL, "err", err)
				}
				failed = append(failed, notSent{o, err})
			}
			continue
		}
		notTaken := map[string]string{}
		for _, f := range out.Failed {
			notTaken[aws.ToString(f.Id)] = aws.ToString(f.Code) + ": " + aws.ToString(f.Message)
		}
		for i := r[0]; i < r[1]; i++ {
			o := msgs[i]
			if reason, ok := notTaken[strconv.Itoa(i)]; ok {
				d.logFor(o).Error("send failed, SQS will redeliver", "queue", queueURL, "err", reason)
				failed = append(failed, notSent{o, errors.New(reason)})
			} else if forwarded {
				d.logFor(o).Info("forwarded", "route", o.why)
			} else {
				d.logFor(o).Info("dead-lettered", "reason", o.why)
			}
		}
	}
	return failed
}

func (d *Dispatcher) logFor(o outgoing) *slog.Logger {
	log := d.log.With("message_id", o.msg.MessageId)
	if o.jobID != "" {
		log = log.With("job_id", o.jobID)
	}
	if o.tier != "" {
		log = log.With("tier", string(o.tier))
	}
	return log
}

func stringAttr(v string) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}
