// Package e2e runs the pieces together on one machine: moto for AWS, the
// dispatch handler fed by an event-source poller, a worker per tier, and the
// real inferstack CLI as a user would run it.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/functions/dispatch"
	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/eventsource"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/scaling"
	"github.com/inferstack/inferstack/internal/testenv"
	"github.com/inferstack/inferstack/worker"
)

// stackSeq keeps resource names unique when tests run more than once (-count).
var stackSeq atomic.Int64

var (
	moto      *emulator.Moto
	binary    string
	bootstrap string
)

func TestMain(m *testing.M) { testenv.Main(m, setUp) }

func setUp(m *testing.M) (int, error) {
	if _, err := inference.InitRuntime(""); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "e2e")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if binary, err = testenv.Build(dir, "inferstack", "../cmd/inferstack"); err != nil {
		return 0, err
	}
	if bootstrap, err = testenv.Build(dir, "bootstrap", "../functions/dispatch/bootstrap", "lambda.norpc"); err != nil {
		return 0, err
	}
	if _, err := emulator.RIEPath(); err != nil {
		return 0, err
	}
	// IAM enforced: each component runs as a user with its role's document.
	if moto, err = emulator.StartMoto(context.Background(), emulator.WithIAM()); err != nil {
		return 0, err
	}
	defer moto.Stop()
	return m.Run(), nil
}

// stack is a small stack on moto: bucket, intake and tier queues with their
// DLQs, the tier parameter, the dispatch handler and one worker per tier,
// and an IAM user per component with the document the Pulumi program gives
// its role.
type stack struct {
	t                         *testing.T
	s3                        *s3.Client  // the harness's (admin): sets up and looks
	sqs                       *sqs.Client // the harness's (admin)
	ssm                       *ssm.Client // the harness's (admin)
	bucket, intake, tierParam string
	queues, arns              map[string]string // queue URLs and ARNs by short name ("intake", "cpu-dlq")
	eventsTopic               string            // the job events topic's ARN

	dispatch emulator.Principal            // the dispatch function's role (and its event source mapping's)
	workers  map[string]emulator.Principal // each tier's worker task role
	client   emulator.Principal            // a user of the stack (policy.Client): the CLIs
	dropped  map[string][]string           // statements left out of a role's document, by role (without)
}

// stackOption changes a stack before newStack starts its parts.
type stackOption func(*stack)

// shortNames are the stack's queues' logical names by the names these tests use.
var shortNames = map[string]string{
	"intake": job.IntakeQueue, "intake-dlq": job.IntakeDeadLetterQueue,
	"cpu": job.TierQueue(job.TierCPU), "cpu-dlq": job.TierDeadLetterQueue(job.TierCPU),
	"gpu": job.TierQueue(job.TierGPU), "gpu-dlq": job.TierDeadLetterQueue(job.TierGPU),
}

func newStack(t *testing.T, workers bool, opts ...stackOption) *stack {
	ctx := t.Context()
	cfg, err := moto.Config(ctx)
	require.NoError(t, err)
	s := &stack{t: t, sqs: sqs.NewFromConfig(cfg), ssm: ssm.NewFromConfig(cfg), queues: map[string]string{}, arns: map[string]string{}, dropped: map[string][]string{},
		s3: s3.NewFromConfig(cfg, awsenv.EmulatorS3Options), bucket: fmt.Sprintf("e2e-%.40s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), stackSeq.Add(1))}
	for _, o := range opts {
		o(s)
	}
	made, err := localstack.Create(ctx, s.s3, s.sqs, sns.NewFromConfig(cfg),
		localstack.Spec{Bucket: s.bucket, Prefix: s.bucket + "-", Topic: s.bucket + "-events", Queues: testenv.StackSettings().Queues()},
		// The intake's visibility timeout as the tiers' (the stack's is 6 dispatch timeouts): a refused batch comes back in 30 s.
		localstack.WithQueue(job.IntakeQueue, func(q *settings.Queue) { q.VisibilitySeconds = 30 }))
	require.NoError(t, err)
	for short, name := range shortNames {
		s.queues[short], s.arns[short] = made.Queues[name], made.ARNs[name]
	}
	s.intake, s.eventsTopic = s.queues["intake"], made.EventsTopic
	s.tierParam = "/inferstack/" + s.bucket + "/tier"
	_, err = s.ssm.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(s.tierParam), Value: aws.String("cpu"), Type: ssmtypes.ParameterTypeString})
	require.NoError(t, err)
	model, err := onnxmodel.NewMLP(24, 32, 5, 1).Model()
	require.NoError(t, err)
	_, err = s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("models/mlp.onnx"), Body: bytes.NewReader(model)})
	require.NoError(t, err)
	s.principals()

	// The dispatch handler, fed as the event source mapping would feed it,
	// both with the function's role, as on AWS.
	dS3, dSQS, dSSM := s.clients(s.dispatch)
	dCfg, err := s.dispatch.Config(ctx)
	require.NoError(t, err)
	d := dispatch.New(runenv.Dispatch{
		Bucket: s.bucket, InputPrefix: "inputs/", TierParameter: s.tierParam, TierCacheTTL: 0, // read at every batch: the TTL has its own tests
		CPUQueueURL: s.queues["cpu"], GPUQueueURL: s.queues["gpu"], DeadLetterURL: s.queues["intake-dlq"], AutoGPUMin: 1 << 30,
		EventsTopicARN: s.eventsTopic,
	}, dSQS, dSSM, dS3, sns.NewFromConfig(dCfg), nil, nil)
	poller := &eventsource.Poller{Queue: dSQS, QueueURL: s.intake, Region: emulator.Region, BatchSize: 10, WaitTime: 1,
		Invoke: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			return d.Handle(ctx, ev)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_, _ = poller.PollOnce(ctx)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	for _, tier := range []string{"cpu", "gpu"} {
		if !workers {
			break
		}
		wS3, wSQS, _ := s.clients(s.workers[tier]) // the tier's task role, as the worker processes have
		wCfg, err := s.workers[tier].Config(ctx)
		require.NoError(t, err)
		w := worker.New(worker.Config{Worker: s.deployed(tier, 10*time.Second), Name: "e2e-" + tier, StatusEvery: 200 * time.Millisecond, PollWait: time.Second},
			wSQS, wS3, sns.NewFromConfig(wCfg), nil, nil)
		wctx, wcancel := context.WithCancel(context.Background())
		wdone := make(chan struct{})
		go func() { defer close(wdone); _ = w.Run(wctx) }()
		t.Cleanup(func() { wcancel(); <-wdone })
	}
	return s
}

// principals creates the stack's IAM users from the documents the Pulumi
// program attaches to each role (internal/policy), with moto's ARNs.
func (s *stack) principals() {
	bucket, param := emulator.BucketARN(s.bucket), emulator.ParameterARN(s.tierParam)
	queue := func(name string) string { return s.arns[name] }
	principal := func(role string, doc policy.Document) emulator.Principal {
		for _, sid := range s.dropped[role] {
			doc = doc.Without(sid)
		}
		p, err := moto.Principal(s.t.Context(), s.bucket+"-"+role, doc)
		require.NoError(s.t, err)
		return p
	}
	s.workers = map[string]emulator.Principal{}
	for _, tier := range []string{"cpu", "gpu"} {
		s.workers[tier] = principal(tier+"-worker", policy.WorkerTask(s.workerArgs(tier)))
	}
	s.dispatch = principal("dispatch", policy.Dispatch(policy.DispatchArgs{
		IntakeQueueARN: queue("intake"), DeadLetterARN: queue("intake-dlq"), TierQueueARNs: []string{queue("cpu"), queue("gpu")},
		TierParameterARN: param, BucketARN: bucket, LogGroupARN: "arn:aws:logs:" + emulator.Region + ":" + emulator.Account + ":log-group:" + s.bucket,
		Events: policy.EventsArgs{TopicARN: s.eventsTopic}}))
	s.client = principal("client", policy.Client(policy.ClientArgs{IntakeQueueARN: queue("intake"), TierParameterARN: param, BucketARN: bucket}))
}

// workerArgs are the ARNs of the tier's worker role.
func (s *stack) workerArgs(tier string) policy.WorkerArgs {
	return policy.WorkerArgs{QueueARN: s.arns[tier], DeadLetterARN: s.arns[tier+"-dlq"],
		BucketARN: emulator.BucketARN(s.bucket), ClusterARN: "arn:aws:ecs:" + emulator.Region + ":" + emulator.Account + ":cluster/" + s.bucket + "-" + tier,
		Events: policy.EventsArgs{TopicARN: s.eventsTopic}}
}

// clients are in-process clients acting as p.
func (s *stack) clients(p emulator.Principal) (*s3.Client, *sqs.Client, *ssm.Client) {
	cfg, err := p.Config(s.t.Context())
	require.NoError(s.t, err)
	return s3.NewFromConfig(cfg, awsenv.EmulatorS3Options), sqs.NewFromConfig(cfg), ssm.NewFromConfig(cfg)
}

// cli runs the real inferstack against the stack, as a user with the
// client policy.
func (s *stack) cli(args ...string) (code int, stdout, stderr string) {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), s.client.Env()...)
	cmd.Env = append(cmd.Env, "INFERSTACK_BUCKET="+s.bucket, "INFERSTACK_INTAKE_QUEUE_URL="+s.intake, "INFERSTACK_TIER_PARAMETER="+s.tierParam)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		s.t.Fatalf("run inferstack: %v", err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func input(t *testing.T, n int) string {
	v := make([]float32, n*24)
	for i := range v {
		v[i] = float32(i%97) / 97
	}
	path := filepath.Join(t.TempDir(), fmt.Sprintf("signal-%d.npy", n))
	require.NoError(t, os.WriteFile(path, append(npy.EncodeHeader(npy.Float32, []int64{int64(n), 24}), npy.FromFloat32(v)...), 0o644))
	return path
}

func jobID(t *testing.T, stdout string) string {
	var name, id string
	_, err := fmt.Sscanf(stdout, "submitted %s as job %s", &name, &id)
	require.NoError(t, err, stdout)
	return id
}

func TestSubmitThroughDispatchAndWorkersThenSwitchTiers(t *testing.T) {
	s := newStack(t, true)

	code, out, errOut := s.cli("submit", input(t, 2000), "--wait")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "done: 2000 samples on cpu")
	first := jobID(t, out)

	code, out, _ = s.cli("status", first)
	require.Equal(t, 0, code)
	require.Contains(t, out, first+": done on cpu")

	dir := t.TempDir()
	code, out, errOut = s.cli("results", first, "--output", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "probs.npy")
	require.FileExists(t, filepath.Join(dir, "manifest.json"))

	code, out, _ = s.cli("tier")
	require.Equal(t, 0, code)
	require.Equal(t, "cpu\n", out)
	code, _, _ = s.cli("tier", "gpu")
	require.Equal(t, 0, code)

	// The gpu tier's worker has no CUDA here: it falls back and says so.
	code, out, errOut = s.cli("submit", input(t, 3000), "--wait")
	require.Equal(t, 0, code, errOut)
	second := jobID(t, out)
	code, out, _ = s.cli("status", second)
	require.Equal(t, 0, code)
	require.Contains(t, out, second+": done on gpu")
	code, _, _ = s.cli("results", second, "--output", dir)
	require.Equal(t, 0, code)
	m, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	require.NoError(t, err)
	require.Contains(t, string(m), `"fallback_reason"`)
	require.Contains(t, string(m), `"used": "cpu"`)

	// A bad input ends as an error record, and the CLI says why.
	bad := filepath.Join(t.TempDir(), "bad.npy")
	require.NoError(t, os.WriteFile(bad, []byte("\x93NUMPY garbage"), 0o644))
	code, _, errOut = s.cli("submit", bad, "--wait")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "job failed")
}

// deployed is what the deployment tells a worker of the tier on this stack
// (its queue's visibility and max receives as newStack creates them).
func (s *stack) deployed(tier string, stopTimeout time.Duration) runenv.Worker {
	device := map[string]string{"cpu": "cpu", "gpu": "auto"}[tier]
	return runenv.Worker{Region: emulator.Region, Tier: tier, Device: device, QueueURL: s.queues[tier], DeadLetterURL: s.queues[tier+"-dlq"],
		Bucket: s.bucket, ModelKey: "models/mlp.onnx", Visibility: 30 * time.Second, MaxReceives: 5, StopTimeout: stopTimeout,
		EventsTopicARN: s.eventsTopic, Threads: 1}
}

// workerEnv is what a worker process of the tier needs to serve this stack,
// with the keys of the tier's worker role.
func (s *stack) workerEnv(tier string) []string {
	w := s.deployed(tier, 5*time.Second)
	w.Device = "cpu"
	return append(append(s.workers[tier].Env(), runenv.List(w.Env())...), "INFERSTACK_ORT_LIB="+inference.DefaultLibPath(),
		runenv.EnvPollWait+"=1s", runenv.EnvStatusEvery+"=1s")
}

func TestScalerStartsFromZeroFollowsThePolicyAndReturnsToZero(t *testing.T) {
	s := newStack(t, false)
	policy, err := scaling.New(scaling.Config{MaxTasks: 3, BacklogPerTask: 2, IdleMinutes: 1, TasksPerInstance: 1})
	require.NoError(t, err)
	const idleAfter = 2 * time.Second
	var mu sync.Mutex
	var timeline []localstack.Sample
	var logs emulator.LockedBuffer
	scaler := &localstack.Scaler{Queues: s.sqs, Interval: 100 * time.Millisecond,
		Tiers: []localstack.Tier{{Name: "cpu", QueueURL: s.queues["cpu"], Policy: policy, IdleAfter: idleAfter,
			Start: func() (localstack.Process, error) { return localstack.StartWorker(binary, s.workerEnv("cpu"), &logs) }}},
		OnSample: func(x localstack.Sample) { mu.Lock(); timeline = append(timeline, x); mu.Unlock() }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- scaler.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	samples := func() []localstack.Sample {
		mu.Lock()
		defer mu.Unlock()
		return append([]localstack.Sample(nil), timeline...)
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		testenv.Eventually(t, what, timeout, cond, &logs)
	}
	waitFor("idle samples", 10*time.Second, func() bool { return len(samples()) >= 5 })
	for _, x := range samples() {
		require.Zero(t, x.Workers, "no work, no worker")
	}

	// 20 jobs on the cpu queue (through the intake and the dispatch handler).
	in := input(t, 500)
	data, err := os.ReadFile(in)
	require.NoError(t, err)
	_, err = s.s3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("inputs/small.npy"), Body: bytes.NewReader(data)})
	require.NoError(t, err)
	for i := 0; i < 20; i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j := range 10 {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)),
				MessageBody: aws.String(fmt.Sprintf(`{"filename": "small.npy", "job_id": "scale-%d"}`, i+j))})
		}
		_, err := s.sqs.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(s.intake), Entries: entries})
		require.NoError(t, err)
	}
	waitFor("20 results", 120*time.Second, func() bool {
		for i := range 20 {
			if _, err := s.s3.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(fmt.Sprintf("results/scale-%d/manifest.json", i))}); err != nil {
				return false
			}
		}
		return true
	})
	finished := time.Now()
	waitFor("the tier to return to zero", 30*time.Second, func() bool { x := samples(); return x[len(x)-1].Workers == 0 })

	// The timeline follows the policy.
	x := samples()
	peak, lastBusy := 0, time.Time{}
	for i, cur := range x {
		peak = max(peak, cur.Workers)
		require.LessOrEqual(t, cur.Workers, policy.MaxTasks)
		if cur.Backlog > 0 {
			lastBusy = cur.At
		}
		if i == 0 {
			continue
		}
		if prev := x[i-1]; cur.Workers > prev.Workers {
			require.Positive(t, cur.Backlog, "scaled up without a backlog at %s", cur.At)
			require.LessOrEqual(t, cur.Workers, policy.TasksFor(float64(cur.Backlog)), "more workers than the backlog asks for")
		} else if cur.Workers < prev.Workers {
			require.Zero(t, cur.Backlog, "scaled in with work left")
			require.GreaterOrEqual(t, cur.At.Sub(lastBusy), idleAfter-100*time.Millisecond, "scaled in before the idle time")
		}
	}
	require.Equal(t, policy.MaxTasks, peak, "20 jobs at 2 per task reach the maximum of 3")
	require.Zero(t, x[len(x)-1].Workers)
	t.Logf("timeline: %d samples, peak %d workers, back to zero %.1fs after the last result", len(x), peak, time.Since(finished).Seconds())
	// `make docs` keeps the recorded run as the plot in docs/local-stack.md.
	if os.Getenv("INFERSTACK_WRITE_DOCS") != "" {
		svg := localstack.TimelineSVG(x, fmt.Sprintf("cpu tier: 20 jobs, max %d workers, %d jobs per worker, idle %s", policy.MaxTasks, 2, idleAfter))
		require.NoError(t, os.WriteFile("../docs/scaling-timeline.svg", svg, 0o644))
	}
}

// TestLocalStack runs `inferstack local up`'s stack (localstack.Up) from
// Pulumi.dev.yaml: the real AWS CLI sends the classic message, the dispatch
// function under the Lambda emulator routes it, the scaler starts a worker
// process from zero. Upload triggers are off here (uploadTriggers=false), so
// every job is a message's: an upload alone starts nothing.
func TestLocalStack(t *testing.T) {
	dir := t.TempDir()
	cfg := devSettings(t, map[string]string{"tierCacheTtl": "0s", "uploadTriggers": "false"})

	stack, logs := upLocal(t, cfg)
	var mu sync.Mutex
	peak := map[string]int{}
	runLocal(t, stack, func(x localstack.Sample) { mu.Lock(); peak[x.Tier] = max(peak[x.Tier], x.Workers); mu.Unlock() })

	awsCLI := clientCLI(t, stack)
	// The classic message, exactly as a user sends it, for a raw float32 file.
	raw := filepath.Join(dir, "file_to_process.bin")
	require.NoError(t, os.WriteFile(raw, npy.FromFloat32(make([]float32, 24*1000)), 0o644))
	awsCLI("s3", "cp", raw, "s3://"+stack.Bucket+"/inputs/file_to_process.bin")
	awsCLI("sqs", "send-message", "--queue-url", stack.Intake, "--message-body", `{"filename": "file_to_process.bin"}`)
	// The exports are a client's keys (policy.Client), not an admin's: a
	// client uploads inputs but cannot read the model.
	denied := exec.Command("aws", "--endpoint-url", stack.Endpoint(), "s3api", "get-object", "--bucket", stack.Bucket, "--key", "models/mlp.onnx",
		filepath.Join(dir, "model"))
	denied.Env = append(os.Environ(), stack.Env...)
	refusal, err := denied.CombinedOutput()
	require.Error(t, err, "%s", refusal)
	require.Contains(t, string(refusal), "(AccessDenied) when calling the GetObject operation", "%s", refusal)

	cli := func(args ...string) (int, string, string) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), stack.Env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			t.Fatalf("run inferstack: %v", err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}
	waitFor := func(what string, cond func() bool) { testenv.Eventually(t, what, 90*time.Second, cond, logs) }
	waitFor("the classic job", func() bool { d, _, err := stack.Counts(t.Context()); return err == nil && d == 1 })
	mu.Lock()
	require.Equal(t, 1, peak["cpu"], "one message started one cpu worker from zero")
	require.Zero(t, peak["gpu"])
	mu.Unlock()

	// Switch to gpu: the next job runs on the gpu tier, falling back to the CPU.
	code, _, _ := cli("tier", "gpu")
	require.Equal(t, 0, code)
	code, out, errOut := cli("submit", input(t, 800), "--wait")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "samples on cpu", "the gpu tier's worker fell back to the CPU")
	mu.Lock()
	require.Equal(t, 1, peak["gpu"], "the gpu tier scaled from zero")
	mu.Unlock()
	gpuJob := jobID(t, out)
	code, out, _ = cli("status", gpuJob)
	require.Equal(t, 0, code)
	require.Contains(t, out, "done on gpu")
	results := t.TempDir()
	code, _, errOut = cli("results", gpuJob, "--output", results)
	require.Equal(t, 0, code, errOut)
	manifest, err := os.ReadFile(filepath.Join(results, "manifest.json"))
	require.NoError(t, err)
	require.Contains(t, string(manifest), `"fallback_reason"`, "the manifest says why the gpu tier ran on the CPU")

	// A bad message, a missing file and a poison file each end as an error
	// record and a dead letter; everything sent is accounted for.
	awsCLI("sqs", "send-message", "--queue-url", stack.Intake, "--message-body", `{"filename": "../escape.bin"}`)
	awsCLI("sqs", "send-message", "--queue-url", stack.Intake, "--message-body", `{"filename": "missing.bin"}`)
	poison := filepath.Join(dir, "poison.bin")
	require.NoError(t, os.WriteFile(poison, []byte("not float32 rows"), 0o644))
	awsCLI("s3", "cp", poison, "s3://"+stack.Bucket+"/inputs/poison.bin")
	awsCLI("sqs", "send-message", "--queue-url", stack.Intake, "--message-body", `{"filename": "poison.bin"}`)
	waitFor("three error records", func() bool { _, f, err := stack.Counts(t.Context()); return err == nil && f == 3 })
	waitFor("one dispatch dead letter", func() bool {
		n, err := stack.QueueBacklog(t.Context(), job.IntakeDeadLetterQueue)
		return err == nil && n == 1
	})
	d, f, err := stack.Counts(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, d, "the classic job and the gpu job")
	require.Equal(t, 3, f, "the bad message (from dispatch), the missing and the poison file (from the gpu worker)")
	// An error record is written before its message is dead-lettered and
	// deleted: the queues empty a moment after the records appear.
	for _, q := range []string{job.IntakeQueue, job.TierQueue(job.TierCPU), job.TierQueue(job.TierGPU)} {
		waitFor(q+" to drain", func() bool {
			n, err := stack.QueueBacklog(t.Context(), q)
			return err == nil && n == 0
		})
	}
	n, err := stack.QueueBacklog(t.Context(), job.TierDeadLetterQueue(job.TierGPU))
	require.NoError(t, err)
	require.Equal(t, 2, n, "missing and poison jobs dead-lettered by the gpu worker")
}

// clientCLI runs the real AWS CLI against a local stack as its client (with
// the stack's exports), naming the endpoint: version 1 ignores
// AWS_ENDPOINT_URL.
func clientCLI(t *testing.T, stack *localstack.Stack) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command("aws", append([]string{"--endpoint-url", stack.Endpoint()}, args...)...)
		cmd.Env = append(os.Environ(), stack.Env...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "aws %v: %s", args, out)
		return string(out)
	}
}

// upLocal starts the stack of `inferstack local up` with cfg, its children's
// logs in the buffer it returns; the test's end takes it down.
func upLocal(t *testing.T, cfg settings.Config) (*localstack.Stack, *emulator.LockedBuffer) {
	t.Helper()
	logs := &emulator.LockedBuffer{}
	stack, err := localstack.Up(t.Context(), localstack.Options{Config: cfg, Binary: binary, Bootstrap: bootstrap,
		ORTLib: inference.DefaultLibPath(), IdleAfter: 2 * time.Second, Logs: logs})
	require.NoError(t, err)
	t.Cleanup(stack.Down)
	return stack, logs
}

// runLocal runs the stack's dispatch and scaler until the test ends (nil
// onSample: no samples wanted); the run must end cleanly.
func runLocal(t *testing.T, stack *localstack.Stack, onSample func(localstack.Sample)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stack.Run(ctx, onSample) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
}

// devSettings are Pulumi.dev.yaml's settings with the MLP as the model (the
// dispatch zip is only needed on AWS: a placeholder satisfies validation).
func devSettings(t testing.TB, overrides map[string]string) settings.Config {
	t.Helper()
	dir := t.TempDir()
	model, err := onnxmodel.NewMLP(24, 32, 5, 1).Model()
	require.NoError(t, err)
	modelPath, zip := filepath.Join(dir, "mlp.onnx"), filepath.Join(dir, "bootstrap.zip")
	require.NoError(t, os.WriteFile(modelPath, model, 0o644))
	require.NoError(t, os.WriteFile(zip, []byte("unused locally"), 0o644))
	values, err := settings.ParseStackFile("../Pulumi.dev.yaml")
	require.NoError(t, err)
	values["modelPath"], values["dispatchZip"] = modelPath, zip
	for k, v := range overrides {
		values[k] = v
	}
	cfg, err := settings.Parse("dev", values)
	require.NoError(t, err)
	return cfg
}
