package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
)

// fakeEvents records what is published; PublishFn can inject failures.
type fakeEvents struct {
	mu        sync.Mutex
	published []*sns.PublishInput
	PublishFn func(in *sns.PublishInput) error
}

func (f *fakeEvents) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.PublishFn != nil {
		if err := f.PublishFn(in); err != nil {
			return nil, err
		}
	}
	f.published = append(f.published, in)
	return &sns.PublishOutput{MessageId: aws.String(fmt.Sprint(len(f.published)))}, nil
}

// events decodes what was published, checking each event's attributes.
func (f *fakeEvents) events(t *testing.T) []job.Event {
	t.Helper()
	var out []job.Event
	for _, in := range f.published {
		require.Equal(t, testConfig.EventsTopicARN, aws.ToString(in.TopicArn))
		var ev job.Event
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(in.Message)), &ev))
		require.Len(t, in.MessageAttributes, 1, "a refusal has no tier attribute")
		state := in.MessageAttributes[job.AttrEventState]
		require.Equal(t, "String", aws.ToString(state.DataType))
		require.Equal(t, string(ev.State), aws.ToString(state.StringValue))
		out = append(out, ev)
	}
	return out
}

// notification is an S3 event notification with one ObjectCreated:Put
// record per upload, keys encoded as S3 encodes them ('+' for a space).
func notification(uploads ...job.Upload) string {
	type object struct {
		Key       string `json:"key"`
		Size      int64  `json:"size"`
		ETag      string `json:"eTag"`
		Sequencer string `json:"sequencer"`
	}
	type record struct {
		EventVersion string `json:"eventVersion"`
		EventSource  string `json:"eventSource"`
		EventName    string `json:"eventName"`
		S3           struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object object `json:"object"`
		} `json:"s3"`
	}
	var n struct {
		Records []record `json:"Records"`
	}
	for i, u := range uploads {
		r := record{EventVersion: "2.1", EventSource: "aws:s3", EventName: "ObjectCreated:Put"}
		if u.EventName != "" {
			r.EventName = u.EventName
		}
		r.S3.Bucket.Name = u.Bucket
		r.S3.Object = object{Key: url.QueryEscape(u.Key), Size: u.Size, ETag: "etag", Sequencer: fmt.Sprintf("00692A%04d", i)}
		n.Records = append(n.Records, r)
	}
	data, _ := json.Marshal(n)
	return string(data)
}

// parsed are the uploads of a notification, read by the contract's own parser.
func parsed(t *testing.T, body string) []job.Upload {
	t.Helper()
	uploads, test, err := job.ParseNotification([]byte(body))
	require.NoError(t, err)
	require.False(t, test)
	return uploads
}

func message(id, body string) events.SQSEvent {
	return events.SQSEvent{Records: []events.SQSMessage{{MessageId: id, Body: body}}}
}

func testdataBody(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(data)
}

// logBuffer is a JSON logger whose lines a test can read.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, nil)), &buf
}

func TestUploadStartsAJobNamedByTheUpload(t *testing.T) {
	t.Parallel()
	body := testdataBody(t, "s3-upload.json") // the key is inputs/a+b%C3%A9%2Bc.npy
	uploads := parsed(t, body)
	require.Len(t, uploads, 1)
	q, e := &fakeQueues{}, &fakeEvents{}
	d := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, e, nil, nil)
	// S3 may deliver a notification twice, as two SQS messages.
	for _, id := range []string{"n-1", "n-2"} {
		resp, err := d.Handle(t.Context(), message(id, body))
		require.NoError(t, err)
		require.Empty(t, resp.BatchItemFailures)
	}
	sent := q.sent["cpu-url"]
	require.Len(t, sent, 2)
	for i, m := range sent {
		req, err := job.Parse([]byte(aws.ToString(m.MessageBody)))
		require.NoError(t, err, "the forwarded body is a job message")
		require.Equal(t, "a bé+c.npy", req.Filename, "the key is decoded as S3 encodes it")
		require.Equal(t, uploads[0].JobID(), req.JobID)
		require.Equal(t, uploads[0].JobID(), attr(m, job.AttrJobID))
		require.Equal(t, "cpu", attr(m, job.AttrTier))
		require.Equal(t, []string{"n-1", "n-2"}[i], attr(m, job.AttrOriginMessageID))
		_, err = time.Parse(time.RFC3339Nano, attr(m, job.AttrDispatchedAt))
		require.NoError(t, err)
	}
	require.Equal(t, attr(sent[0], job.AttrJobID), attr(sent[1], job.AttrJobID), "the same upload names the same job")
	require.Regexp(t, `^s3-[0-9a-f]{20}$`, attr(sent[0], job.AttrJobID))
	require.Empty(t, q.sent["dlq-url"])
	require.Empty(t, e.published)
}

// The s3:TestEvent and uploads by inferstack submit (which sends its own job
// message) start nothing: acknowledged, with no record and no dead letter.
func TestNotificationsThatStartNoJobAreAcknowledged(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"s3:TestEvent":  testdataBody(t, "s3-test-event.json"),
		"submit upload": notification(job.Upload{Bucket: "bucket", Key: job.SubmitPrefix + "x.npy"}),
	} {
		q, e := &fakeQueues{}, &fakeEvents{}
		objects := &recordingObjects{put: map[string][]byte{}}
		log, logs := logBuffer()
		resp, err := New(testConfig, q, &fakeParameters{value: "cpu"}, objects, e, log, nil).Handle(t.Context(), message("t", body))
		require.NoError(t, err, name)
		require.Empty(t, resp.BatchItemFailures, "%s: acknowledged, not retried", name)
		require.Zero(t, q.calls, "%s: neither forwarded nor dead-lettered", name)
		require.Empty(t, objects.put, "%s: no error record", name)
		require.Empty(t, e.published, name)
		require.Contains(t, logs.String(), `"level":"INFO","msg":"acknowledged a notification that starts no job`, name)
	}

	// Beside an upload that starts a job, a submit upload is left out.
	q := &fakeQueues{}
	body := notification(job.Upload{Bucket: "bucket", Key: job.SubmitPrefix + "x.npy"}, job.Upload{Bucket: "bucket", Key: "inputs/y.npy"})
	resp, err := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil).Handle(t.Context(), message("n", body))
	require.NoError(t, err)
	require.Empty(t, resp.BatchItemFailures)
	require.Len(t, q.sent["cpu-url"], 1)
	require.Equal(t, parsed(t, body)[0].JobID(), attr(q.sent["cpu-url"][0], job.AttrJobID))
	require.Empty(t, q.sent["dlq-url"])
}

func TestRefusedUploadsAreRecordedDeadLetteredAndAnnounced(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	removed := notification(job.Upload{Bucket: "bucket", Key: "inputs/x.npy", EventName: "ObjectRemoved:Delete"})
	cases := []struct {
		name   string
		body   string
		jobID  string // "" for the upload's own job id
		input  string
		reason string
	}{
		{"another bucket", notification(job.Upload{Bucket: "other", Key: "inputs/x.npy"}), "", "inputs/x.npy",
			"s3://other/inputs/x.npy: invalid request: upload s3://other/inputs/x.npy is in another bucket"},
		{"outside inputs/", notification(job.Upload{Bucket: "bucket", Key: "uploads/x.npy"}), "", "uploads/x.npy",
			"s3://bucket/uploads/x.npy: invalid request: upload s3://bucket/uploads/x.npy is outside inputs/"},
		{"the prefix itself", notification(job.Upload{Bucket: "bucket", Key: "inputs/"}), "", "inputs/", "is outside inputs/"},
		{"bad key", notification(job.Upload{Bucket: "bucket", Key: "inputs/../x.npy"}), "", "inputs/../x.npy", `".." segment`},
		{"not an upload", removed, "message-n", "", "only ObjectCreated events start jobs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := tc.jobID
			if id == "" {
				id = parsed(t, tc.body)[0].JobID()
			}
			q, e := &fakeQueues{}, &fakeEvents{}
			objects := &recordingObjects{put: map[string][]byte{}}
			d := New(testConfig, q, &fakeParameters{value: "cpu"}, objects, e, nil, func() time.Time { return now })
			resp, err := d.Handle(t.Context(), message("n", tc.body))
			require.NoError(t, err)
			require.Empty(t, resp.BatchItemFailures, "a refusal is not retried")
			require.Empty(t, q.sent["cpu-url"])

			var rec job.ErrorRecord
			require.Contains(t, objects.put, job.ErrorKey(id))
			require.NoError(t, json.Unmarshal(objects.put[job.ErrorKey(id)], &rec))
			require.Equal(t, job.ErrorRecord{JobID: id, State: job.StateFailed, Reason: rec.Reason, Stage: job.StageDispatch,
				MessageID: "n", Body: tc.body, FailedAt: now}, rec)
			require.Contains(t, rec.Reason, tc.reason)

			dead := q.sent["dlq-url"]
			require.Len(t, dead, 1)
			require.Equal(t, tc.body, aws.ToString(dead[0].MessageBody), "the notification as received")
			require.Equal(t, rec.Reason, attr(dead[0], job.AttrReason))
			require.Equal(t, "n", attr(dead[0], job.AttrOriginMessageID))

			evs := e.events(t)
			require.Len(t, evs, 1)
			require.Equal(t, job.Event{Version: job.EventVersion, State: job.EventRefused, JobID: id, Bucket: "bucket", Input: tc.input,
				Reason: rec.Reason, Stage: job.StageDispatch, ErrorRecord: job.ErrorKey(id), At: now}, evs[0])
		})
	}
}

// noHead fails the test on HeadObject: an upload's size is in its event.
type noHead struct {
	fakeObjects
	t *testing.T
}

func (n noHead) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	n.t.Error("HeadObject called for an upload")
	return nil, errors.New("no HeadObject")
}

func TestAutoTierUsesTheUploadSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		size  int64
		gpu   bool
		queue string
	}{
		{999, true, "cpu-url"},
		{1000, true, "gpu-url"},
		{1000, false, "cpu-url"},
	} {
		cfg := testConfig
		if !tc.gpu {
			cfg.GPUQueueURL = ""
		}
		q := &fakeQueues{}
		// No input exists: a HeadObject would find nothing.
		d := New(cfg, q, &fakeParameters{value: "auto"}, noHead{fakeObjects{}, t}, &fakeEvents{}, nil, nil)
		resp, err := d.Handle(t.Context(), message("n", notification(job.Upload{Bucket: "bucket", Key: "inputs/x.npy", Size: tc.size})))
		require.NoError(t, err)
		require.Empty(t, resp.BatchItemFailures)
		require.Len(t, q.sent[tc.queue], 1, "%+v: sent %v", tc, q.sent)
	}
}

func TestNotificationRecordsAreRoutedEachOnItsOwn(t *testing.T) {
	t.Parallel()
	body := notification(
		job.Upload{Bucket: "bucket", Key: "inputs/a.npy"},
		job.Upload{Bucket: "other", Key: "inputs/b.npy"},
		job.Upload{Bucket: "bucket", Key: "inputs/c.npy"},
	)
	uploads := parsed(t, body)
	q, e := &fakeQueues{}, &fakeEvents{}
	objects := &recordingObjects{put: map[string][]byte{}}
	resp, err := New(testConfig, q, &fakeParameters{value: "cpu"}, objects, e, nil, nil).Handle(t.Context(), message("n", body))
	require.NoError(t, err)
	require.Empty(t, resp.BatchItemFailures)

	var forwarded []string
	for _, m := range q.sent["cpu-url"] {
		forwarded = append(forwarded, attr(m, job.AttrJobID))
	}
	require.Equal(t, []string{uploads[0].JobID(), uploads[2].JobID()}, forwarded)
	require.Len(t, q.sent["dlq-url"], 1)
	require.Equal(t, uploads[1].JobID(), attr(q.sent["dlq-url"][0], job.AttrJobID))
	require.Contains(t, attr(q.sent["dlq-url"][0], job.AttrReason), "s3://other/inputs/b.npy: invalid request: upload s3://other/inputs/b.npy is in another bucket")
	require.Equal(t, []string{job.ErrorKey(uploads[1].JobID())}, keys(objects.put))
	evs := e.events(t)
	require.Len(t, evs, 1)
	require.Equal(t, uploads[1].JobID(), evs[0].JobID)
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTransientFailureRetriesTheWholeNotification(t *testing.T) {
	t.Parallel()
	body := notification(job.Upload{Bucket: "bucket", Key: "inputs/a.npy"}, job.Upload{Bucket: "bucket", Key: "inputs/b.npy"})
	uploads := parsed(t, body)

	t.Run("ssm down", func(t *testing.T) {
		t.Parallel()
		q := &fakeQueues{}
		resp, err := New(testConfig, q, &fakeParameters{err: errors.New("connection refused")}, fakeObjects{}, &fakeEvents{}, nil, nil).Handle(t.Context(), message("n", body))
		require.NoError(t, err)
		require.Equal(t, []string{"n"}, failures(resp))
		require.Zero(t, q.calls, "nothing forwarded, nothing dead-lettered")
	})
	t.Run("every record refused by the tier queue", func(t *testing.T) {
		t.Parallel()
		q := &fakeQueues{SendFn: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			return nil, errors.New("throttled")
		}}
		resp, err := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil).Handle(t.Context(), message("n", body))
		require.NoError(t, err)
		require.Equal(t, []string{"n"}, failures(resp), "the message is retried once, not once per record")
	})
	t.Run("one record refused, then redelivered", func(t *testing.T) {
		t.Parallel()
		fail := true
		q := &fakeQueues{SendFn: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
			if !fail {
				return nil, nil
			}
			return &sqs.SendMessageBatchOutput{Failed: []sqstypes.BatchResultErrorEntry{{Id: in.Entries[1].Id, Code: aws.String("InternalError")}}}, nil
		}}
		d := New(testConfig, q, &fakeParameters{value: "cpu"}, fakeObjects{}, &fakeEvents{}, nil, nil)
		resp, err := d.Handle(t.Context(), message("n", body))
		require.NoError(t, err)
		require.Equal(t, []string{"n"}, failures(resp))
		fail = false
		resp, err = d.Handle(t.Context(), message("n", body))
		require.NoError(t, err)
		require.Empty(t, resp.BatchItemFailures)
		var ids []string
		for _, m := range q.sent["cpu-url"] {
			ids = append(ids, attr(m, job.AttrJobID))
		}
		require.Equal(t, []string{uploads[0].JobID(), uploads[0].JobID(), uploads[1].JobID()}, ids,
			"the redelivery names the same jobs: the duplicate is harmless downstream")
	})
}

// The refused event comes after the error record and the dead letter, and a
// failed publish neither retries the message nor dead-letters it again.
func TestRefusedEventFollowsTheDeadLetterAndNeverRetriesIt(t *testing.T) {
	t.Parallel()
	body := notification(job.Upload{Bucket: "other", Key: "inputs/x.npy"})
	for name, c := range map[string]struct {
		publishErr error
		dlqErr     error
		objects    Objects
		retried    bool
		dead       int
		published  int
		log        string
	}{
		"published":          {dead: 1, published: 1},
		"topic unreachable":  {publishErr: errors.New("connection reset"), dead: 1, log: "connection reset"},
		"publish denied":     {publishErr: denied("AuthorizationError"), dead: 1, log: "access denied: sns:Publish on " + testConfig.EventsTopicARN},
		"dead letter failed": {dlqErr: errors.New("throttled"), retried: true},
		"record failed":      {objects: brokenObjects{}, retried: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := &fakeQueues{SendFn: func(in *sqs.SendMessageBatchInput) (*sqs.SendMessageBatchOutput, error) {
				return nil, c.dlqErr
			}}
			e := &fakeEvents{PublishFn: func(*sns.PublishInput) error { return c.publishErr }}
			objects := c.objects
			if objects == nil {
				objects = fakeObjects{}
			}
			log, logs := logBuffer()
			resp, err := New(testConfig, q, &fakeParameters{value: "cpu"}, objects, e, log, nil).Handle(t.Context(), message("n", body))
			require.NoError(t, err)
			require.Equal(t, c.retried, len(resp.BatchItemFailures) == 1, "retried: %v", resp.BatchItemFailures)
			require.Len(t, q.sent["dlq-url"], c.dead)
			require.Len(t, e.published, c.published)
			if c.log != "" {
				var line struct{ Level, Msg, Err, Topic string }
				for l := range strings.Lines(logs.String()) {
					require.NoError(t, json.Unmarshal([]byte(l), &line))
					if strings.Contains(line.Msg, "refused event") {
						break
					}
					line.Msg = ""
				}
				require.Contains(t, line.Msg, "cannot publish the refused event", "logs: %s", logs)
				require.Equal(t, "ERROR", line.Level)
				require.Equal(t, testConfig.EventsTopicARN, line.Topic)
				require.Contains(t, line.Err, c.log)
			}
		})
	}
}

// Job messages the dispatcher refuses are announced too, under the job id
// their error record has.
func TestRefusedJobMessagesAreAnnounced(t *testing.T) {
	t.Parallel()
	e := &fakeEvents{}
	_, err := New(testConfig, &fakeQueues{}, &fakeParameters{value: "cpu"}, fakeObjects{}, e, nil, nil).Handle(t.Context(), fixture(t, "mixed.json"))
	require.NoError(t, err)
	got := map[string]job.Event{}
	for _, ev := range e.events(t) {
		got[ev.JobID] = ev
	}
	require.Len(t, got, 3)
	for _, id := range []string{"bad-json", "bad-path", "bad-field"} {
		ev, ok := got[job.MessageJobID(id)]
		require.True(t, ok, "no event for %s: %v", id, got)
		require.Equal(t, job.EventRefused, ev.State)
		require.Equal(t, job.ErrorKey(job.MessageJobID(id)), ev.ErrorRecord)
		require.NotEmpty(t, ev.Reason)
	}

	// A valid message refused for a missing permission names its input.
	e = &fakeEvents{}
	_, err = New(testConfig, &fakeQueues{}, &fakeParameters{value: "auto"}, &recordingObjects{put: map[string][]byte{}, headErr: denied("Forbidden")}, e, nil, nil).
		Handle(t.Context(), fixture(t, "classic.json"))
	require.NoError(t, err)
	evs := e.events(t)
	require.Len(t, evs, 1)
	require.Equal(t, "inputs/file_to_process.bin", evs[0].Input)
	require.Regexp(t, `^j-[0-9a-f]{20}$`, evs[0].JobID)
	require.Contains(t, evs[0].Reason, "access denied: s3:GetObject")
}
