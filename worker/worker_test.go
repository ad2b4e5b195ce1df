package worker_test

// The worker against moto over HTTP with the real ONNX Runtime: in process,
// and as the real `inferstack worker` binary for kill -9 and SIGTERM.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/inference/predictions"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/internal/testenv"
	"github.com/inferstack/inferstack/worker"
)

var (
	moto   *emulator.Moto
	binary string
)

func TestMain(m *testing.M) { testenv.Main(m, setUp) }

func setUp(m *testing.M) (int, error) {
	if _, err := inference.InitRuntime(""); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "worker-test")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if binary, err = testenv.Build(dir, "inferstack", "../cmd/inferstack"); err != nil {
		return 0, err
	}
	if moto, err = emulator.StartMoto(context.Background()); err != nil {
		return 0, err
	}
	defer moto.Stop()
	return m.Run(), nil
}

var seq atomic.Int64

// env is one test's bucket, queues, events topic and model.
type env struct {
	t             testing.TB
	s3            *s3.Client
	sqs           *sqs.Client
	sns           *sns.Client
	bucket, queue string
	dlq           string
	// topic is the events topic; eventsQueue receives its messages raw.
	topic, eventsQueue string
	cfg                worker.Config
	mlp                *onnxmodel.MLP
	modelPath          string
}

func newEnv(t testing.TB, visibility time.Duration) *env {
	t.Helper()
	ctx := t.Context()
	cfg, err := moto.Config(ctx)
	require.NoError(t, err)
	e := &env{t: t, s3: s3.NewFromConfig(cfg, awsenv.EmulatorS3Options), sqs: sqs.NewFromConfig(cfg), sns: sns.NewFromConfig(cfg)}
	name := fmt.Sprintf("%s-%d", strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")), seq.Add(1))
	name = strings.Trim(name[max(0, len(name)-50):], "-")
	// The cpu tier's queues as a stack has them, with the test's visibility timeout.
	made, err := localstack.Create(ctx, e.s3, e.sqs, e.sns,
		localstack.Spec{Bucket: name, Prefix: name + "-", Topic: name + "-events", Queues: testenv.TierQueues(job.TierCPU)},
		localstack.WithQueue(job.TierQueue(job.TierCPU), func(q *settings.Queue) { q.VisibilitySeconds = int(visibility.Seconds()) }))
	require.NoError(t, err)
	e.bucket, e.topic = made.Bucket, made.EventsTopic
	e.queue, e.dlq = made.Queues[job.TierQueue(job.TierCPU)], made.Queues[job.TierDeadLetterQueue(job.TierCPU)]
	e.subscribe(name + "-events")

	e.mlp = onnxmodel.NewMLP(24, 32, 5, 1)
	model, err := e.mlp.Model()
	require.NoError(t, err)
	e.modelPath = filepath.Join(t.TempDir(), "mlp.onnx")
	require.NoError(t, os.WriteFile(e.modelPath, model, 0o644))
	e.put("models/mlp.onnx", model)
	e.cfg = worker.Config{
		Worker: runenv.Worker{Region: emulator.Region, QueueURL: e.queue, DeadLetterURL: e.dlq, Bucket: e.bucket, ModelKey: "models/mlp.onnx",
			Tier: "cpu", Device: "cpu", Visibility: visibility, MaxReceives: 5, StopTimeout: 30 * time.Second, EventsTopicARN: e.topic, Threads: 1},
		BatchSize: 32, ChunkSamples: 256, Name: "test", StatusEvery: 100 * time.Millisecond, PollWait: time.Second,
	}
	return e
}

// subscribe creates a queue subscribed to the events topic with raw
// message delivery: each event arrives as its body, its message attributes
// as the SQS message's.
func (e *env) subscribe(name string) {
	ctx := e.t.Context()
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(e.t, err)
	e.eventsQueue = aws.ToString(q.QueueUrl)
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	require.NoError(e.t, err)
	_, err = e.sns.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(e.topic), Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes["QueueArn"]), Attributes: map[string]string{"RawMessageDelivery": "true"}})
	require.NoError(e.t, err)
}

// published is one job event as a subscriber gets it.
type published struct {
	job.Event
	attrs map[string]string // message attributes
}

// events returns the events published since the last call, read with the
// contract's own type; the worker publishes before it deletes a message, so
// once the queue is drained its events are here.
func (e *env) events() []published {
	var got []published
	for {
		out, err := e.sqs.ReceiveMessage(e.t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.eventsQueue),
			MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		require.NoError(e.t, err)
		if len(out.Messages) == 0 {
			return got
		}
		var seen []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			p := published{attrs: map[string]string{}}
			require.NoError(e.t, json.Unmarshal([]byte(aws.ToString(m.Body)), &p.Event), aws.ToString(m.Body))
			for name, v := range m.MessageAttributes {
				require.Equal(e.t, "String", aws.ToString(v.DataType), name)
				p.attrs[name] = aws.ToString(v.StringValue)
			}
			got = append(got, p)
			seen = append(seen, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		del, err := e.sqs.DeleteMessageBatch(e.t.Context(), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(e.eventsQueue), Entries: seen})
		require.NoError(e.t, err)
		require.Empty(e.t, del.Failed)
	}
}

func (e *env) put(key string, data []byte) {
	_, err := e.s3.PutObject(e.t.Context(), &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
	require.NoError(e.t, err)
}

func (e *env) get(key string) ([]byte, bool) {
	out, err := e.s3.GetObject(e.t.Context(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, false
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	require.NoError(e.t, err)
	return data, true
}

// input uploads n random samples as inputs/name and returns the file.
func (e *env) input(name string, n int) []byte {
	v := make([]float32, n*24)
	for i := range v {
		v[i] = float32((i*7919)%1000)/500 - 1
	}
	data := append(npy.EncodeHeader(npy.Float32, []int64{int64(n), 24}), npy.FromFloat32(v)...)
	e.put("inputs/"+name, data)
	return data
}

func (e *env) send(body string) string {
	_, err := e.sqs.SendMessage(e.t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(e.queue), MessageBody: aws.String(body)})
	require.NoError(e.t, err)
	req, err := job.Parse([]byte(body))
	if err != nil {
		return ""
	}
	return req.JobID
}

// start runs an in-process worker until the test ends or stop is called.
func (e *env) start(cfg worker.Config, queue worker.Queue, objects s3io.Objects, metrics io.Writer) (stop func()) {
	return e.startWith(cfg, parts{queue: queue, objects: objects, metrics: metrics})
}

// parts are what a test's worker is built from; nil ones are the env's
// clients (queue, objects, events) or nothing (log, metrics).
type parts struct {
	queue   worker.Queue
	objects s3io.Objects
	events  worker.Events
	log     *slog.Logger
	metrics io.Writer
}

// startWith is start with any of the worker's parts replaced.
func (e *env) startWith(cfg worker.Config, p parts) (stop func()) {
	if p.queue == nil {
		p.queue = e.sqs
	}
	if p.objects == nil {
		p.objects = e.s3
	}
	if p.events == nil {
		p.events = e.sns
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := worker.New(cfg, p.queue, p.objects, p.events, p.log, p.metrics)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(e.t, <-done)
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// process starts the real `inferstack worker` with the env's settings.
func (e *env) process(extra ...string) (*exec.Cmd, *emulator.LockedBuffer) {
	return e.launch(exec.Command(binary, "worker"), extra...)
}

// processOn starts the real `inferstack worker` as process does, on a host
// of its own name (a UTS namespace, as each ECS task's container has).
func (e *env) processOn(host string, extra ...string) (*exec.Cmd, *emulator.LockedBuffer) {
	unshare, err := exec.LookPath("unshare")
	require.NoError(e.t, err, "this test runs workers under hostnames of their own with unshare(1): apt-get install util-linux")
	return e.launch(exec.Command(unshare, "--uts", "sh", "-c", `hostname "$0" && exec "$@"`, host, binary, "worker"), extra...)
}

// launch starts cmd, a worker, with the env's settings (its pinned batch and
// chunk sizes where set) and extra variables.
func (e *env) launch(cmd *exec.Cmd, extra ...string) (*exec.Cmd, *emulator.LockedBuffer) {
	cmd.Env = append(os.Environ(), moto.Env()...)
	cmd.Env = append(cmd.Env, runenv.List(e.cfg.Env())...)
	cmd.Env = append(cmd.Env, "INFERSTACK_ORT_LIB="+inference.DefaultLibPath(), runenv.EnvPollWait+"=1s")
	if e.cfg.BatchSize > 0 {
		cmd.Env = append(cmd.Env, runenv.EnvBatchSize+"="+fmt.Sprint(e.cfg.BatchSize))
	}
	if e.cfg.ChunkSamples > 0 {
		cmd.Env = append(cmd.Env, runenv.EnvChunkSamples+"="+fmt.Sprint(e.cfg.ChunkSamples))
	}
	cmd.Env = append(cmd.Env, extra...)
	logs := &emulator.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(e.t, cmd.Start())
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, logs
}

func (e *env) manifest(jobID string) (*inference.Manifest, bool) {
	data, ok := e.get("results/" + jobID + "/manifest.json")
	if !ok {
		return nil, false
	}
	var m inference.Manifest
	require.NoError(e.t, json.Unmarshal(data, &m))
	return &m, true
}

func (e *env) checkpointDone(jobID string) int64 {
	data, ok := e.get("checkpoints/" + jobID + "/checkpoint.json")
	if !ok {
		return 0
	}
	var cp struct {
		Done int64 `json:"chunks_done"`
	}
	require.NoError(e.t, json.Unmarshal(data, &cp))
	return cp.Done
}

func (e *env) counts(url string) (visible, inFlight int) {
	out, err := e.sqs.GetQueueAttributes(e.t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	require.NoError(e.t, err)
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessages"], &visible)
	fmt.Sscan(out.Attributes["ApproximateNumberOfMessagesNotVisible"], &inFlight)
	return visible, inFlight
}

func (e *env) drained(url string) bool {
	v, f := e.counts(url)
	return v+f == 0
}

// reference runs the engine locally on the same bytes with the same pinned
// batch size, chunk size and threads, and returns its output files.
func (e *env) reference(input []byte) map[string][]byte {
	return e.localRun("x.npy", input, nil, "")
}

// localRun writes input as name and runs the engine over it as `inferstack
// run` does, with the env's pinned settings (and table, if set, reading it
// as a table into outputFormat); it returns every file the run wrote but
// the manifest.
func (e *env) localRun(name string, input []byte, table *inference.TableOptions, outputFormat string) map[string][]byte {
	path := filepath.Join(e.t.TempDir(), name)
	require.NoError(e.t, os.WriteFile(path, input, 0o644))
	model, err := inference.LoadModel(e.modelPath)
	require.NoError(e.t, err)
	defer model.Close()
	f, err := os.Open(path)
	require.NoError(e.t, err)
	defer f.Close()
	out := e.t.TempDir()
	pass := inference.Pass{Model: model, Input: f, InputSize: int64(len(input)), InputName: path,
		Device: inference.DeviceCPU, BatchSize: e.cfg.BatchSize, ChunkSamples: e.cfg.ChunkSamples, Threads: e.cfg.Threads}
	var sink inference.Sink = inference.NewDirSink(out)
	if table != nil {
		src, err := inference.OpenTable(f, int64(len(input)), path, model, *table)
		require.NoError(e.t, err)
		defer src.Close()
		pass.Source = src
		if outputFormat != job.OutputNpy {
			sink = &inference.ParquetDirSink{Dir: out, Kept: src.KeptFields(), Options: predictions.Options{RowGroupBytes: e.cfg.ResultRowGroupBytes}}
		}
	}
	_, err = inference.Run(e.t.Context(), pass, sink)
	require.NoError(e.t, err)
	files := map[string][]byte{}
	entries, err := os.ReadDir(out)
	require.NoError(e.t, err)
	for _, entry := range entries {
		if entry.Name() != inference.ManifestFile {
			files[entry.Name()], err = os.ReadFile(filepath.Join(out, entry.Name()))
			require.NoError(e.t, err)
		}
	}
	return files
}

func (e *env) requireResults(jobID string, want map[string][]byte) *inference.Manifest {
	e.t.Helper()
	m, ok := e.manifest(jobID)
	require.True(e.t, ok, "no manifest for %s", jobID)
	for name, data := range want {
		got, ok := e.get("results/" + jobID + "/" + name)
		require.True(e.t, ok, name)
		require.True(e.t, bytes.Equal(data, got), "%s differs from a clean local run", name)
	}
	return m
}

func TestJobMatchesALocalRunByteForByte(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := e.input("signal.npy", 3000)
	var protections []string
	var mu sync.Mutex
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		protections = append(protections, r.Method+" "+r.URL.Path+" "+string(body))
		mu.Unlock()
		// The agent's answer when ECS agrees (ECS developer guide, "Task
		// scale-in protection endpoint").
		var asked struct{ ProtectionEnabled bool }
		_ = json.Unmarshal(body, &asked)
		_, _ = fmt.Fprintf(w, `{"protection":{"ProtectionEnabled":%t,"TaskArn":"arn:aws:ecs:us-east-1:123456789012:task/c/t"}}`, asked.ProtectionEnabled)
	}))
	defer agent.Close()
	cfg := e.cfg
	cfg.ECSAgentURI = agent.URL
	var metrics bytes.Buffer
	stop := e.start(cfg, nil, nil, &metrics)
	jobID := e.send(`{"filename": "signal.npy"}`)

	testenv.Eventually(e.t, "the manifest", 60*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	testenv.Eventually(e.t, "the message to be deleted", 10*time.Second, func() bool { return e.drained(e.queue) })
	stop()
	m := e.requireResults(jobID, e.reference(input))
	require.EqualValues(t, 3000, m.Samples)
	require.NotEmpty(t, m.Input.ETag)
	require.True(t, e.drained(e.dlq))

	status, ok := e.get(job.StatusKey(jobID))
	require.True(t, ok)
	var s job.Status // the type clients read it with
	require.NoError(t, json.Unmarshal(status, &s))
	require.Equal(t, job.StateDone, s.State)
	require.EqualValues(t, 3000, s.SamplesDone)
	require.Equal(t, job.DefaultResultsPrefix(jobID), s.Results)
	require.Equal(t, "inputs/signal.npy", s.Input)
	require.NotNil(t, s.ReceivedAt)
	require.NotNil(t, s.EngineFinishedAt)

	mu.Lock()
	require.GreaterOrEqual(t, len(protections), 2)
	require.Equal(t, `PUT /task-protection/v1/state {"ExpiresInMinutes":15,"ProtectionEnabled":true}`, protections[0])
	require.Equal(t, `PUT /task-protection/v1/state {"ProtectionEnabled":false}`, protections[len(protections)-1])
	mu.Unlock()

	var emf map[string]any
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(metrics.Bytes()), &emf))
	require.EqualValues(t, 3000, emf["Samples"])
	require.Equal(t, "cpu", emf["Tier"])
	require.Equal(t, "Inferstack", emf["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)["Namespace"])

	// Redelivery of a finished job is acknowledged without recomputing.
	stop = e.start(cfg, nil, nil, &metrics)
	e.send(`{"filename": "signal.npy"}`)
	testenv.Eventually(e.t, "the duplicate to be acknowledged", 30*time.Second, func() bool { return e.drained(e.queue) })
	stop()
	again, _ := e.manifest(jobID)
	require.Equal(t, m.FinishedAt, again.FinishedAt, "the manifest was not rewritten")
}

// slowJob pins the engine to batch 1 and chunks of 100 samples, so that a
// 40k-sample job takes 400 checkpoints (about 1,200 PUTs to moto): long
// enough, chunk by chunk, to be interrupted.
func slowJob(e *env) []byte {
	e.cfg.BatchSize, e.cfg.ChunkSamples = 1, 100
	return e.input("long.npy", 40000)
}

func TestKillNineThenAnotherWorkerResumesToTheSameBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Second)
	input := slowJob(e)
	first, logs := e.process()
	jobID := e.send(`{"filename": "long.npy"}`)
	testenv.Eventually(e.t, "three checkpointed chunks", 60*time.Second, func() bool { return e.checkpointDone(jobID) >= 3 })
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	_, done := e.manifest(jobID)
	require.False(t, done, "killed too late: the job had finished\n%s", logs)

	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	m := e.requireResults(jobID, e.reference(input))
	require.GreaterOrEqual(t, m.ResumedAt, int64(3), "resumed from the checkpoint, not from scratch")
	testenv.Eventually(e.t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.True(t, e.drained(e.dlq))
	events := e.events()
	require.Len(t, events, 1, "the killed delivery announced nothing; the one that finished, once")
	require.Equal(t, job.EventFinished, events[0].State)
}

func TestSIGTERMHandsTheJobBackInTimeAndItCompletesElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := slowJob(e)
	first, logs := e.process(runenv.EnvStopTimeout + "=500ms")
	jobID := e.send(`{"filename": "long.npy"}`)
	testenv.Eventually(e.t, "a checkpointed chunk", 60*time.Second, func() bool { return e.checkpointDone(jobID) >= 1 })
	signalled := time.Now()
	require.NoError(t, first.Process.Signal(syscall.SIGTERM))
	// cmd.Wait, not Process.Wait: it also waits for the copy of the
	// worker's output into logs, which the checks below read.
	require.NoError(t, first.Wait(), "%s", logs)
	require.Equal(t, 0, first.ProcessState.ExitCode(), "%s", logs)
	require.Less(t, time.Since(signalled), 5*time.Second, "stop timeout 500ms plus a 1s poll")
	require.Contains(t, logs.String(), "handed back")
	// Handed back at once, not after the 30 s visibility timeout.
	testenv.Eventually(e.t, "the message to be visible again", 3*time.Second, func() bool { v, _ := e.counts(e.queue); return v == 1 })
	require.Empty(t, e.events(), "a job handed back is not over: no event")

	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	e.requireResults(jobID, e.reference(input))
	testenv.Eventually(e.t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	events := e.events()
	require.Len(t, events, 1)
	require.Equal(t, job.EventFinished, events[0].State)
	require.Equal(t, jobID, events[0].JobID)
}

func TestTheSameJobOnTwoWorkersGivesOneConsistentResult(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := e.input("twice.npy", 4000)
	jobID := e.send(`{"filename": "twice.npy"}`)
	e.send(`{"filename": "twice.npy"}`)
	e.start(e.cfg, nil, nil, nil)
	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(e.t, "both messages to end", 60*time.Second, func() bool { return e.drained(e.queue) })
	e.requireResults(jobID, e.reference(input))
	require.True(t, e.drained(e.dlq))
}

func TestPoisonIsDeadLetteredWithAnErrorRecordWhileTheWorkerServesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	good := e.input("good.npy", 500)
	full := e.input("full.npy", 100)
	e.put("inputs/truncated.npy", full[:len(full)-9])
	e.put("inputs/wide.npy", append(npy.EncodeHeader(npy.Float32, []int64{10, 30}), make([]byte, 10*30*4)...))
	poison := map[string]string{
		`{"filename": "missing.npy"}`:   "not found",
		`{"filename": "truncated.npy"}`: "truncated",
		`{"filename": "wide.npy"}`:      "model needs 24",
		`{"file": "x"}`:                 "unknown field",
	}
	start := time.Now()
	e.start(e.cfg, nil, nil, nil)
	ids := map[string]string{}
	for body := range poison {
		ids[body] = e.send(body)
	}
	goodID := e.send(`{"filename": "good.npy"}`)
	testenv.Eventually(e.t, "the good job", 60*time.Second, func() bool { _, ok := e.manifest(goodID); return ok })
	testenv.Eventually(e.t, "every message to end", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.Less(t, time.Since(start), 20*time.Second, "poison ends in seconds, not after visibility timeouts")
	e.requireResults(goodID, e.reference(good))

	dead := map[string]string{}
	for {
		out, err := e.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.dlq), MaxNumberOfMessages: 10, VisibilityTimeout: 60, MessageAttributeNames: []string{"All"}})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			dead[aws.ToString(m.Body)] = aws.ToString(m.MessageAttributes["reason"].StringValue)
		}
	}
	require.Len(t, dead, len(poison))
	for body, reason := range poison {
		require.Contains(t, dead[body], reason, body)
		if id := ids[body]; id != "" {
			record, ok := e.get("errors/" + id + ".json")
			require.True(t, ok, "no error record for %s", body)
			require.Contains(t, string(record), reason)
		}
	}
}

func TestJobSurvivesTheEndpointGoingAwayMidJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := slowJob(e)
	proxy, err := testenv.NewProxy(moto.URL)
	require.NoError(t, err)
	defer proxy.Close()
	cfg, err := moto.Config(t.Context())
	require.NoError(t, err)
	cfg.BaseEndpoint = aws.String(proxy.URL())
	var s3GaveUp gaveUp
	viaProxyS3 := s3.NewFromConfig(cfg, awsenv.EmulatorS3Options, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, s3GaveUp.count) })
	e.start(e.cfg, sqs.NewFromConfig(cfg), viaProxyS3, nil)
	jobID := e.send(`{"filename": "long.npy"}`)
	testenv.Eventually(e.t, "a checkpointed chunk", 60*time.Second, func() bool { return e.checkpointDone(jobID) >= 1 })
	before := s3GaveUp.n.Load()
	proxy.Cut()
	// An outage longer than the SDK's own retries: the job's S3 calls fail
	// past them, and the worker's own handling of an outage takes over.
	testenv.Eventually(t, "an S3 call to fail after the SDK's retries", 60*time.Second, func() bool { return s3GaveUp.n.Load() > before })
	_, done := e.manifest(jobID)
	require.False(t, done, "the job finished before the outage")
	proxy.Restore()
	testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	e.requireResults(jobID, e.reference(input))
	testenv.Eventually(e.t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.True(t, e.drained(e.dlq))
}

// gaveUp counts the calls on which a client's SDK gave up for want of an
// answer: failed after its own retries (its Initialize step is outside
// them) with no response from the service and not called off.
type gaveUp struct{ n atomic.Int64 }

func (g *gaveUp) count(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("gaveUp", func(ctx context.Context, in middleware.InitializeInput,
		next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleInitialize(ctx, in)
		var unsent *smithyhttp.RequestSendError
		if errors.As(err, &unsent) && !errors.Is(err, context.Canceled) { // not a read-ahead the worker called off
			g.n.Add(1)
		}
		return out, md, err
	}), middleware.Before)
}

func TestLoad200JobsThroughTwoWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	e.input("small.npy", 64)
	var bodies []string
	for i := range 200 {
		body := fmt.Sprintf(`{"filename": "small.npy", "job_id": "load-%d"}`, i)
		if i%20 == 0 {
			body = fmt.Sprintf(`{"filename": "missing-%d.npy"}`, i)
		}
		bodies = append(bodies, body)
	}
	for i := 0; i < len(bodies); i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j, b := range bodies[i : i+10] {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(b)})
		}
		_, err := e.sqs.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(e.queue), Entries: entries})
		require.NoError(t, err)
	}
	e.start(e.cfg, nil, nil, nil)
	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(e.t, "200 jobs", 300*time.Second, func() bool { return e.drained(e.queue) })

	results, records := 0, 0
	for _, body := range bodies {
		req, err := job.Parse([]byte(body))
		require.NoError(t, err)
		if _, ok := e.manifest(req.JobID); ok {
			results++
		}
		if _, ok := e.get("errors/" + req.JobID + ".json"); ok {
			records++
		}
	}
	require.Equal(t, 190, results)
	require.Equal(t, 10, records)
	states := map[job.EventState]int{}
	ids := map[string]bool{}
	for _, ev := range e.events() {
		states[ev.State]++
		ids[ev.JobID] = true
	}
	require.Equal(t, map[job.EventState]int{job.EventFinished: 190, job.EventFailed: 10}, states)
	require.Len(t, ids, 200, "one event per job")
	visible, inFlight := e.counts(e.dlq)
	require.Equal(t, 10, visible+inFlight)
	v, f := e.counts(e.queue)
	require.Zero(t, v+f, "nothing left, nothing in flight")
}

// takenBack lets the first heartbeat through and then answers like SQS does
// for a message whose visibility ran out and was received elsewhere.
type takenBack struct {
	worker.Queue
	beats atomic.Int64
}

func (q *takenBack) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	if in.VisibilityTimeout > 0 && q.beats.Add(1) > 1 {
		return nil, &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
			Err:      fmt.Errorf("ReceiptHandleIsInvalid: the receipt handle has expired"),
		}
	}
	return q.Queue.ChangeMessageVisibility(ctx, in, opts...)
}

func TestAJobWhoseMessageWasTakenBackStopsWithoutCommitting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Second)
	input := slowJob(e)
	q := &takenBack{Queue: e.sqs}
	stop := e.start(e.cfg, q, nil, nil)
	jobID := e.send(`{"filename": "long.npy"}`)
	testenv.Eventually(e.t, "the second heartbeat", 30*time.Second, func() bool { return q.beats.Load() >= 2 })
	stop() // returns once the abandoned job has stopped
	_, done := e.manifest(jobID)
	require.False(t, done, "an abandoned job must not commit results")
	// Nobody deleted or released the message: it comes back after its visibility timeout.
	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(e.t, "the manifest from the next worker", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	e.requireResults(jobID, e.reference(input))
	testenv.Eventually(e.t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	events := e.events()
	require.Len(t, events, 1, "announced by the worker that finished it, not the one that abandoned it")
	require.Equal(t, job.EventFinished, events[0].State)
}

// After SIGTERM, what a job's ending writes (here: its status, with S3 gone)
// gets only what is left of ECS's stop timeout, not the 2 minutes of
// retries a running worker allows an outage: the worker exits before the
// SIGKILL, having handed its message back.
func TestShutdownCleanupEndsWithinTheStopTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	slowJob(e)
	proxy, err := testenv.NewProxy(moto.URL)
	require.NoError(t, err)
	defer proxy.Close()
	stopTimeout := time.Second
	first, logs := e.process("AWS_ENDPOINT_URL_S3="+proxy.URL(), runenv.EnvStopTimeout+"="+stopTimeout.String())
	jobID := e.send(`{"filename": "long.npy"}`)
	testenv.Eventually(e.t, "a checkpointed chunk", 60*time.Second, func() bool { return e.checkpointDone(jobID) >= 1 })
	proxy.Cut()
	signalled := time.Now()
	require.NoError(t, first.Process.Signal(syscall.SIGTERM))
	require.NoError(t, first.Wait(), "%s", logs) // and for the copy of its output into logs
	took := time.Since(signalled)
	require.Equal(t, 0, first.ProcessState.ExitCode(), "%s", logs)
	// ECS would SIGKILL at stopTimeout + StopMargin; a poll may take 1 s more to return.
	require.Less(t, took, stopTimeout+runenv.StopMargin+time.Second, "cleanup outlived the stop timeout:\n%s", logs)
	require.Contains(t, logs.String(), "cannot write status", "the status write was cut short, not retried for minutes")
	testenv.Eventually(e.t, "the message to be visible again", 3*time.Second, func() bool { v, _ := e.counts(e.queue); return v == 1 })
}
