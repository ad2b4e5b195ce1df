package worker_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/testenv"
)

// sendDispatched sends body as the dispatcher forwards it, stamped with
// when it was dispatched, and returns the message id.
func (e *env) sendDispatched(body string, dispatched time.Time) string {
	out, err := e.sqs.SendMessage(e.t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(e.queue), MessageBody: aws.String(body),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			job.AttrDispatchedAt: {DataType: aws.String("String"), StringValue: aws.String(dispatched.Format(time.RFC3339Nano))},
		}})
	require.NoError(e.t, err)
	return aws.ToString(out.MessageId)
}

func TestAFinishedJobPublishesOneEventAndItsRedeliveriesNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	e.input("signal.npy", 300)
	e.start(e.cfg, nil, nil, nil)
	body := `{"filename": "signal.npy"}`
	req, err := job.Parse([]byte(body))
	require.NoError(t, err)
	dispatched := time.Now().UTC()
	e.sendDispatched(body, dispatched)
	testenv.Eventually(e.t, "the message to be deleted", 60*time.Second, func() bool { _, ok := e.manifest(req.JobID); return ok && e.drained(e.queue) })

	events := e.events()
	require.Len(t, events, 1)
	ev := events[0]
	require.Equal(t, map[string]string{job.AttrEventState: "finished", job.AttrTier: "cpu"}, ev.attrs)
	require.Equal(t, job.EventVersion, ev.Version)
	require.Equal(t, job.EventFinished, ev.State)
	require.Equal(t, req.JobID, ev.JobID)
	require.Equal(t, e.bucket, ev.Bucket)
	require.Equal(t, "inputs/signal.npy", ev.Input)
	require.Equal(t, "cpu", ev.Tier)
	require.Equal(t, req.ResultsPrefix(), ev.Results)
	require.EqualValues(t, 300, ev.Samples)
	require.Empty(t, ev.Reason+ev.Stage+ev.ErrorRecord)
	_, ok := e.get(ev.Results + inference.ManifestFile)
	require.True(t, ok, "a subscriber finds the manifest under the event's results prefix")

	// The timings are the status's: the client's and the subscriber's agree.
	data, ok := e.get(job.StatusKey(req.JobID))
	require.True(t, ok)
	var s job.Status
	require.NoError(t, json.Unmarshal(data, &s))
	m, _ := e.manifest(req.JobID)
	for name, c := range map[string]struct{ want, got *time.Time }{
		"dispatched":      {&dispatched, ev.DispatchedAt},
		"received":        {s.ReceivedAt, ev.ReceivedAt},
		"engine started":  {&m.StartedAt, ev.EngineStartedAt},
		"engine finished": {&m.FinishedAt, ev.EngineFinishedAt},
	} {
		require.NotNil(t, c.got, name)
		require.True(t, c.want.Equal(*c.got), "%s: want %s, got %s", name, c.want, c.got)
	}
	require.False(t, ev.At.Before(m.FinishedAt), "the event comes after the engine finished")
	require.True(t, ev.ReceivedAt.After(dispatched))

	// Duplicate notifications of the done job: acknowledged, announced once.
	e.sendDispatched(body, time.Now())
	e.sendDispatched(body, time.Now())
	testenv.Eventually(e.t, "the duplicates to be acknowledged", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.Empty(t, e.events(), "a job already done is not announced again")
	again, _ := e.manifest(req.JobID)
	require.Equal(t, m.FinishedAt, again.FinishedAt, "the manifest was not rewritten")
}

func TestPoisonPublishesOneFailedEventCarryingTheReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	e.put("inputs/notes.npy", []byte("not an array, just notes\n"))
	e.start(e.cfg, nil, nil, nil)
	cases := map[string]struct {
		body, input, reason string
	}{
		"missing input":  {`{"filename": "missing.npy"}`, "inputs/missing.npy", "not found"},
		"not a .npy":     {`{"filename": "notes.npy"}`, "inputs/notes.npy", "inputs/notes.npy"},
		"body not a job": {`{"file": "x"}`, "", "unknown field"},
	}
	ids := map[string]string{}
	for name, c := range cases {
		msgID := e.sendDispatched(c.body, time.Now())
		ids[name] = job.MessageJobID(msgID) // the id poison gives a message that does not parse
		if req, err := job.Parse([]byte(c.body)); err == nil {
			ids[name] = req.JobID
		}
	}
	testenv.Eventually(e.t, "every message to end", 30*time.Second, func() bool { return e.drained(e.queue) })

	byJob := map[string]published{}
	for _, ev := range e.events() {
		require.NotContains(t, byJob, ev.JobID, "two events for %s", ev.JobID)
		byJob[ev.JobID] = ev
	}
	require.Len(t, byJob, len(cases))
	for name, c := range cases {
		ev, ok := byJob[ids[name]]
		require.True(t, ok, "no event for %s", name)
		require.Equal(t, map[string]string{job.AttrEventState: "failed", job.AttrTier: "cpu"}, ev.attrs, name)
		require.Equal(t, job.EventFailed, ev.State, name)
		require.Equal(t, job.StageWorker, ev.Stage, name)
		require.Equal(t, e.bucket, ev.Bucket, name)
		require.Equal(t, "cpu", ev.Tier, name)
		require.Equal(t, c.input, ev.Input, name)
		if c.input != "" { // a job, not just a message: its status has its timings
			require.NotNil(t, ev.DispatchedAt, name)
			require.NotNil(t, ev.ReceivedAt, name)
		}
		require.Empty(t, ev.Results, name)
		require.Equal(t, job.ErrorKey(ids[name]), ev.ErrorRecord, name)
		require.Contains(t, ev.Reason, c.reason, name)
		data, ok := e.get(ev.ErrorRecord)
		require.True(t, ok, "the event names an error record that exists: %s", name)
		var record job.ErrorRecord
		require.NoError(t, json.Unmarshal(data, &record))
		require.Equal(t, record.Reason, ev.Reason, name)
	}
	visible, _ := e.counts(e.dlq)
	require.Equal(t, len(cases), visible, "each is dead-lettered as before")
}

// deniedEvents refuses every publish as SNS refuses a role without
// sns:Publish: 403 AuthorizationError.
type deniedEvents struct {
	topic string
	calls atomic.Int64
}

func (d *deniedEvents) Publish(ctx context.Context, in *sns.PublishInput, opts ...func(*sns.Options)) (*sns.PublishOutput, error) {
	d.calls.Add(1)
	return nil, &smithy.OperationError{ServiceID: "SNS", OperationName: "Publish", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
		Err: &smithy.GenericAPIError{Code: "AuthorizationError",
			Message: "User: arn:aws:sts::123456789012:assumed-role/worker/task is not authorized to perform: SNS:Publish on resource: " + d.topic},
	}}
}

func TestADeniedPublishLeavesTheJobsEndingsAsTheyWere(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	e.input("good.npy", 200)
	logs := &emulator.LockedBuffer{}
	events := &deniedEvents{topic: e.topic}
	e.startWith(e.cfg, parts{events: events, log: slog.New(slog.NewJSONHandler(logs, nil))})
	good := e.send(`{"filename": "good.npy"}`)
	missing := e.send(`{"filename": "missing.npy"}`)
	testenv.Eventually(e.t, "both messages to end", 60*time.Second, func() bool { return e.drained(e.queue) })

	m, ok := e.manifest(good)
	require.True(t, ok, "the job finished")
	require.EqualValues(t, 200, m.Samples)
	_, ok = e.get(job.ErrorKey(good))
	require.False(t, ok, "a lost event does not fail the job")
	_, ok = e.get(job.ErrorKey(missing))
	require.True(t, ok, "the poison still has its error record")
	visible, _ := e.counts(e.dlq)
	require.Equal(t, 1, visible)
	require.EqualValues(t, 2, events.calls.Load(), "a denial is not retried")
	require.Empty(t, e.events())

	var denied []string
	for line := range strings.Lines(logs.String()) {
		var entry struct {
			Level, Err, State string
			JobID             string `json:"job_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &entry), line)
		if entry.Level == "ERROR" && strings.Contains(entry.Err, "access denied: sns:Publish on "+e.topic) {
			denied = append(denied, entry.JobID+" "+entry.State)
		}
	}
	require.ElementsMatch(t, []string{good + " finished", missing + " failed"}, denied, "%s", logs)
}
