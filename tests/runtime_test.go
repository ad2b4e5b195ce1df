package tests

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/tests/fakeaws"
	"github.com/inferstack/inferstack/worker"
)

func getter(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// containerEnv is the worker container's environment in a task definition.
func containerEnv(t *testing.T, task registered) (map[string]string, float64) {
	t.Helper()
	var defs []struct {
		Environment []struct{ Name, Value string } `json:"environment"`
		StopTimeout float64                        `json:"stopTimeout"`
	}
	require.NoError(t, json.Unmarshal([]byte(str(task.Inputs, "containerDefinitions")), &defs))
	require.Len(t, defs, 1)
	env := map[string]string{}
	for _, kv := range defs[0].Environment {
		env[kv.Name] = kv.Value
	}
	return env, defs[0].StopTimeout
}

// What each deployed task definition tells its worker, read by the worker's
// own parser, is exactly its tier's and its queue's settings as the program
// created them: the queue's visibility and redrive count, the container's
// stop timeout less the worker's margin, the region, the bucket, the model.
func TestTaskDefinitionsTellTheWorkerItsQueueSettings(t *testing.T) {
	t.Parallel()
	for _, overrides := range []map[string]string{nil, {"visibilityTimeout": "900", "maxReceives": "3", "stopTimeout": "60", "cpuTaskCpu": "3072", "gpuTaskCpu": "512", "shardBytes": "134217728"}} {
		cfg := config(t, "prod", overrides)
		d := run(t, cfg)
		for _, tier := range cfg.Tiers() {
			name := "inferstack-" + tier.Name
			task := d.named(name + "-task")
			env, stopTimeout := containerEnv(t, task)
			cpuUnits, err := strconv.Atoi(str(task.Inputs, "cpu"))
			require.NoError(t, err)
			parsed, err := worker.ParseConfig(getter(env))
			require.NoError(t, err, "the worker refuses its task definition's environment")

			queue, dlq := d.named(name+"-queue"), d.named(name+"-dlq")
			var redrive struct {
				Max int `json:"maxReceiveCount"`
			}
			require.NoError(t, json.Unmarshal([]byte(str(queue.Inputs, "redrivePolicy")), &redrive))
			want := runenv.Worker{
				Region: fakeaws.Region, Tier: tier.Name, Device: map[bool]string{false: "cpu", true: "auto"}[tier.GPU],
				QueueURL: str(queue.Outputs, "url"), DeadLetterURL: str(dlq.Outputs, "url"),
				Bucket: str(d.named("inferstack-bucket").Outputs, "bucket"), ModelKey: job.ModelsPrefix + "detector.onnx",
				Visibility:     time.Duration(number(queue.Inputs, "visibilityTimeoutSeconds")) * time.Second,
				MaxReceives:    redrive.Max,
				StopTimeout:    time.Duration(stopTimeout)*time.Second - runenv.StopMargin,
				EventsTopicARN: str(d.named("inferstack-events").Outputs, "arn"),
				Threads:        max(1, cpuUnits/1024),
				ShardBytes:     cfg.ShardBytes,
			}
			require.Equal(t, want, parsed.Worker)
			require.Equal(t, want.Threads, parsed.Threads, "ONNX Runtime's threads are the task's whole vCPUs")
			require.Equal(t, time.Duration(cfg.VisibilityTimeout)*time.Second, parsed.Visibility)
			require.Equal(t, cfg.MaxReceives, parsed.MaxReceives)
			require.Equal(t, float64(cfg.StopTimeout), stopTimeout)
			// Nothing set that the contract does not know, nothing it knows left out.
			require.ElementsMatch(t, slices.Collect(maps.Keys(want.Env())), slices.Collect(maps.Keys(env)))
		}
	}
}

// The dispatch function's environment, read by the dispatcher's own parser,
// names this stack's bucket, parameter and queues, and none of the keys
// Lambda reserves (a function configuration setting one is refused).
func TestFunctionEnvironmentIsTheDispatchersConfig(t *testing.T) {
	t.Parallel()
	for _, overrides := range []map[string]string{nil, {"gpuEnabled": "false"}} {
		cfg := config(t, "prod", overrides)
		d := run(t, cfg)
		vars := obj(obj(d.ofType("aws:lambda/function:Function")[0].Inputs, "environment"), "variables")
		env := map[string]string{}
		for k, v := range vars {
			env[string(k)] = v.StringValue()
		}
		for _, k := range runenv.LambdaReserved {
			require.NotContains(t, env, k)
		}
		parsed, err := runenv.ParseDispatch(getter(env))
		require.NoError(t, err)
		url := func(name string) string { return str(d.named(name).Outputs, "url") }
		want := runenv.Dispatch{
			Bucket: str(d.named("inferstack-bucket").Outputs, "bucket"), InputPrefix: job.InputPrefix,
			TierParameter: str(d.named("inferstack-tier").Inputs, "name"), TierCacheTTL: cfg.TierCacheTTL,
			CPUQueueURL: url("inferstack-cpu-queue"), DeadLetterURL: url("inferstack-intake-dlq"),
			AutoGPUMin: cfg.AutoGPUMinBytes, AllowOverride: cfg.AllowTierOverride,
			EventsTopicARN: str(d.named("inferstack-events").Outputs, "arn"),
		}
		if cfg.GPUEnabled {
			want.GPUQueueURL = url("inferstack-gpu-queue")
		}
		require.Equal(t, want, parsed)
		require.Equal(t, cfg.TierParameterName(), parsed.TierParameter)
		require.ElementsMatch(t, slices.Collect(maps.Keys(want.Env())), slices.Collect(maps.Keys(env)))
	}
}

// ECS refuses a service whose strategy names a provider its cluster does
// not have yet: each service depends on its own cluster's association, which
// holds the provider it names.
func TestServicesDependOnTheirClustersCapacityProviders(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	for _, tier := range []string{"cpu", "gpu"} {
		name := "inferstack-" + tier
		svc, assoc, cluster := d.named(name+"-service"), d.named(name+"-capacity-providers"), d.named(name+"-cluster")
		provider := str(d.named(name+"-capacity").Outputs, "name")
		require.Equal(t, str(cluster.Outputs, "arn"), str(svc.Inputs, "cluster"))
		require.Equal(t, str(cluster.Outputs, "name"), str(assoc.Inputs, "clusterName"))
		require.Equal(t, []resource.PropertyValue{resource.NewStringProperty(provider)}, assoc.Inputs["capacityProviders"].ArrayValue())
		strategy := svc.Inputs["capacityProviderStrategies"].ArrayValue()
		require.Len(t, strategy, 1)
		require.Equal(t, provider, str(strategy[0].ObjectValue(), "capacityProvider"))
		require.True(t, slices.ContainsFunc(svc.Deps, func(dep string) bool { return strings.HasSuffix(dep, "::"+name+"-capacity-providers") }),
			"%s does not wait for its cluster's association: %v", svc.Name, svc.Deps)
	}
}
