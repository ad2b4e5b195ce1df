package e2e

import (
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
	"github.com/inferstack/inferstack/internal/testenv"
)

// without leaves statement sid out of role's document ("dispatch",
// "client", "cpu-worker", "gpu-worker"), as a program that forgot it would.
func without(role, sid string) stackOption {
	return func(s *stack) { s.dropped[role] = append(s.dropped[role], sid) }
}

// errorRecord reads errors/<id>.json as the harness (admin); ok is false
// while there is none.
func (s *stack) errorRecord(id string) (reason string, ok bool) {
	out, err := s.s3.GetObject(s.t.Context(), &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(job.ErrorsPrefix + id + ".json")})
	if err != nil {
		return "", false
	}
	defer out.Body.Close() //nolint:errcheck // read
	var record struct {
		Reason string `json:"reason"`
	}
	data, err := io.ReadAll(out.Body)
	require.NoError(s.t, err)
	require.NoError(s.t, json.Unmarshal(data, &record), "%s", data)
	return record.Reason, true
}

// deadLetters receives what the queue name holds (as the harness) and
// returns each message's reason attribute.
func (s *stack) deadLetters(name string) []string {
	out, err := s.sqs.ReceiveMessage(s.t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.queues[name]), MaxNumberOfMessages: 10,
		MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 1})
	require.NoError(s.t, err)
	var reasons []string
	for _, m := range out.Messages {
		reasons = append(reasons, aws.ToString(m.MessageAttributes["reason"].StringValue))
	}
	return reasons
}

func (s *stack) backlog(name string) int {
	n, err := localstack.Backlog(s.t.Context(), s.sqs, s.queues[name])
	require.NoError(s.t, err)
	return n
}

// A worker process whose role lacks one statement of policy.WorkerTask
// fails the job at its first denied call, with a record naming what to
// grant, and does not retry it; with the whole document the same job runs.
// The client, the dispatch handler and the worker each act as their own
// IAM user (internal/policy's documents), on moto with IAM enforced.
func TestWorkerRoleNeedsEveryStatement(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []stackOption
		allowed bool
	}{
		{name: "whole-document", allowed: true},
		{name: "without-readinputs", opts: []stackOption{without("cpu-worker", "ReadInputs")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, false, tc.opts...)
			var logs emulator.LockedBuffer
			w, err := localstack.StartWorker(binary, s.workerEnv("cpu"), &logs)
			require.NoError(t, err)
			t.Cleanup(w.Stop)

			in := input(t, 500)
			started := time.Now()
			code, out, errOut := s.cli("submit", in, "--wait")
			took := time.Since(started)
			if tc.allowed {
				require.Equal(t, 0, code, "%s\nworker:\n%s", errOut, logs.String())
				require.Contains(t, out, "done: 500 samples on cpu")
				require.Zero(t, s.backlog("cpu-dlq"))
				return
			}
			require.NotEqual(t, 0, code, "%s\nworker:\n%s", out, logs.String())
			require.Contains(t, errOut, "job failed")
			id := jobID(t, out)
			key := job.SubmitPrefix + filepath.Base(in) // where submit uploads
			reason, ok := s.errorRecord(id)
			require.True(t, ok, "errors/%s.json", id)
			for _, want := range []string{"access denied", "s3:GetObject", key, "grant it to this role"} {
				require.Contains(t, reason, want)
			}
			// At once: one delivery, no retry (the first would wait 10 s).
			require.NotContains(t, logs.String(), "retrying later")
			require.Equal(t, 1, strings.Count(logs.String(), "a permission is missing"), logs.String())
			require.Zero(t, s.backlog("cpu"), "the message is gone from the tier queue")
			dead := s.deadLetters("cpu-dlq")
			require.Len(t, dead, 1)
			require.Contains(t, dead[0], "s3:GetObject")
			t.Logf("denied job ended %.1fs after submit: %s", took.Seconds(), reason)
		})
	}
}

// The dispatch handler's role without ReadTier: the message cannot be
// routed, and instead of coming back until the intake's redrive drops it,
// it is dead-lettered at once with an error record naming ssm:GetParameter.
func TestDispatchRoleWithoutReadTier(t *testing.T) {
	s := newStack(t, false, without("dispatch", "ReadTier"))
	code, out, errOut := s.cli("submit", input(t, 100), "--wait")
	require.NotEqual(t, 0, code, out)
	require.Contains(t, errOut, "job failed")
	id := jobID(t, out)
	reason, ok := s.errorRecord(id)
	require.True(t, ok, "errors/%s.json", id)
	for _, want := range []string{"access denied", "ssm:GetParameter", s.tierParam} {
		require.Contains(t, reason, want)
	}
	dead := s.deadLetters("intake-dlq")
	require.Len(t, dead, 1)
	require.Contains(t, dead[0], "ssm:GetParameter")
	// The record is written first, then the dead letter and the refused
	// event; the intake message is deleted once the handler returns.
	testenv.Eventually(t, "the refused message to leave the intake queue", 30*time.Second, func() bool { return s.backlog("intake") == 0 })
	require.Zero(t, s.backlog("cpu"))
	t.Logf("dispatch record: %s", reason)
}
