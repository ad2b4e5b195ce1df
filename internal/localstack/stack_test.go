package localstack

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
)

// The local stack's workers are told what the task definition tells them
// on AWS: the stack's inferstack:shardBytes among the rest, so a large job
// is split here as it would be there.
func TestWorkersAreToldTheStacksShardSize(t *testing.T) {
	t.Parallel()
	cfg := settings.Config{Workers: settings.Workers{VisibilityTimeout: 30, MaxReceives: 5, StopTimeout: 110, ShardBytes: 96 << 20},
		CPU: settings.TierConfig{TaskCPU: 2048, TaskMemory: 4096}}
	cpu := cfg.Tiers()[0]
	s := &Stack{opts: Options{Config: cfg}, Bucket: "b", EventsTopic: "arn:aws:sns:us-east-1:123456789012:events", Models: []Model{{Key: "models/m.onnx"}},
		Queues: map[string]string{job.TierQueue(job.TierCPU): "http://q/cpu", job.TierDeadLetterQueue(job.TierCPU): "http://q/cpu-dlq"}}
	w := s.workerRuntime(cpu)
	require.Equal(t, cfg.Runtime(cpu, settings.Location{Region: w.Region, Bucket: "b", ModelKey: "models/m.onnx",
		QueueURL: "http://q/cpu", DeadLetterURL: "http://q/cpu-dlq", EventsTopicARN: s.EventsTopic}), w, "what the Pulumi program gives the task definition")

	env := map[string]string{}
	for _, kv := range runenv.List(w.Env()) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	require.Equal(t, "100663296", env[runenv.EnvShardBytes])
	parsed, err := runenv.ParseWorker(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.EqualValues(t, 96<<20, parsed.ShardBytes, "as the worker reads it")
	require.Equal(t, 2, parsed.Threads)
}
