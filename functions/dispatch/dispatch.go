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
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/jobevents"
	"github.com/inferstack/inferstack/internal/runenv"
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
	// Events publishes refused events on the events topic.
	Events interface {
		Publish(ctx context.Context, in *sns.PublishInput, opts ...func(*sns.Options)) (*sns.PublishOutput, error)
	}
)

var (
	_ Queues     = (*sqs.Client)(nil)
	_ Parameters = (*ssm.Client)(nil)
	_ Objects    = (*s3.Client)(nil)
	_ Events     = (*sns.Client)(nil)
)

// Dispatcher routes intake messages. It is safe for concurrent use.
type Dispatcher struct {
	cfg     runenv.Dispatch
	queues  Queues
	params  Parameters
	objects Objects
	events  Events
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	tier     job.Tier
	tierRead time.Time
}

// New returns a dispatcher; log and now may be nil (discard, time.Now).
func New(cfg runenv.Dispatch, queues Queues, params Parameters, objects Objects, events Events, log *slog.Logger, now func() time.Time) *Dispatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Dispatcher{cfg: cfg, queues: queues, params: params, objects: objects, events: events, log: log, now: now}
}

// outgoing is a job on its way to a tier queue, or a message (or one record
// of a notification) on its way to the dead-letter queue.
type outgoing struct {
	msg    events.SQSMessage // the intake message it comes from
	body   string            // what is sent: the message as received, or an upload's job message
	jobID  string
	input  string // the input's key, where known
	record string // the upload of a notification record, for reasons; "" for a job message
	tier   job.Tier
	why    string // the route, or the reason it is dead-lettered
}

// refused is o's dead letter: the message as received, and the reason
// (naming the upload, for a notification record).
func (o outgoing) refused(err error) outgoing {
	o.body, o.why = o.msg.Body, err.Error()
	if o.record != "" {
		o.why = o.record + ": " + o.why
	}
	return o
}

// recordID names o's error record: its job, else its message.
func (o outgoing) recordID() string {
	if o.jobID != "" {
		return o.jobID
	}
	return job.MessageJobID(o.msg.MessageId)
}

// Handle forwards every valid message to its tier's queue and dead-letters
// every invalid one, each exactly as received plus attributes.
//
// An S3 event notification (uploads under the input prefix) starts one job
// per record, sent as a job message with the deployment's defaults; each
// record is forwarded or dead-lettered on its own. One that starts no job
// (the s3:TestEvent, or uploads by inferstack submit) is acknowledged.
//
// A message whose routing IAM refuses (reading the tier, sizing the input,
// sending to the tier queue) is dead-lettered too, with the denied action as
// its reason: no retry can cure a missing permission. Every dead letter is
// announced by a refused event on the events topic (see announce).
//
// Only messages that hit a transient failure come back as batch item
// failures, for SQS to redeliver, a notification whole (its redelivery names
// the same job ids); a handler error is never returned, so one bad record
// cannot make SQS retry its whole batch.
func (d *Dispatcher) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	retried := map[string]bool{}
	retry := func(msg events.SQSMessage) {
		if !retried[msg.MessageId] { // several records of one message may fail
			retried[msg.MessageId] = true
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: msg.MessageId})
		}
	}
	byTier := map[job.Tier][]outgoing{}
	var dead []outgoing
	for _, msg := range ev.Records {
		forward, refused, err := d.plan(ctx, msg)
		if err != nil {
			retry(msg)
			continue
		}
		for _, o := range forward {
			byTier[o.tier] = append(byTier[o.tier], o)
		}
		dead = append(dead, refused...)
	}
	for tier, out := range byTier {
		for _, f := range d.send(ctx, tierQueueURL(d.cfg, tier), out, true) {
			if awserr.IsDenied(f.err) {
				o := f.o.refused(f.err)
				d.logFor(o).Error("dead-lettering message: a permission is missing", "err", f.err)
				dead = append(dead, o)
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
	notSent := map[int]bool{}
	for _, f := range d.send(ctx, d.cfg.DeadLetterURL, recorded, false) {
		notSent[f.i] = true
		retry(f.o.msg)
	}
	for i, o := range recorded {
		if !notSent[i] {
			d.announce(ctx, o)
		}
	}
	return resp, nil
}

// plan decides what becomes of one intake message: the jobs it forwards and
// the refusals it dead-letters. An error is a transient failure (logged):
// the message is retried whole.
func (d *Dispatcher) plan(ctx context.Context, msg events.SQSMessage) (forward, dead []outgoing, err error) {
	uploads, test, err := job.ParseNotification([]byte(msg.Body))
	switch {
	case test:
		d.log.Info("acknowledged a notification that starts no job (the S3 test event, or uploads by inferstack submit)", "message_id", msg.MessageId)
		return nil, nil, nil
	case errors.Is(err, job.ErrNotNotification):
		req, err := job.ParseIntake([]byte(msg.Body))
		o := outgoing{msg: msg, body: msg.Body, jobID: req.JobID}
		if err == nil {
			o.input = d.cfg.InputPrefix + req.Filename
			o.tier, o.why, err = d.route(ctx, req, func() (int64, error) { return d.inputSize(ctx, req.Filename) })
		}
		return d.decide(o, err)
	case err != nil: // the notification as a whole: it does not parse, or a record is no upload
		return d.decide(outgoing{msg: msg, body: msg.Body}, err)
	}
	for _, u := range uploads {
		o := outgoing{msg: msg, jobID: u.JobID(), input: u.Key, record: "s3://" + u.Bucket + "/" + u.Key}
		req, err := u.Request(d.cfg.Bucket, d.cfg.InputPrefix, d.cfg.Keep)
		if err == nil {
			o.body = req.Body()
			// The event says the size: no HeadObject for tier auto.
			o.tier, o.why, err = d.route(ctx, req, func() (int64, error) { return u.Size, nil })
		}
		f, dl, err := d.decide(o, err)
		if err != nil {
			return nil, nil, err
		}
		forward, dead = append(forward, f...), append(dead, dl...)
	}
	return forward, dead, nil
}

// decide sorts o by its routing error: forwarded (none), dead-lettered
// (invalid, or denied), or retried (anything else, returned).
func (d *Dispatcher) decide(o outgoing, err error) (forward, dead []outgoing, _ error) {
	switch {
	case err == nil:
		return []outgoing{o}, nil, nil
	case errors.Is(err, job.ErrInvalid):
		o = o.refused(err)
		d.logFor(o).Warn("dead-lettering invalid message", "reason", o.why)
	case awserr.IsDenied(err):
		o = o.refused(err)
		d.logFor(o).Error("dead-lettering message: a permission is missing", "err", err)
	default:
		d.logFor(o).Error("cannot route message now, SQS will redeliver it", "err", err)
		return nil, nil, err
	}
	return nil, []outgoing{o}, nil
}

// announce publishes the refused event of a dead-lettered message or record.
// It runs only once the error record and the dead letter are written, so an
// event never announces a refusal that did not happen, and the record it
// names exists. A publish that fails is logged, not retried: retrying the
// message would dead-letter it twice, and the record and the dead letter
// already keep the refusal. Refused events are therefore at most once.
func (d *Dispatcher) announce(ctx context.Context, o outgoing) {
	id := o.recordID()
	ev := job.Event{State: job.EventRefused, JobID: id, Bucket: d.cfg.Bucket, Input: o.input, Reason: o.why,
		Stage: job.StageDispatch, ErrorRecord: job.ErrorKey(id), At: d.now().UTC()}
	_, err := d.events.Publish(ctx, jobevents.PublishInput(d.cfg.EventsTopicARN, ev))
	if err != nil {
		d.logFor(o).Error("cannot publish the refused event; its error record and dead letter stand", "topic", d.cfg.EventsTopicARN,
			"err", awserr.Denied(err, "sns:Publish", d.cfg.EventsTopicARN))
	}
}

// record writes errors/<job>.json for a message refused at the front door,
// where clients look for why a job failed (the worker writes the same
// records for jobs that fail later).
func (d *Dispatcher) record(ctx context.Context, o outgoing) error {
	id := o.recordID()
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

// route picks the tier of a valid request, and says why; sizeOf gives the
// input's size, asked only for tier auto.
func (d *Dispatcher) route(ctx context.Context, req job.Request, sizeOf func() (int64, error)) (job.Tier, string, error) {
	setting := req.Tier
	if setting != "" && !d.cfg.AllowOverride {
		return "", "", fmt.Errorf("%w: this deployment does not allow a per-message tier", job.ErrInvalid)
	}
	if setting == "" {
		var err error
		if setting, err = d.tierSetting(ctx); err != nil {
			return "", "", err
		}
	}
	var size int64
	if setting == job.TierAuto {
		var err error
		if size, err = sizeOf(); err != nil {
			return "", "", err
		}
	}
	tier, why := ChooseTier(setting, size, d.cfg.AutoGPUMin, d.cfg.GPUQueueURL != "")
	return tier, why, nil
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

// notSent is a message SQS did not take (the i-th given), and why.
type notSent struct {
	i   int
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
		entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(o.body), MessageAttributes: attrs}
		sizes[i] = len(o.body)
		for k, v := range attrs {
			sizes[i] += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue))
		}
	}
	var failed []notSent
	for _, r := range splitBatches(sizes) {
		out, err := d.queues.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries[r[0]:r[1]]})
		if err != nil {
			err = awserr.Denied(err, "sqs:SendMessage", queueURL)
			for i := r[0]; i < r[1]; i++ {
				if !awserr.IsDenied(err) || !forwarded {
					d.logFor(msgs[i]).Error("send failed, SQS will redeliver", "queue", queueURL, "err", err)
				}
				failed = append(failed, notSent{i, msgs[i], err})
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
				failed = append(failed, notSent{i, o, errors.New(reason)})
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
