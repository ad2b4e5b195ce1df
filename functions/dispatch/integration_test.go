package dispatch_test

// These tests run the real bootstrap binary under the Lambda Runtime
// Interface Emulator, talking to moto over HTTP through proxies the tests can
// cut, and fed by an event-source poller as Lambda's SQS mapping would.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/eventsource"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/testenv"
)

var (
	moto      *emulator.Moto
	bootstrap string
)

func TestMain(m *testing.M) { testenv.Main(m, setUp) }

func setUp(m *testing.M) (int, error) {
	ctx := context.Background()
	if _, err := emulator.RIEPath(); err != nil {
		return 0, err
	}
	if _, err := exec.LookPath("aws"); err != nil {
		return 0, fmt.Errorf("the AWS CLI is missing: these tests send with the real CLI (apt-get install awscli)")
	}
	dir, err := os.MkdirTemp("", "dispatch-test")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if bootstrap, err = testenv.Build(dir, "bootstrap", "./bootstrap", "lambda.norpc"); err != nil {
		return 0, err
	}
	if moto, err = emulator.StartMoto(ctx); err != nil {
		return 0, err
	}
	defer moto.Stop()
	return m.Run(), nil
}

// stack is one test's queues, parameter and dispatch function.
type stack struct {
	t                           *testing.T
	name                        string
	sqs                         *sqs.Client
	ssm                         *ssm.Client
	s3                          *s3.Client
	intake, intakeDLQ, cpu, gpu string
	intakeARN, tierParam        string
	bucket                      string
	topic                       string // the events topic
	events                      string // a queue subscribed to the topic's refused events
	ssmProxy, sqsProxy          *testenv.Proxy
	lambda                      *emulator.Lambda
	poller                      *eventsource.Poller
	sent                        []string // bodies sent to intake
}

var stackSeq atomic.Int64

func newStack(t *testing.T, ttl time.Duration) *stack {
	t.Helper()
	ctx := t.Context()
	cfg, err := moto.Config(ctx)
	require.NoError(t, err)
	s := &stack{t: t, sqs: sqs.NewFromConfig(cfg), ssm: ssm.NewFromConfig(cfg), s3: s3.NewFromConfig(cfg, awsenv.EmulatorS3Options)}
	s.name = fmt.Sprintf("%s-%d", strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")), stackSeq.Add(1))
	s.name = s.name[max(0, len(s.name)-58):] // and a queue's logical name: at most 80

	// The stack's queues (settings.Config.Queues), bucket and events topic.
	topics := sns.NewFromConfig(cfg)
	made, err := localstack.Create(ctx, s.s3, s.sqs, topics,
		localstack.Spec{Bucket: s.name, Prefix: s.name + "-", Topic: s.name + "-events", Queues: testenv.StackSettings().Queues()},
		// A short visibility timeout makes redelivery after a failure quick.
		localstack.WithQueue(job.IntakeQueue, func(q *settings.Queue) { q.VisibilitySeconds, q.MaxReceives = 1, 10 }))
	require.NoError(t, err)
	s.bucket, s.topic = made.Bucket, made.EventsTopic
	s.intake, s.intakeDLQ, s.intakeARN = made.Queues[job.IntakeQueue], made.Queues[job.IntakeDeadLetterQueue], made.ARNs[job.IntakeQueue]
	s.cpu, s.gpu = made.Queues[job.TierQueue(job.TierCPU)], made.Queues[job.TierQueue(job.TierGPU)]
	s.tierParam = "/inferstack/" + s.name + "/tier"
	s.setTier("cpu")

	// A queue subscribed to the topic's refused events as a subscriber
	// would be: the filter policy matches the state attribute.
	s.events = s.queue(ctx, "events", nil)
	_, err = topics.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(s.topic), Protocol: aws.String("sqs"), Endpoint: aws.String(s.arn(ctx, s.events)),
		Attributes: map[string]string{"RawMessageDelivery": "true", "FilterPolicy": `{"` + job.AttrEventState + `": ["` + string(job.EventRefused) + `"]}`}})
	require.NoError(t, err)

	s.ssmProxy, err = testenv.NewProxy(moto.URL)
	require.NoError(t, err)
	s.sqsProxy, err = testenv.NewProxy(moto.URL)
	require.NoError(t, err)
	t.Cleanup(s.ssmProxy.Close)
	t.Cleanup(s.sqsProxy.Close)

	env := append(moto.Env(),
		"AWS_ENDPOINT_URL_SSM="+s.ssmProxy.URL(),
		"AWS_ENDPOINT_URL_SQS="+s.sqsProxy.URL(),
	)
	env = append(env, runenv.List(runenv.Dispatch{
		Bucket: s.bucket, InputPrefix: job.InputPrefix, TierParameter: s.tierParam, TierCacheTTL: ttl,
		CPUQueueURL: s.cpu, GPUQueueURL: s.gpu, DeadLetterURL: s.intakeDLQ, AutoGPUMin: 1 << 30, EventsTopicARN: s.topic,
	}.Env())...)
	s.lambda, err = emulator.StartLambda(ctx, bootstrap, env)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("function logs:\n%s", s.lambda.Logs())
		}
		s.lambda.Stop()
	})
	s.poller = &eventsource.Poller{
		Queue: s.sqs, QueueURL: s.intake, QueueARN: s.intakeARN, Region: emulator.Region, BatchSize: 10, WaitTime: 1,
		Invoke: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			var resp events.SQSEventResponse
			err := s.lambda.Invoke(ctx, ev, &resp)
			return resp, err
		},
	}
	return s
}

func (s *stack) queue(ctx context.Context, suffix string, attrs map[string]string) string {
	out, err := s.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(s.name + "-" + suffix), Attributes: attrs})
	require.NoError(s.t, err)
	return aws.ToString(out.QueueUrl)
}

func (s *stack) arn(ctx context.Context, url string) string {
	out, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(s.t, err)
	return out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
}

func (s *stack) setTier(tier string) {
	_, err := s.ssm.PutParameter(s.t.Context(), &ssm.PutParameterInput{Name: aws.String(s.tierParam), Value: aws.String(tier), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	require.NoError(s.t, err)
}

// sendCLI sends a body to the intake queue with the real AWS CLI, as a user would.
func (s *stack) sendCLI(body string) {
	cmd := exec.Command("aws", "--endpoint-url", moto.URL, "sqs", "send-message", "--queue-url", s.intake, "--message-body", body)
	cmd.Env = append(os.Environ(), moto.Env()...)
	out, err := cmd.CombinedOutput()
	require.NoError(s.t, err, "aws sqs send-message: %s", out)
	s.sent = append(s.sent, body)
}

// pump runs the poller until the intake queue is empty with nothing in flight.
func (s *stack) pump(timeout time.Duration) {
	testenv.Eventually(s.t, "the intake queue to drain", timeout, func() bool {
		_, err := s.poller.PollOnce(s.t.Context())
		require.NoError(s.t, err)
		visible, inFlight := s.counts(s.intake)
		return visible+inFlight == 0
	})
}

func (s *stack) counts(url string) (visible, inFlight int) {
	out, err := s.sqs.GetQueueAttributes(s.t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	require.NoError(s.t, err)
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &visible)
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], &inFlight)
	return visible, inFlight
}

// drain takes every message off a queue (they stay invisible for a minute).
func (s *stack) drain(url string) []sqstypes.Message {
	var all []sqstypes.Message
	for {
		out, err := s.sqs.ReceiveMessage(s.t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 60, MessageAttributeNames: []string{"All"}})
		require.NoError(s.t, err)
		if len(out.Messages) == 0 {
			return all
		}
		all = append(all, out.Messages...)
	}
}

// outcome is where every message ended: tier queues and the dead-letter queue.
type outcome struct{ cpu, gpu, dead []sqstypes.Message }

// account drains the outputs and checks that every body sent ended in
// exactly one of them, once, and that nothing is left in the intake queue.
func (s *stack) account() outcome {
	o := outcome{cpu: s.drain(s.cpu), gpu: s.drain(s.gpu), dead: s.drain(s.intakeDLQ)}
	var got []string
	for _, m := range append(append(append([]sqstypes.Message{}, o.cpu...), o.gpu...), o.dead...) {
		got = append(got, aws.ToString(m.Body))
	}
	require.ElementsMatch(s.t, s.sent, got, "every message sent ends exactly once as a routed job or a dead letter")
	visible, inFlight := s.counts(s.intake)
	require.Zero(s.t, visible+inFlight, "intake queue not empty")
	return o
}

func attr(m sqstypes.Message, name string) string {
	return aws.ToString(m.MessageAttributes[name].StringValue)
}

func TestCLIMessageArrivesOnTheCPUQueue(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Second)
	s.sendCLI(`{"filename": "file_to_process.bin"}`)
	s.pump(30 * time.Second)
	o := s.account()
	require.Len(t, o.cpu, 1)
	m := o.cpu[0]
	require.Equal(t, `{"filename": "file_to_process.bin"}`, aws.ToString(m.Body))
	require.Equal(t, "cpu", attr(m, job.AttrTier))
	require.Regexp(t, `^j-[0-9a-f]{20}$`, attr(m, job.AttrJobID))
	require.NotEmpty(t, attr(m, job.AttrOriginMessageID))
	require.Contains(t, s.lambda.Logs(), `"job_id":"`+attr(m, job.AttrJobID)+`"`, "structured logs name the job")
}

func TestSwitchingTheParameterSwitchesRoutingWithinTheTTL(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	s := newStack(t, ttl)
	s.sendCLI(`{"filename": "before.bin"}`)
	s.pump(30 * time.Second)

	s.setTier("gpu")
	switched := time.Now()
	var routedToGPU time.Duration
	for i := 0; routedToGPU == 0; i++ {
		s.sendCLI(fmt.Sprintf(`{"filename": "after-%d.bin"}`, i))
		s.pump(30 * time.Second)
		if _, inFlight := s.counts(s.gpu); inFlight > 0 {
			t.Fatal("unexpected in-flight gpu messages")
		}
		if visible, _ := s.counts(s.gpu); visible > 0 {
			routedToGPU = time.Since(switched)
		}
		require.Less(t, time.Since(switched), ttl+10*time.Second, "routing never switched")
	}
	// The last message sent is the first on gpu; it was sent at most one pump after the TTL ran out.
	require.Less(t, routedToGPU, ttl+5*time.Second)
	o := s.account()
	require.Len(t, o.gpu, 1)
	require.Len(t, o.cpu, len(s.sent)-1)
}

func TestMixedBatchForwardsGoodAndDeadLettersBadWithReasons(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Second)
	bodies := map[string]string{
		"good-1":   `{"filename": "file_to_process.bin"}`,
		"good-2":   `{"filename": "signals/2.npy", "window": 256, "hop": 256}`,
		"bad-json": `{"filename": `,
		"escape":   `{"filename": "../../etc/passwd"}`,
		"unknown":  `{"filename": "x.bin", "bucket": "another"}`,
	}
	var entries []sqstypes.SendMessageBatchRequestEntry
	for id, body := range bodies {
		entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(body)})
		s.sent = append(s.sent, body)
	}
	_, err := s.sqs.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(s.intake), Entries: entries})
	require.NoError(t, err)

	// One invocation with the whole batch: no item failures for good or bad.
	var ev events.SQSEvent
	for len(ev.Records) < len(bodies) {
		out, err := s.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.intake), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 30})
		require.NoError(t, err)
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body), EventSource: "aws:sqs", EventSourceARN: s.intakeARN})
		}
	}
	var resp events.SQSEventResponse
	require.NoError(t, s.lambda.Invoke(t.Context(), ev, &resp))
	require.Empty(t, resp.BatchItemFailures)
	for _, r := range ev.Records {
		_, err := s.sqs.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(s.intake), ReceiptHandle: aws.String(r.ReceiptHandle)})
		require.NoError(t, err)
	}

	o := s.account()
	require.Len(t, o.cpu, 2)
	reasons := map[string]string{}
	for _, m := range o.dead {
		reasons[aws.ToString(m.Body)] = attr(m, job.AttrReason)
	}
	require.Contains(t, reasons[bodies["bad-json"]], "not a valid request")
	require.Contains(t, reasons[bodies["escape"]], `".." segment`)
	require.Contains(t, reasons[bodies["unknown"]], `unknown field "bucket"`)
}

func TestOutagesReportItemFailuresAndDeliverOnceBack(t *testing.T) {
	t.Parallel()
	for _, service := range []string{"ssm", "sqs"} {
		t.Run(service, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, time.Second)
			proxy := map[string]*testenv.Proxy{"ssm": s.ssmProxy, "sqs": s.sqsProxy}[service]
			proxy.Cut()
			for i := range 3 {
				s.sendCLI(fmt.Sprintf(`{"filename": "during-outage-%d.bin"}`, i))
			}
			var failed int
			for failed < 3 {
				out, err := s.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.intake), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				require.NoError(t, err)
				if len(out.Messages) == 0 {
					continue
				}
				var ev events.SQSEvent
				for _, m := range out.Messages {
					ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)})
				}
				var resp events.SQSEventResponse
				require.NoError(t, s.lambda.Invoke(t.Context(), ev, &resp))
				require.Len(t, resp.BatchItemFailures, len(ev.Records), "every record fails while %s is down", service)
				failed += len(resp.BatchItemFailures)
			}
			proxy.Restore()
			s.pump(60 * time.Second)
			o := s.account()
			require.Len(t, o.cpu, 3)
			require.Empty(t, o.dead)
		})
	}
}

// S3's notifications reach the intake queue: configuring them sends the
// s3:TestEvent (moto sends it as S3 does), which is acknowledged; an upload's
// notification, in the shape S3 sends it, is forwarded as a job message
// named by the upload, its key decoded.
func TestUploadNotificationIsRoutedAsAJob(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Second)
	_, err := s.s3.PutBucketNotificationConfiguration(t.Context(), &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(s.bucket),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(s.intakeARN), Events: []s3types.Event{s3types.EventS3ObjectCreated},
			Filter: &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{FilterRules: []s3types.FilterRule{
				{Name: s3types.FilterRuleNamePrefix, Value: aws.String(job.InputPrefix)}}}},
		}}},
	})
	require.NoError(t, err)
	data, err := os.ReadFile("testdata/s3-upload.json") // the key is inputs/a+b%C3%A9%2Bc.npy
	require.NoError(t, err)
	body := strings.Replace(string(data), `"name": "bucket"`, `"name": "`+s.bucket+`"`, 1)
	uploads, _, err := job.ParseNotification([]byte(body))
	require.NoError(t, err)
	s.sendCLI(body)
	s.pump(30 * time.Second)

	cpu := s.drain(s.cpu)
	require.Len(t, cpu, 1)
	req, err := job.Parse([]byte(aws.ToString(cpu[0].Body)))
	require.NoError(t, err, "a job message")
	require.Equal(t, "a bé+c.npy", req.Filename)
	require.Equal(t, uploads[0].JobID(), req.JobID)
	require.Equal(t, req.JobID, attr(cpu[0], job.AttrJobID))
	require.Equal(t, "cpu", attr(cpu[0], job.AttrTier))
	require.NotEmpty(t, attr(cpu[0], job.AttrOriginMessageID))
	require.Empty(t, s.drain(s.intakeDLQ), "the test event is acknowledged, not dead-lettered")
	require.Empty(t, s.drain(s.events))
	visible, inFlight := s.counts(s.intake)
	require.Zero(t, visible+inFlight)
	require.Contains(t, s.lambda.Logs(), "acknowledged a notification that starts no job")
}

// Every dead letter is announced on the events topic: here an upload in
// another bucket and a job message that escapes its prefix.
func TestRefusedMessagesAreAnnouncedOnTheEventsTopic(t *testing.T) {
	t.Parallel()
	s := newStack(t, time.Second)
	ctx := t.Context()
	elsewhere := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectCreated:Put",` +
		`"s3":{"s3SchemaVersion":"1.0","bucket":{"name":"someone-else"},"object":{"key":"inputs/x.npy","size":6,"eTag":"e","sequencer":"0A"}}}]}`
	uploads, _, err := job.ParseNotification([]byte(elsewhere))
	require.NoError(t, err)
	s.sendCLI(elsewhere)
	s.sendCLI(`{"filename": "../escape.bin"}`)
	s.pump(30 * time.Second)
	o := s.account()
	require.Len(t, o.dead, 2)
	want := map[string]string{} // job id -> reason, as the dead letters say
	for _, m := range o.dead {
		id := attr(m, job.AttrJobID)
		if id == "" {
			id = job.MessageJobID(attr(m, job.AttrOriginMessageID))
		}
		want[id] = attr(m, job.AttrReason)
	}
	require.Contains(t, want, uploads[0].JobID())

	var delivered []sqstypes.Message
	testenv.Eventually(t, "two refused events", 10*time.Second, func() bool {
		delivered = append(delivered, s.drain(s.events)...)
		return len(delivered) >= 2
	})
	require.Len(t, delivered, 2)
	for _, m := range delivered {
		var ev job.Event
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(m.Body)), &ev))
		require.Equal(t, job.EventRefused, ev.State)
		require.Equal(t, job.StageDispatch, ev.Stage)
		require.Equal(t, s.bucket, ev.Bucket)
		require.Contains(t, want, ev.JobID)
		require.Equal(t, want[ev.JobID], ev.Reason)
		require.Equal(t, job.ErrorKey(ev.JobID), ev.ErrorRecord)
		out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(ev.ErrorRecord)})
		require.NoError(t, err, "the error record the event names exists")
		var rec job.ErrorRecord
		require.NoError(t, json.NewDecoder(out.Body).Decode(&rec))
		out.Body.Close()
		require.Equal(t, ev.Reason, rec.Reason)
		delete(want, ev.JobID)
	}
	require.Empty(t, want, "one event per dead letter")
}

// BenchmarkInvokeUnderEmulator: latency of the real bootstrap under the
// Lambda emulator against moto, cold (a new emulator: process start and
// init) and warm, for one classic message.
func BenchmarkInvokeUnderEmulator(b *testing.B) {
	ctx := b.Context()
	cfg, err := moto.Config(ctx)
	require.NoError(b, err)
	client := sqs.NewFromConfig(cfg)
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("bench-%d", stackSeq.Add(1)))})
	require.NoError(b, err)
	ssmClient := ssm.NewFromConfig(cfg)
	_, err = ssmClient.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/bench/tier"), Value: aws.String("cpu"), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	require.NoError(b, err)
	env := append(moto.Env(), runenv.List(runenv.Dispatch{Bucket: "b", InputPrefix: job.InputPrefix, TierParameter: "/bench/tier",
		TierCacheTTL: 30 * time.Second, CPUQueueURL: aws.ToString(q.QueueUrl), DeadLetterURL: aws.ToString(q.QueueUrl), AutoGPUMin: 1 << 30,
		EventsTopicARN: "arn:aws:sns:" + emulator.Region + ":" + emulator.Account + ":bench-events"}.Env())...)
	ev := events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: `{"filename": "file_to_process.bin"}`}}}
	var cold, warm []time.Duration
	for b.Loop() {
		l, err := emulator.StartLambda(ctx, bootstrap, env)
		require.NoError(b, err)
		for i := range 11 {
			start := time.Now()
			var resp events.SQSEventResponse
			require.NoError(b, l.Invoke(ctx, ev, &resp))
			require.Empty(b, resp.BatchItemFailures)
			if i == 0 {
				cold = append(cold, time.Since(start))
			} else {
				warm = append(warm, time.Since(start))
			}
		}
		l.Stop()
	}
	b.ReportMetric(float64(median(cold).Microseconds())/1000, "cold-ms")
	b.ReportMetric(float64(median(warm).Microseconds())/1000, "warm-ms")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
