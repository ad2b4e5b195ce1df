package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/internal/testenv"
	"github.com/inferstack/inferstack/worker"
)

// calibrations are the calibration objects in the env's bucket.
func (e *env) calibrations() map[string]*calibration.State {
	out, err := e.s3.ListObjectsV2(e.t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(job.CalibrationPrefix)})
	require.NoError(e.t, err)
	states := map[string]*calibration.State{}
	for _, o := range out.Contents {
		data, ok := e.get(aws.ToString(o.Key))
		require.True(e.t, ok)
		var s calibration.State
		require.NoError(e.t, json.Unmarshal(data, &s))
		states[aws.ToString(o.Key)] = &s
	}
	return states
}

// runJob runs one job on a worker with cfg until its manifest is written
// and its message deleted, then stops the worker.
func (e *env) runJob(cfg worker.Config, objects s3io.Objects, body string) *inference.Manifest {
	stop := e.start(cfg, nil, objects, nil)
	defer stop()
	id := e.send(body)
	testenv.Eventually(e.t, "the manifest of "+id, 60*time.Second, func() bool { _, ok := e.manifest(id); return ok })
	testenv.Eventually(e.t, "the message to be deleted", 10*time.Second, func() bool { return e.drained(e.queue) })
	m, _ := e.manifest(id)
	return m
}

// runOn runs one job on the real worker binary on host (processOn) until
// its manifest is written and its message deleted, stops the worker, and
// returns the manifest and the worker named in the job's status.
func (e *env) runOn(host, body string) (*inference.Manifest, string) {
	cmd, logs := e.processOn(host)
	id := e.send(body)
	testenv.Eventually(e.t, "the manifest of "+id, 60*time.Second, func() bool { _, ok := e.manifest(id); return ok }, logs)
	testenv.Eventually(e.t, "the message to be deleted", 10*time.Second, func() bool { return e.drained(e.queue) }, logs)
	require.NoError(e.t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(e.t, cmd.Wait(), "%s", logs)
	m, _ := e.manifest(id)
	var s job.Status
	data, ok := e.get(job.StatusKey(id))
	require.True(e.t, ok)
	require.NoError(e.t, json.Unmarshal(data, &s))
	return m, s.Worker
}

// What one task learns, every task knows: worker A's job calibrates and
// keeps its search in the bucket under a key that names the model, input
// shape, settings and hardware, not the worker or its host; worker B, on
// another host (each in a UTS namespace of its own, as ECS tasks are), goes
// on with that search. The search is marked completed in between (small
// jobs would need many runs to complete it), so that B's choice can only
// have come from the bucket: a run that searched afresh would report
// "calibrated" or "default", never "cached".
func TestWorkersShareTheCalibrationThroughTheBucket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	e.input("a.npy", 2000)
	e.input("b.npy", 2000)
	e.cfg.BatchSize, e.cfg.ChunkSamples = 0, 0

	a, onA := e.runOn("task-a", `{"filename": "a.npy"}`)
	require.True(t, strings.HasPrefix(onA, "task-a-"), "worker A ran on host task-a: %s", onA)
	require.NotEqual(t, "flag", a.BatchChoice.Source, "worker A did not calibrate")
	kept := e.calibrations()
	require.Len(t, kept, 1, "worker A's job kept one search")
	var key string
	var state *calibration.State
	for k, s := range kept {
		key, state = k, s
	}
	require.Equal(t, manifest.Device("cpu"), state.Device)
	require.Positive(t, state.Start)
	require.Equal(t, a.BatchChoice.Trials, state.Trials)

	// The search completes, at A's best setting.
	state.Step = ""
	data, err := json.Marshal(state)
	require.NoError(t, err)
	e.put(key, data)

	b, onB := e.runOn("task-b", `{"filename": "b.npy"}`)
	require.True(t, strings.HasPrefix(onB, "task-b-"), "worker B ran on host task-b: %s", onB)
	require.Equal(t, "cached", b.BatchChoice.Source)
	require.False(t, b.BatchChoice.Partial)
	require.Equal(t, state.Best.BatchSize, b.BatchSize)
	require.Equal(t, state.Best.Threads, b.Threads)
	require.Equal(t, state.Trials, b.BatchChoice.Trials)
	require.Len(t, e.calibrations(), 1, "both workers use one key")
}

// A worker that may not read or write the calibrations searches on its own
// and still does the job: the bucket only saves later runs a search.
func TestAJobRunsWithoutTheCalibrationsInTheBucket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	e.input("a.npy", 2000)
	cfg := e.cfg
	cfg.BatchSize, cfg.ChunkSamples = 0, 0
	m := e.runJob(cfg, noCalibrations{Objects: e.s3}, `{"filename": "a.npy"}`)
	require.Contains(t, []string{"calibrated", "default"}, m.BatchChoice.Source)
	require.EqualValues(t, 2000, m.Samples)
	require.Empty(t, e.calibrations())
}

// noCalibrations denies every read and write under calibration/, as S3
// does for a role without the ShareCalibrations statement.
type noCalibrations struct{ s3io.Objects }

func denied() error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
		Err:      &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"},
	}}
}

func (n noCalibrations) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if isCalibration(in.Key) {
		return nil, denied()
	}
	return n.Objects.GetObject(ctx, in, opts...)
}

func (n noCalibrations) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if isCalibration(in.Key) {
		return nil, denied()
	}
	return n.Objects.PutObject(ctx, in, opts...)
}

func isCalibration(key *string) bool {
	return strings.HasPrefix(aws.ToString(key), job.CalibrationPrefix)
}

// interleaved runs between, once, right after the first read of an object:
// another writer saving between this one's read and its write.
type interleaved struct {
	s3io.Objects
	between func()
	refused int // conditional writes refused (412)
}

func (i *interleaved) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := i.Objects.GetObject(ctx, in, opts...)
	if err == nil {
		// Read the body before the other writer writes.
		data, rerr := io.ReadAll(out.Body)
		_ = out.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		out.Body = io.NopCloser(bytes.NewReader(data))
	}
	if f := i.between; f != nil {
		i.between = nil
		f()
	}
	return out, err
}

func (i *interleaved) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	out, err := i.Objects.PutObject(ctx, in, opts...)
	if awserr.HTTPStatus(err) == http.StatusPreconditionFailed {
		i.refused++
	}
	return out, err
}

// Two writers save their trials of one search at once: the second saves
// between the first's read and its write. The first's conditional write is
// refused (If-None-Match: * where there was no object, If-Match on the
// version it read where there was), it reads again and merges, and the
// object keeps both writers' trials.
func TestConcurrentCalibrationSavesKeepEachOthersTrials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	trial := func(batch int64, rate float64) manifest.Trial {
		return manifest.Trial{BatchSize: batch, Threads: 1, SamplesPerSec: rate}
	}
	search := func(best manifest.Trial, trials ...manifest.Trial) *calibration.State {
		return &calibration.State{Device: "cpu", Step: "up", Start: 16, Best: best, Trials: trials}
	}
	for name, before := range map[string]*calibration.State{
		"a new search":  nil,
		"a kept search": search(trial(16, 100), trial(16, 100)),
	} {
		t.Run(name, func(t *testing.T) {
			key := "test-" + map[bool]string{true: "new", false: "kept"}[before == nil]
			store := &s3io.Store{S3: e.s3, Bucket: e.bucket}
			if before != nil {
				require.NoError(t, worker.Calibrations{Store: store}.Save(t.Context(), key, before))
			}
			one := search(trial(32, 130), trial(16, 100), trial(32, 130))
			two := search(trial(16, 110), trial(16, 110), trial(8, 90))
			first := &interleaved{Objects: e.s3, between: func() {
				require.NoError(t, worker.Calibrations{Store: store}.Save(t.Context(), key, two))
			}}
			require.NoError(t, worker.Calibrations{Store: &s3io.Store{S3: first, Bucket: e.bucket}}.Save(t.Context(), key, one))
			require.Equal(t, 1, first.refused, "the first writer's write was not refused")

			kept, err := worker.Calibrations{Store: store}.Load(t.Context(), key)
			require.NoError(t, err)
			require.ElementsMatch(t, []manifest.Trial{trial(16, 110), trial(32, 130), trial(8, 90)}, kept.Trials)
			require.Equal(t, calibration.Merge(two, one), kept, "the first writer merged with the second's save")
		})
	}
}
