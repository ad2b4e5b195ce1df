package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/configerr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
)

type (
	sqsSendInput  = sqs.SendMessageBatchInput
	sqsSendOutput = sqs.SendMessageBatchOutput
)

// fakeQueues records what was sent where; SendFn can inject failures.
type fakeQueues struct {
	mu     sync.Mutex
	sent   map[string][]sqstypes.SendMessageBatchRequestEntry
	calls  int
	SendFn func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error)
}

func (f *fakeQueues) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.SendFn != nil {
		if out, err := f.SendFn(in); err != nil || out != nil {
			if err == nil {
				f.record(in, out)
			}
			return out, err
		}
	}
	f.record(in, &sqs.SendMessageBatchOutput{})
	return &sqs.SendMessageBatchOutput{}, nil
}

func (f *fakeQueues) record(in *sqs.SendMessageBatchInput, out *sqs.SendMessageBatchOutput) {
	if f.sent == nil {
		f.sent = map[string][]sqstypes.SendMessageBatchRequestEntry{}
	}
	failed := map[string]bool{}
	for _, e := range out.Failed {
		failed[aws.ToString(e.Id)] = true
	}
	for _, e := range in.Entries {
		if !failed[aws.ToString(e.Id)] {
			f.sent[aws.ToString(in.QueueUrl)] = append(f.sent[aws.ToString(in.QueueUrl)], e)
		}
	}
}

type fakeParameters struct {
	mu    sync.Mutex
	value string
	err   error
	reads int
}

func (f *fakeParameters) GetParameter(_ context.Context, in *ssm.GetParameterInput, _ ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return nil, f.err
	}
	return &ssm.GetParameterOutput{Parameter: &ssmtypes.Parameter{Name: in.Name, Value: aws.String(f.value)}}, nil
}

// fakeObjects holds object sizes; PutObject records the size of what it is given.
type fakeObjects map[string]int64

func (f fakeObjects) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	data, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	f[aws.ToString(in.Key)] = int64(len(data))
	return &s3.PutObjectOutput{}, nil
}

func (f fakeObjects) HeadObject(_ context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	size, ok := f[aws.ToString(in.Key)]
	if !ok {
		return nil, &s3types.NotFound{}
	}
	return &s3.HeadObjectOutput{ContentLength: aws.Int64(size)}, nil
}

var testConfig = runenv.Dispatch{
	Bucket: "bucket", InputPrefix: "inputs/", TierParameter: "/inferstack/dev/tier", TierCacheTTL: 30 * time.Second,
	CPUQueueURL: "cpu-url", GPUQueueURL: "gpu-url", DeadLetterURL: "dlq-url", AutoGPUMin: 1000,
	EventsTopicARN: "topic-arn",
}

func fixture(t *testing.T, name string) events.SQSEvent {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var ev events.SQSEvent
	require.NoError(t, json.Unmarshal(data, &ev))
	return ev
}

func attr(e sqstypes.SendMessageBatchRequestEntry, name string) string {
	return aws.ToString(e.MessageAttributes[name].StringValue)
}

func failures(resp events.SQSEventResponse) []string {
	var ids []string
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	sort.Strings(ids)
	return ids
}

func TestClassicMessageGoesToTheActiveTierUnchanged(t *testing.T) {
	t.Parallel()
	for _, tier := range []string{"cpu", "gpu"} {
		q, p := &fakeQueues{}, &fakeParameters{value: tier}
		d := New(testConfig, q, p, fakeObjects{}, &fakeEvents{}, nil, nil)
		ev := fixture(t, "classic.json")
		resp, err := d.Handle(t.Context(), ev)
		require.NoError(t, err)
		require.Empty(t, resp.BatchItemFailures)
		sent := q.sent[tier+"-url"]
		require.Len(t, sent, 1, "tier %s", tier)
		require.Equal(t, `{"filename": "file_to_process.bin"}`, aws.ToString(sent[0].MessageBody), "body preserved byte for byte")
		require.Equal(t, tier, attr(sent[0], job.AttrTier))
		require.Equal(t, ev.Records[0].MessageId, attr(sent[0], job.AttrOriginMessageID))
		require.Regexp(t, `^j-[0-9a-f]{20}$`, attr(sent[0], job.AttrJobID))
		_, err = time.Parse(time.RFC3339Nano, attr(sent[0], job.AttrDispatchedAt))
		require.NoError(t, err)
	}
}

func TestMixedBatchForwardsTheGoodAndDeadLettersTheBad(t *testing.T) {
	t.Parallel()
	q := &fakeQueues{}
	d := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil)
	resp, err := d.Handle(t.Context(), fixture(t, "mixed.json"))
	require.NoError(t, err)
	require.Empty(t, resp.BatchItemFailures, "invalid messages are dead-lettered, not retried")

	var forwarded []string
	for _, e := range q.sent["cpu-url"] {
		forwarded = append(forwarded, attr(e, job.AttrOriginMessageID))
	}
	require.ElementsMatch(t, []string{"good-1", "good-2"}, forwarded)
	require.Equal(t, "day-2", attr(q.sent["cpu-url"][1], job.AttrJobID), "a given job id is kept")

	reasons := map[string]string{}
	for _, e := range q.sent["dlq-url"] {
		reasons[attr(e, job.AttrOriginMessageID)] = attr(e, job.AttrReason)
	}
	require.Len(t, reasons, 3)
	require.Contains(t, reasons["bad-json"], "not a valid request")
	require.Contains(t, reasons["bad-path"], `".." segment`)
	require.Contains(t, reasons["bad-field"], `unknown field "bucket"`)
}

func TestInvalidMessagesGetAnErrorRecordOrAreRetried(t *testing.T) {
	t.Parallel()
	objects := fakeObjects{}
	q := &fakeQueues{}
	_, err := New(testConfig, q, &fakeParameters{value: "cpu"}, objects, &fakeEvents{}, nil, nil).Handle(t.Context(), fixture(t, "mixed.json"))
	require.NoError(t, err)
	for _, id := range []string{"bad-json", "bad-path", "bad-field"} {
		require.Contains(t, objects, "errors/message-"+id+".json", "no error record for %s", id)
	}
	require.Len(t, q.sent["dlq-url"], 3)

	// Without its record a message is not dead-lettered but retried.
	resp, err := New(testConfig, &fakeQueues{}, &fakeParameters{value: "cpu"}, brokenObjects{}, &fakeEvents{}, nil, nil).Handle(t.Context(), fixture(t, "mixed.json"))
	require.NoError(t, err)
	require.Equal(t, []string{"bad-field", "bad-json", "bad-path"}, failures(resp))
}

type brokenObjects struct{ fakeObjects }

func (brokenObjects) PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return nil, errors.New("s3 unreachable")
}

func TestTransientFailuresAreRetriedAndNothingElse(t *testing.T) {
	t.Parallel()
	t.Run("ssm down", func(t *testing.T) {
		q := &fakeQueues{}
		d := New(testConfig, q, &fakeParameters{err: errors.New("connection refused")}, fakeObjects{}, &fakeEvents{}, nil, nil)
		resp, err := d.Handle(t.Context(), fixture(t, "mixed.json"))
		require.NoError(t, err)
		require.Equal(t, []string{"good-1", "good-2"}, failures(resp))
		require.Len(t, q.sent["dlq-url"], 3, "invalid messages still go to the DLQ")
	})
	t.Run("tier queue refuses one entry", func(t *testing.T) {
		q := &fakeQueues{SendFn: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			if aws.ToString(in.QueueUrl) != "cpu-url" {
				return nil, nil
			}
			return &sqs.SendMessageBatchOutput{Failed: []sqstypes.BatchResultErrorEntry{{Id: in.Entries[1].Id, Code: aws.String("InternalError")}}}, nil
		}}
		d := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil)
		resp, err := d.Handle(t.Context(), fixture(t, "mixed.json"))
		require.NoError(t, err)
		require.Equal(t, []string{"good-2"}, failures(resp))
		require.Len(t, q.sent["cpu-url"], 1)
	})
	t.Run("dead-letter queue down", func(t *testing.T) {
		q := &fakeQueues{SendFn: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			if aws.ToString(in.QueueUrl) == "dlq-url" {
				return nil, errors.New("throttled")
			}
			return nil, nil
		}}
		d := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil)
		resp, err := d.Handle(t.Context(), fixture(t, "mixed.json"))
		require.NoError(t, err)
		require.Equal(t, []string{"bad-field", "bad-json", "bad-path"}, failures(resp), "a poison message is never dropped")
	})
}

func TestTierSettingIsCachedForTheTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	q, p := &fakeQueues{}, &fakeParameters{value: "cpu"}
	d := New(testConfig, q, p, fakeObjects{}, &fakeEvents{}, nil, clock)
	ev := fixture(t, "classic.json")
	handle := func() {
		_, err := d.Handle(t.Context(), ev)
		require.NoError(t, err)
	}
	handle()
	p.value = "gpu"
	now = now.Add(29 * time.Second)
	handle()
	require.Equal(t, 1, p.reads)
	require.Len(t, q.sent["cpu-url"], 2, "within the TTL the cached tier holds")
	now = now.Add(time.Second)
	handle()
	require.Equal(t, 2, p.reads)
	require.Len(t, q.sent["gpu-url"], 1, "after the TTL the switch takes effect")
}

func TestAutoTierOverrideAndDisabledGPU(t *testing.T) {
	t.Parallel()
	objects := fakeObjects{"inputs/small.bin": 999, "inputs/big.bin": 1000}
	msg := func(body string) events.SQSEvent {
		return events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: body}}}
	}
	cases := []struct {
		name    string
		cfg     func(*runenv.Dispatch)
		setting string
		body    string
		queue   string
		reason  string
	}{
		{"auto small goes to cpu", nil, "auto", `{"filename":"small.bin"}`, "cpu-url", ""},
		{"auto at threshold goes to gpu", nil, "auto", `{"filename":"big.bin"}`, "gpu-url", ""},
		{"auto missing input is dead-lettered", nil, "auto", `{"filename":"nope.bin"}`, "dlq-url", "does not exist"},
		{"gpu disabled sends gpu work to cpu", func(c *runenv.Dispatch) { c.GPUQueueURL = "" }, "gpu", `{"filename":"x"}`, "cpu-url", ""},
		{"override refused by default", nil, "cpu", `{"filename":"x","tier":"gpu"}`, "dlq-url", "does not allow a per-message tier"},
		{"override allowed", func(c *runenv.Dispatch) { c.AllowOverride = true }, "cpu", `{"filename":"x","tier":"gpu"}`, "gpu-url", ""},
		{"override to a disabled tier", func(c *runenv.Dispatch) { c.AllowOverride, c.GPUQueueURL = true, "" }, "cpu", `{"filename":"x","tier":"gpu"}`, "cpu-url", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			q := &fakeQueues{}
			own := maps.Clone(objects)
			resp, err := New(cfg, q, &fakeParameters{value: tc.setting}, own, &fakeEvents{}, nil, nil).Handle(t.Context(), msg(tc.body))
			require.NoError(t, err)
			require.Empty(t, resp.BatchItemFailures)
			require.Len(t, q.sent[tc.queue], 1, "sent: %v", q.sent)
			if tc.reason != "" {
				require.Contains(t, attr(q.sent[tc.queue][0], job.AttrReason), tc.reason)
			}
		})
	}
}

func TestBadTierParameterIsRetriedNotDeadLettered(t *testing.T) {
	t.Parallel()
	q := &fakeQueues{}
	resp, err := New(testConfig, q, &fakeParameters{value: "tpu"}, fakeObjects{}, &fakeEvents{}, nil, nil).Handle(t.Context(), fixture(t, "classic.json"))
	require.NoError(t, err)
	require.Len(t, resp.BatchItemFailures, 1)
	require.Empty(t, q.sent)
}

func TestLargeBatchesAreSplitWithinSQSLimits(t *testing.T) {
	t.Parallel()
	q := &fakeQueues{SendFn: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
		require.LessOrEqual(t, len(in.Entries), maxBatchEntries)
		return nil, nil
	}}
	var ev events.SQSEvent
	for i := range 25 {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: string(rune('a' + i)), Body: `{"filename":"f` + string(rune('a'+i)) + `.bin"}`})
	}
	resp, err := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil).Handle(t.Context(), ev)
	require.NoError(t, err)
	require.Empty(t, resp.BatchItemFailures)
	require.Len(t, q.sent["cpu-url"], 25)
	require.Equal(t, 3, q.calls)
}

func TestChooseTier(t *testing.T) {
	t.Parallel()
	cases := []struct {
		setting    job.Tier
		size       int64
		gpuEnabled bool
		want       job.Tier
	}{
		{job.TierCPU, 0, true, job.TierCPU},
		{job.TierGPU, 0, true, job.TierGPU},
		{job.TierGPU, 0, false, job.TierCPU},
		{job.TierAuto, 99, true, job.TierCPU},
		{job.TierAuto, 100, true, job.TierGPU},
		{job.TierAuto, 100, false, job.TierCPU},
	}
	for _, tc := range cases {
		got, why := ChooseTier(tc.setting, tc.size, 100, tc.gpuEnabled)
		require.Equal(t, tc.want, got, "%+v", tc)
		require.NotEmpty(t, why)
	}
}

func TestSplitBatches(t *testing.T) {
	t.Parallel()
	require.Nil(t, splitBatches(nil))
	require.Equal(t, [][2]int{{0, 10}, {10, 20}, {20, 21}}, splitBatches(make([]int, 21)))
	big := maxBatchBytes / 2
	require.Equal(t, [][2]int{{0, 2}, {2, 3}}, splitBatches([]int{big, big, 1}))
	require.Equal(t, [][2]int{{0, 1}, {1, 2}}, splitBatches([]int{maxBatchBytes + 1, 5}), "an oversized entry still gets its own call")
}

func TestParseDispatchReadsTheFunctionsEnvironment(t *testing.T) {
	t.Parallel()
	want := runenv.Dispatch{Bucket: "b", InputPrefix: "inputs/", TierParameter: "/p", TierCacheTTL: 30 * time.Second, CPUQueueURL: "c", DeadLetterURL: "d", AutoGPUMin: 1 << 30,
		EventsTopicARN: "arn:aws:sns:us-east-1:123456789012:inferstack-dev-events"}
	base := want.Env()
	env := func(over map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := over[k]; ok {
				return v
			}
			return base[k]
		}
	}
	c, err := runenv.ParseDispatch(env(nil))
	require.NoError(t, err)
	require.Equal(t, want, c)

	for key, value := range map[string]string{
		runenv.EnvBucket: "", runenv.EnvTierParameter: "", runenv.EnvCPUQueueURL: "", runenv.EnvDeadLetterURL: "", runenv.EnvEventsTopic: "",
		runenv.EnvInputPrefix: "../in/", runenv.EnvTierCacheTTL: "soon", runenv.EnvAutoGPUMin: "-1", runenv.EnvAllowOverride: "maybe",
	} {
		_, err := runenv.ParseDispatch(env(map[string]string{key: value}))
		var ce *configerr.Error
		require.ErrorAs(t, err, &ce, key)
		require.Equal(t, key, ce.Key)
	}
}

// recordingObjects keeps what is put; headErr fails every HeadObject.
type recordingObjects struct {
	mu      sync.Mutex
	put     map[string][]byte
	headErr error
}

func (r *recordingObjects) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	data, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.put[aws.ToString(in.Key)] = data
	return &s3.PutObjectOutput{}, nil
}

func (r *recordingObjects) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return nil, r.headErr
}

// denied is how the SDK reports a call IAM refused (a HEAD gets a bare 403).
func denied(code string) error {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
		Err:      &smithy.GenericAPIError{Code: code, Message: "User: arn:aws:sts::123456789012:assumed-role/dispatch is not authorized"},
	}
}

// A call IAM refuses is the deployment's fault and no retry cures it: the
// message ends at once as an error record naming what to grant, plus a
// dead letter, instead of being retried until the redrive drops it.
func TestDeniedCallsEndTheMessageWithTheDeniedActionNotARetry(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		params   *fakeParameters
		headErr  error
		sendErr  error
		action   string
		resource string
	}{
		"tier parameter": {params: &fakeParameters{err: denied("AccessDeniedException")}, action: "ssm:GetParameter", resource: "parameter /inferstack/dev/tier"},
		"input size":     {params: &fakeParameters{value: "auto"}, headErr: denied("Forbidden"), action: "s3:GetObject", resource: "s3://bucket/inputs/"},
		"tier queue":     {params: &fakeParameters{value: "cpu"}, sendErr: denied("AccessDenied"), action: "sqs:SendMessage", resource: "cpu-url"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := &fakeQueues{SendFn: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
				if aws.ToString(in.QueueUrl) == "cpu-url" && c.sendErr != nil {
					return nil, c.sendErr
				}
				return nil, nil
			}}
			objects := &recordingObjects{put: map[string][]byte{}, headErr: c.headErr}
			e := &fakeEvents{}
			resp, err := New(testConfig, q, c.params, objects, e, nil, nil).Handle(t.Context(), fixture(t, "mixed.json"))
			require.NoError(t, err)
			require.Empty(t, failures(resp), "nothing is retried")
			require.Len(t, q.sent["dlq-url"], 5, "the three invalid messages and the two refused ones")
			refused := 0
			for key, data := range objects.put {
				var rec struct{ Reason string }
				require.NoError(t, json.Unmarshal(data, &rec), key)
				if strings.Contains(rec.Reason, "access denied: "+c.action+" on "+c.resource) {
					refused++
				}
			}
			require.Equal(t, 2, refused, "an error record naming %s for each valid message: %v", c.action, objects.put)
			require.Len(t, e.published, 5, "a refused event for each dead letter")
		})
	}
}
