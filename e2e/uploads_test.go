package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/testenv"
)

// event is one job event as a subscribed queue receives it: SNS's envelope
// around the event, with the message attributes filter policies match.
type event struct {
	job.Event
	Attributes map[string]string
}

// eventWatch reads the local stack's events watch queue (subscribed to its
// events topic) and keeps every event it has seen.
type eventWatch struct {
	t     *testing.T
	sqs   *sqs.Client
	queue string
	seen  []event
}

// poll takes what the watch queue holds now (waiting up to a second).
func (w *eventWatch) poll() {
	out, err := w.sqs.ReceiveMessage(w.t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(w.queue), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	require.NoError(w.t, err)
	for _, m := range out.Messages {
		var envelope struct {
			Type              string
			Message           string
			MessageAttributes map[string]struct{ Type, Value string }
		}
		require.NoError(w.t, json.Unmarshal([]byte(aws.ToString(m.Body)), &envelope), "%s", aws.ToString(m.Body))
		require.Equal(w.t, "Notification", envelope.Type)
		var e event
		require.NoError(w.t, json.Unmarshal([]byte(envelope.Message), &e.Event), envelope.Message)
		e.Attributes = map[string]string{}
		for k, v := range envelope.MessageAttributes {
			e.Attributes[k] = v.Value
		}
		w.seen = append(w.seen, e)
		_, err := w.sqs.DeleteMessage(w.t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(w.queue), ReceiptHandle: m.ReceiptHandle})
		require.NoError(w.t, err)
	}
}

// await polls until an event matches, and returns it.
func (w *eventWatch) await(what string, match func(event) bool, logs *emulator.LockedBuffer) event {
	w.t.Helper()
	var found event
	testenv.Eventually(w.t, "a "+what+" event", 90*time.Second, func() bool {
		for _, e := range w.seen {
			if match(e) {
				found = e
				return true
			}
		}
		w.poll()
		return false
	}, testenv.Show(func() string { return fmt.Sprintf("seen %+v", w.seen) }), logs)
	return found
}

// count is how many events seen so far match.
func (w *eventWatch) count(match func(event) bool) int {
	n := 0
	for _, e := range w.seen {
		if match(e) {
			n++
		}
	}
	return n
}

// TestUploadsStartJobsAndJobsSendEvents runs the stack of `inferstack local
// up` with its default upload triggers, and the real AWS CLI as a user with
// the client's keys: `aws s3 cp` alone starts a job, even under a key with
// spaces and non-ASCII characters; a notification delivered twice starts
// one job and one event; a poison upload ends as an error record and a
// failed event; `inferstack submit`, which uploads and sends a message of
// its own, starts one job, not two. Every event arrives on a queue
// subscribed to the events topic, with the attributes filters match.
func TestUploadsStartJobsAndJobsSendEvents(t *testing.T) {
	dir := t.TempDir()
	// One worker at a time, so that the duplicate notification's job meets
	// a finished one (two workers could run the two at once).
	cfg := devSettings(t, map[string]string{"tierCacheTtl": "0s", "cpuMaxTasks": "1"})
	require.True(t, cfg.UploadTriggers, "upload triggers are on by default")
	stack, logs := upLocal(t, cfg)
	adminS3, adminSQS := stack.Clients()
	watch := &eventWatch{t: t, sqs: adminSQS, queue: stack.EventsWatch}

	awsCLI := clientCLI(t, stack)

	// Before the stack runs: the upload's notification waits in the intake
	// queue, as S3 encodes it. It goes back, with a copy: S3 delivers at
	// least once, and this is what a second delivery looks like.
	const key = job.InputPrefix + "my signal é.npy"
	awsCLI("s3", "cp", input(t, 900), "s3://"+stack.Bucket+"/"+key)
	var notification string
	testenv.Eventually(t, "a notification for the upload in the intake queue", 30*time.Second, func() bool {
		out, err := adminSQS.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(stack.Intake), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		require.NoError(t, err)
		for _, m := range out.Messages {
			if strings.Contains(aws.ToString(m.Body), `"Records"`) {
				notification = aws.ToString(m.Body)
			}
			_, err := adminSQS.ChangeMessageVisibility(t.Context(), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(stack.Intake),
				ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
			require.NoError(t, err)
		}
		return notification != ""
	})
	// S3 encodes keys as form values: '+' for a space, UTF-8 bytes escaped
	// (moto escapes '/' too, which S3 leaves alone; both decode the same).
	require.Regexp(t, `"key": "inputs(/|%2F)my\+signal\+%C3%A9\.npy"`, notification)
	uploads, test, err := job.ParseNotification([]byte(notification))
	require.NoError(t, err)
	require.False(t, test)
	require.Len(t, uploads, 1)
	require.Equal(t, key, uploads[0].Key)
	uploadJob := uploads[0].JobID()
	_, err = adminSQS.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(stack.Intake), MessageBody: aws.String(notification)})
	require.NoError(t, err)

	runLocal(t, stack, nil)

	finished := watch.await("finished", func(e event) bool { return e.JobID == uploadJob && e.State == job.EventFinished }, logs)
	require.Equal(t, key, finished.Input)
	require.Equal(t, stack.Bucket, finished.Bucket)
	require.Equal(t, job.DefaultResultsPrefix(uploadJob), finished.Results)
	require.EqualValues(t, 900, finished.Samples)
	require.Equal(t, map[string]string{job.AttrEventState: "finished", job.AttrTier: "cpu"}, finished.Attributes)
	_, err = adminS3.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(stack.Bucket), Key: aws.String(finished.Results + inference.ManifestFile)})
	require.NoError(t, err, "the upload's results")

	// The duplicate is acknowledged once both queues are drained: then it
	// has met the finished job, and added neither a job nor an event.
	waitDrained := func() {
		testenv.Eventually(t, "the intake and cpu queues to drain", 60*time.Second, func() bool {
			busy := 0
			for _, q := range []string{job.IntakeQueue, job.TierQueue(job.TierCPU)} {
				n, err := stack.QueueBacklog(t.Context(), q)
				require.NoError(t, err)
				busy += n
			}
			return busy == 0
		}, logs)
	}
	waitDrained()
	watch.poll()
	require.Equal(t, 1, watch.count(func(e event) bool { return e.JobID == uploadJob }), "one event for a notification delivered twice")
	d, f, err := stack.Counts(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, d, "one job for a notification delivered twice")
	require.Zero(t, f, "the s3:TestEvent S3 sent when the trigger was configured is no failure")

	// A poison upload: an error record and a failed event with the reason.
	poison := filepath.Join(dir, "poison.npy")
	require.NoError(t, os.WriteFile(poison, []byte("not an npy file at all"), 0o644))
	awsCLI("s3", "cp", poison, "s3://"+stack.Bucket+"/"+job.InputPrefix+"poison.npy")
	failed := watch.await("failed", func(e event) bool { return e.State == job.EventFailed }, logs)
	require.Equal(t, job.InputPrefix+"poison.npy", failed.Input)
	require.Equal(t, job.StageWorker, failed.Stage)
	require.NotEmpty(t, failed.Reason)
	require.Equal(t, map[string]string{job.AttrEventState: "failed", job.AttrTier: "cpu"}, failed.Attributes)
	record, err := adminS3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(stack.Bucket), Key: aws.String(job.ErrorKey(failed.JobID))})
	require.NoError(t, err, "the failed event's error record")
	var rec job.ErrorRecord
	require.NoError(t, json.NewDecoder(record.Body).Decode(&rec))
	require.Equal(t, failed.Reason, rec.Reason)
	require.Equal(t, job.ErrorKey(failed.JobID), failed.ErrorRecord)

	// inferstack submit uploads under inputs/.submit/, which starts nothing:
	// its message is the one job.
	cmd := exec.Command(binary, "submit", input(t, 300), "--wait")
	cmd.Env = append(os.Environ(), stack.Env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s\n%s\n%s", out, stderr.String(), logs.String())
	submitted := jobID(t, string(out))
	watch.await("submitted job's finished", func(e event) bool { return e.JobID == submitted && e.State == job.EventFinished }, logs)
	waitDrained()
	watch.poll()
	require.Equal(t, 1, watch.count(func(e event) bool { return strings.HasPrefix(e.Input, job.SubmitPrefix) }),
		"one event for a submitted file: its upload started no job of its own")
	d, f, err = stack.Counts(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, d, "the upload's job and the submitted one")
	require.Equal(t, 1, f, "the poison upload")
	dlq, err := stack.QueueBacklog(t.Context(), job.IntakeDeadLetterQueue)
	require.NoError(t, err)
	require.Zero(t, dlq, "no notification was refused")
}
