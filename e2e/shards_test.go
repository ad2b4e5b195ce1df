package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/client"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/localstack"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/scaling"
)

// envClient is an in-process client of a local stack with the stack's
// client exports (policy.Client, as the CLI has them).
func envClient(t *testing.T, stack *localstack.Stack) *client.Client {
	env := map[string]string{}
	for _, kv := range stack.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	cfg, err := config.LoadDefaultConfig(t.Context(), config.WithRegion(env["AWS_REGION"]), config.WithBaseEndpoint(env["AWS_ENDPOINT_URL"]),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")))
	require.NoError(t, err)
	return &client.Client{Target: client.Target{Bucket: stack.Bucket, IntakeQueueURL: stack.Intake, TierParameter: stack.TierParam},
		S3: s3.NewFromConfig(cfg, awsenv.EmulatorS3Options)}
}

// TestShardsRunThroughTheLocalStack: `inferstack submit --shards 8 --wait`
// through the local stack splits the job into eight shards (enough to stay
// queued over several of the scaler's looks, however fast the first worker
// gets through them); the scaler starts workers for the shards' backlog,
// as AWS's policy would; the
// results are byte for byte what `inferstack run` writes for the same file
// with the same batch size and threads; `inferstack status` says shards
// 8/8, and a client (with the client's policy, IAM enforced) can list and
// read the shards' statuses it counts while the job runs. A Parquet table
// split four ways comes back as four ordered part files.
func TestShardsRunThroughTheLocalStack(t *testing.T) {
	// The workers (children of the scaler, which inherit this environment)
	// pin their batch size, so shards start at whole batches of 64 and the
	// reference run can use the same; threads come from cpuTaskCpu (1 vCPU).
	t.Setenv(runenv.EnvBatchSize, "64")
	cfg := devSettings(t, map[string]string{"tierCacheTtl": "0s", "uploadTriggers": "false"})
	var cpu scaling.Policy
	for _, tier := range cfg.Tiers() {
		if tier.Name == string(job.TierCPU) {
			var err error
			cpu, err = scaling.New(tier.Scaling())
			require.NoError(t, err)
		}
	}
	stack, logs := upLocal(t, cfg)
	var mu sync.Mutex
	var peakBacklog, peakWorkers int
	runLocal(t, stack, func(x localstack.Sample) {
		if x.Tier != string(job.TierCPU) {
			return
		}
		mu.Lock()
		peakBacklog, peakWorkers = max(peakBacklog, x.Backlog), max(peakWorkers, x.Workers)
		mu.Unlock()
	})
	cli := func(args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), stack.Env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		require.NoError(t, cmd.Run(), "inferstack %v: %s\n%s\n%s", args, out.String(), errb.String(), logs.String())
		return out.String(), errb.String()
	}

	const samples = 3000
	in := input(t, samples)
	out, _ := cli("submit", in, "--shards", "8", "--wait")
	require.Contains(t, out, "done: 3000 samples on cpu")
	id := jobID(t, out)

	out, _ = cli("status", id)
	require.Contains(t, out, id+": done on cpu")
	require.Contains(t, out, "shards 8/8 done, 3,000 of 3,000 samples")

	dir := t.TempDir()
	out, _ = cli("results", id, "--output", dir)
	require.Contains(t, out, filepath.Join(dir, "probs.npy"))
	var m inference.Manifest
	data, err := os.ReadFile(filepath.Join(dir, inference.ManifestFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &m))
	require.EqualValues(t, samples, m.Samples)
	require.Len(t, m.Shards, 8)
	for _, s := range m.Shards {
		require.Zero(t, s.From%64, "shard %d starts at a whole batch", s.Index)
		require.EqualValues(t, 64, s.BatchSize, "shard %d", s.Index)
		require.Equal(t, 1, s.Threads, "shard %d", s.Index)
	}

	// The same bytes as one `inferstack run` with the same batch size and threads.
	ref := filepath.Join(t.TempDir(), "ref")
	cli("run", "--model", cfg.ModelPath, "--input", in, "--output", ref, "--device", "cpu", "--batch-size", "64", "--threads", "1", "--quiet")
	var want inference.Manifest
	data, err = os.ReadFile(filepath.Join(ref, inference.ManifestFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &want))
	require.NotEmpty(t, want.Outputs)
	require.Len(t, m.Outputs, len(want.Outputs))
	for _, o := range want.Outputs {
		wantData, err := os.ReadFile(filepath.Join(ref, o.File))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dir, o.File))
		require.NoError(t, err)
		require.True(t, bytes.Equal(wantData, got), "%s differs from inferstack run", o.File)
	}

	// The tier scaled to the shards' backlog: beyond the one worker the
	// job's own message started, as the policy AWS follows says.
	mu.Lock()
	require.GreaterOrEqual(t, peakBacklog, 4, "the shards queued")
	require.GreaterOrEqual(t, peakWorkers, cpu.TasksFor(4))
	require.Greater(t, peakWorkers, 1, "more than one worker ran the shards")
	mu.Unlock()

	// A Parquet table split at its row groups (four of 256 rows): its
	// predictions come back as ordered part files, which read as one table.
	out, _ = cli("submit", parquetTable(t, 1000), "--keep", "id", "--shards", "4", "--wait")
	table := jobID(t, out)
	out, _ = cli("status", table)
	require.Contains(t, out, "shards 4/4 done, 1,000 of 1,000 samples")
	dir = t.TempDir()
	out, _ = cli("results", table, "--output", dir)
	var parts []string
	for i := range 4 {
		part := filepath.Join(dir, "predictions", fmt.Sprintf("part-%05d.parquet", i))
		require.Contains(t, out, part+"\n")
		parts = append(parts, part)
	}
	require.Contains(t, out, filepath.Join(dir, "predictions")+"/  column probs: float32 [1000 5]")
	require.NoFileExists(t, filepath.Join(dir, inference.PredictionsFile))
	requirePredictions(t, 1000, parts...)

	// What status counts while the shards run, as the client: listed under
	// status/<job>/<plan>/ and read with the client's policy.
	cl := envClient(t, stack)
	s, ok, err := cl.Status(t.Context(), id)
	require.NoError(t, err)
	require.True(t, ok)
	require.NotNil(t, s.Shards)
	s.State, s.Shards.Done = job.StateRunning, 0 // as it was before assembly
	p, err := cl.Progress(t.Context(), s)
	require.NoError(t, err)
	// (moto enforces the action; the s3:prefix scope of the listing is
	// asserted by internal/policy's unit tests, moto evaluating no StringLike.)
	require.Equal(t, client.Progress{SamplesDone: samples, SamplesTotal: samples, Shards: 8, ShardsDone: 8}, p)
}
