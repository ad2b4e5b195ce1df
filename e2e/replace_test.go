package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/scaling"
	"github.com/inferstack/inferstack/internal/testenv"
)

// TestScalerReplacesAWorkerKilledMidJob kills (SIGKILL) the worker process
// that runs a job, as a crash or the OOM killer would: the scaler logs the
// exit as ECS records a stopped task's reason, starts a replacement while
// the job's message is still in flight, and the replacement takes the job
// once its visibility timeout lapses and resumes it from its checkpoints to
// the same bytes as `inferstack run`.
func TestScalerReplacesAWorkerKilledMidJob(t *testing.T) {
	s := newStack(t, false)
	policy, err := scaling.New(scaling.Config{MaxTasks: 2, BacklogPerTask: 2, IdleMinutes: 1, TasksPerInstance: 1})
	require.NoError(t, err)
	// A short visibility keeps the wait for the killed worker's message
	// short. Batch 1 and chunks of 100 samples make 100,000 samples 1,000
	// checkpoints (3,000 PUTs to moto, about 10 s here): long enough to be
	// killed mid-job after the first status with progress (1 s).
	const samples, chunk = 100000, 100
	env := append(s.workerEnv("cpu"), runenv.EnvVisibility+"=10s", runenv.EnvBatchSize+"=1",
		runenv.EnvChunkSamples+"="+strconv.Itoa(chunk))
	var logs, scalerLogs emulator.LockedBuffer
	var mu sync.Mutex
	var started []localstack.Process
	scaler := &localstack.Scaler{Queues: s.sqs, Interval: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&scalerLogs, nil)),
		Tiers: []localstack.Tier{{Name: "cpu", QueueURL: s.queues["cpu"], Policy: policy, IdleAfter: time.Minute,
			Start: func() (localstack.Process, error) {
				p, err := localstack.StartWorker(binary, env, &logs)
				if err == nil {
					mu.Lock()
					started = append(started, p)
					mu.Unlock()
				}
				return p, err
			}}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- scaler.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	processes := func() []localstack.Process {
		mu.Lock()
		defer mu.Unlock()
		return append([]localstack.Process(nil), started...)
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		testenv.Eventually(t, what, timeout, cond, &scalerLogs, &logs)
	}
	getJSON := func(key string, v any) bool {
		out, err := s.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		if err != nil {
			return false
		}
		defer out.Body.Close()
		data, err := io.ReadAll(out.Body)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, v), "%s: %s", key, data)
		return true
	}
	// byWorkerID is the process a status object names: a worker's default
	// id is host-pid.
	byWorkerID := func(id string) localstack.Process {
		for _, p := range processes() {
			if strings.HasSuffix(id, fmt.Sprintf("-%d", p.Pid())) {
				return p
			}
		}
		return nil
	}

	in := input(t, samples)
	code, out, errOut := s.cli("submit", in)
	require.Equal(t, 0, code, errOut)
	id := jobID(t, out)

	// At most 9 chunks wait for upload behind the engine (8 queued, 1
	// uploading): 20 chunks done means at least one is checkpointed.
	var running job.Status
	waitFor("the job to run 20 chunks", 60*time.Second, func() bool {
		running = job.Status{}
		return getJSON(job.StatusKey(id), &running) && running.State == job.StateRunning && running.SamplesDone >= 20*chunk
	})
	victim := byWorkerID(running.Worker)
	require.NotNil(t, victim, "status names worker %q, not one the scaler started", running.Worker)
	require.NoError(t, syscall.Kill(victim.Pid(), syscall.SIGKILL))
	select {
	case <-victim.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d outlived SIGKILL", victim.Pid())
	}
	require.False(t, getJSON(job.ResultsPrefix+id+"/"+inference.ManifestFile, &inference.Manifest{}), "killed too late: the job had finished")

	// The scaler says how the worker ended and replaces it: the message is
	// in flight, so the backlog still wants one worker.
	exited := fmt.Sprintf(`msg="worker exited" tier=cpu pid=%d status="signal: killed"`, victim.Pid())
	waitFor("the scaler to log the exit", 10*time.Second, func() bool { return strings.Contains(scalerLogs.String(), exited) })
	var replacement localstack.Process
	waitFor("a replacement", 10*time.Second, func() bool {
		ps := processes()
		replacement = ps[len(ps)-1]
		return replacement != victim
	})
	require.Contains(t, scalerLogs.String(), fmt.Sprintf(`msg="worker started" tier=cpu pid=%d`, replacement.Pid()))

	// Once the killed worker's visibility lapses, the replacement takes the
	// job and finishes it from its checkpoints.
	var m inference.Manifest
	waitFor("the manifest", 120*time.Second, func() bool { return getJSON(job.DefaultResultsPrefix(id)+inference.ManifestFile, &m) })
	var final job.Status
	waitFor("the status to say done", 10*time.Second, func() bool {
		return getJSON(job.StatusKey(id), &final) && final.State == job.StateDone
	})
	require.Same(t, replacement, byWorkerID(final.Worker), "the replacement finished the job (status names %q)", final.Worker)
	require.EqualValues(t, samples, m.Samples)
	require.Positive(t, m.ResumedAt, "resumed from the killed worker's checkpoints, not from scratch")
	select {
	case <-replacement.Done():
		t.Fatalf("the replacement exited: %s", replacement.ExitStatus())
	default:
	}
	require.Len(t, processes(), 2, "one start, one replacement")
	require.Equal(t, 1, strings.Count(scalerLogs.String(), `msg="worker exited"`))

	// The same bytes as `inferstack run` on the same input, model and pinned engine settings.
	model := filepath.Join(t.TempDir(), "mlp.onnx")
	obj, err := s.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("models/mlp.onnx")})
	require.NoError(t, err)
	data, err := io.ReadAll(obj.Body)
	obj.Body.Close() //nolint:errcheck // read
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(model, data, 0o644))
	ref := filepath.Join(t.TempDir(), "ref")
	code, _, errOut = s.cli("run", "--model", model, "--input", in, "--output", ref, "--device", "cpu",
		"--batch-size", "1", "--chunk-samples", strconv.Itoa(chunk), "--threads", "1", "--quiet")
	require.Equal(t, 0, code, errOut)
	var want inference.Manifest
	data, err = os.ReadFile(filepath.Join(ref, inference.ManifestFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &want))
	require.NotEmpty(t, want.Outputs)
	require.Len(t, m.Outputs, len(want.Outputs))
	for _, o := range want.Outputs {
		wantData, err := os.ReadFile(filepath.Join(ref, o.File))
		require.NoError(t, err)
		obj, err := s.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(job.ResultsPrefix + id + "/" + o.File)})
		require.NoError(t, err, o.File)
		got, err := io.ReadAll(obj.Body)
		obj.Body.Close() //nolint:errcheck // read
		require.NoError(t, err)
		require.True(t, bytes.Equal(wantData, got), "%s differs from inferstack run", o.File)
	}

	waitFor("the queues to drain", 30*time.Second, func() bool {
		n, err := localstack.Backlog(t.Context(), s.sqs, s.queues["cpu"])
		return err == nil && n == 0
	})
	n, err := localstack.Backlog(t.Context(), s.sqs, s.queues["cpu-dlq"])
	require.NoError(t, err)
	require.Zero(t, n, "nothing dead-lettered")
	t.Logf("killed pid %d at %d/%d samples; pid %d resumed at chunk %d and finished", victim.Pid(), running.SamplesDone, samples,
		replacement.Pid(), m.ResumedAt)
}
