package settings

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/inferstack/inferstack/internal/configerr"
	"github.com/inferstack/inferstack/internal/job"
	nearestname "github.com/inferstack/inferstack/internal/nearest"
)

// Namespace is the config namespace: keys are inferstack:<key>.
const Namespace = "inferstack"

// Key is one config key: Pulumi.yaml declares the same keys, types,
// defaults and descriptions (generated from Keys), and bind names the field
// of Config the key sets. Adding a setting is a line here, a field in the
// group of Config that its one user takes (Core, Dispatch, Workers or
// TierConfig), and its use.
type Key struct {
	Name, Type, Default, Description string
	bind                             func(*Config) any // a pointer to the field
}

// Keys is every config key with its default.
var Keys = []Key{
	{"tier", "string", "cpu", "active tier the dispatch function routes to: cpu, gpu or auto (by input size)", func(c *Config) any { return &c.Tier }},
	{"gpuEnabled", "boolean", "true", "create the gpu tier; when false its work goes to the cpu tier", func(c *Config) any { return &c.GPUEnabled }},
	{"allowTierOverride", "boolean", "false", "let a message choose its tier with a \"tier\" field", func(c *Config) any { return &c.AllowTierOverride }},
	{"autoGpuMinBytes", "integer", "1073741824", "with tier auto, inputs of at least this many bytes go to the gpu tier", func(c *Config) any { return &c.AutoGPUMinBytes }},
	{"tierCacheTtl", "string", "30s", "how long the dispatch function trusts a read of the tier parameter", func(c *Config) any { return &c.TierCacheTTL }},
	{"modelPath", "string", "out/demo/detector.onnx", "local ONNX model uploaded to models/ (make demo writes the default)", func(c *Config) any { return &c.ModelPath }},
	{"dispatchZip", "string", "dist/dispatch/bootstrap.zip", "the dispatch function's zip (make build writes it)", func(c *Config) any { return &c.DispatchZip }},
	{"vpcId", "string", "", "an existing VPC to use instead of creating one (then set subnetIds)", func(c *Config) any { return &c.VpcID }},
	{"subnetIds", "array", "[]", "private subnets of vpcId, with a route to the internet or VPC endpoints", func(c *Config) any { return &c.SubnetIDs }},
	{"availabilityZones", "integer", "2", "availability zones of a new VPC", func(c *Config) any { return &c.AvailabilityZones }},
	{"natGatewayPerAz", "boolean", "false", "one NAT gateway per availability zone (resilient) instead of one in all (cheap)", func(c *Config) any { return &c.NatGatewayPerAZ }},
	{"logRetentionDays", "integer", "14", "CloudWatch Logs retention", func(c *Config) any { return &c.LogRetentionDays }},
	{"forceDestroy", "boolean", "false", "let pulumi destroy delete the bucket and image repository with their contents", func(c *Config) any { return &c.ForceDestroy }},
	{"inputsExpireDays", "integer", "7", "days before inputs and checkpoints expire", func(c *Config) any { return &c.InputsExpireDays }},
	{"resultsExpireDays", "integer", "30", "days before results, status and error records expire", func(c *Config) any { return &c.ResultsExpireDays }},
	{"alarmEmail", "string", "", "email address subscribed to the alarm topic (optional)", func(c *Config) any { return &c.AlarmEmail }},
	{"uploadTriggers", "boolean", "true", "an upload under inputs/ starts a job by itself (an S3 event notification to the intake queue)", func(c *Config) any { return &c.UploadTriggers }},
	{"keep", "string", "", "table columns an upload-started table job copies beside its predictions, e.g. id,ts (optional; a message names its own)", func(c *Config) any { return &c.Keep }},
	{"eventsSubscription", "string", "", "email address or SQS queue ARN subscribed to the job events topic (optional)", func(c *Config) any { return &c.EventsSubscription }},
	{"visibilityTimeout", "integer", "300", "tier queue visibility timeout in seconds; the worker's heartbeat extends it (max 43200)", func(c *Config) any { return &c.VisibilityTimeout }},
	{"maxReceives", "integer", "5", "deliveries of a job before it is dead-lettered", func(c *Config) any { return &c.MaxReceives }},
	{"queueRetentionDays", "integer", "7", "days a tier queue keeps a job waiting for capacity (1 to 13: its dead-letter queue keeps 14)", func(c *Config) any { return &c.QueueRetentionDays }},
	{"shardBytes", "integer", "1073741824", "split a job whose input is larger into shards of about this many bytes, run by as many tasks as the tier scales to (0: never split by size)", func(c *Config) any { return &c.ShardBytes }},
	{"stopTimeout", "integer", "110", "seconds ECS waits after SIGTERM before SIGKILL (10 to 120); the worker stops 5 s earlier", func(c *Config) any { return &c.StopTimeout }},
	{"buildImages", "boolean", "true", "build images/<tier>.Dockerfile and push it to the stack's repository on pulumi up (needs Docker where pulumi runs); false: set cpuImage and gpuImage", func(c *Config) any { return &c.BuildImages }},
	{"cpuInstanceTypes", "array", `["c7i.large","c6i.large","m7i.large"]`, "cpu tier instance types (x86_64), first preferred", func(c *Config) any { return &c.CPU.InstanceTypes }},
	{"cpuSpot", "boolean", "false", "run the cpu tier on spot above cpuOnDemandBase", func(c *Config) any { return &c.CPU.Spot }},
	{"cpuOnDemandBase", "integer", "0", "cpu tier on-demand instances before spot", func(c *Config) any { return &c.CPU.OnDemandBase }},
	{"cpuMaxTasks", "integer", "4", "cpu tier tasks at full backlog", func(c *Config) any { return &c.CPU.MaxTasks }},
	{"cpuBacklogPerTask", "integer", "2", "cpu tier jobs per task the scaling aims for", func(c *Config) any { return &c.CPU.BacklogPerTask }},
	{"cpuIdleMinutes", "integer", "10", "minutes without jobs before the cpu tier returns to zero", func(c *Config) any { return &c.CPU.IdleMinutes }},
	{"cpuTasksPerInstance", "integer", "2", "cpu tier tasks that fit one instance", func(c *Config) any { return &c.CPU.TasksPerInstance }},
	{"cpuWarmupSeconds", "integer", "180", "cpu tier instance warm-up for managed scaling", func(c *Config) any { return &c.CPU.WarmupSeconds }},
	{"cpuTaskCpu", "integer", "1024", "cpu tier task CPU units (1024 = 1 vCPU)", func(c *Config) any { return &c.CPU.TaskCPU }},
	{"cpuTaskMemory", "integer", "1536", "cpu tier task memory in MiB", func(c *Config) any { return &c.CPU.TaskMemory }},
	{"cpuImage", "string", "", "with buildImages false: the cpu worker image in ECR by digest (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME@sha256:...)", func(c *Config) any { return &c.CPU.Image }},
	{"gpuInstanceTypes", "array", `["g4dn.xlarge","g5.xlarge","g6.xlarge"]`, "gpu tier instance types, first preferred", func(c *Config) any { return &c.GPU.InstanceTypes }},
	{"gpuSpot", "boolean", "false", "run the gpu tier on spot above gpuOnDemandBase", func(c *Config) any { return &c.GPU.Spot }},
	{"gpuOnDemandBase", "integer", "0", "gpu tier on-demand instances before spot", func(c *Config) any { return &c.GPU.OnDemandBase }},
	{"gpuMaxTasks", "integer", "2", "gpu tier tasks at full backlog", func(c *Config) any { return &c.GPU.MaxTasks }},
	{"gpuBacklogPerTask", "integer", "4", "gpu tier jobs per task the scaling aims for", func(c *Config) any { return &c.GPU.BacklogPerTask }},
	{"gpuIdleMinutes", "integer", "10", "minutes without jobs before the gpu tier returns to zero", func(c *Config) any { return &c.GPU.IdleMinutes }},
	{"gpuTasksPerInstance", "integer", "1", "gpu tier tasks per instance (one GPU each)", func(c *Config) any { return &c.GPU.TasksPerInstance }},
	{"gpuWarmupSeconds", "integer", "300", "gpu tier instance warm-up for managed scaling", func(c *Config) any { return &c.GPU.WarmupSeconds }},
	{"gpuTaskCpu", "integer", "2048", "gpu tier task CPU units", func(c *Config) any { return &c.GPU.TaskCPU }},
	{"gpuTaskMemory", "integer", "12288", "gpu tier task memory in MiB", func(c *Config) any { return &c.GPU.TaskMemory }},
	{"gpuImage", "string", "", "with buildImages false: the gpu worker image in ECR by digest", func(c *Config) any { return &c.GPU.Image }},
}

// Parse builds and validates the Config of stack env from values, the keys
// the stack sets (without the namespace; arrays as JSON, as `pulumi config
// set --path` stores them); a key it leaves out takes its default. A key no
// setting declares is refused, naming the nearest declared key, as `pulumi
// up` refuses an undeclared project key.
func Parse(env string, values map[string]string) (Config, error) {
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if _, ok := declared(k); !ok {
			return Config{}, keyError(k, fmt.Errorf("no such setting; did you mean %s:%s?", Namespace, nearest(k)))
		}
	}
	c := Config{Environment: env}
	for _, k := range Keys {
		raw, ok := values[k.Name]
		if !ok {
			raw = k.Default
		}
		if err := k.set(&c, raw); err != nil {
			return Config{}, keyError(k.Name, err)
		}
	}
	return c, c.Validate()
}

// set parses raw into the key's field.
func (k Key) set(c *Config, raw string) error {
	trimmed := strings.TrimSpace(raw)
	switch f := k.bind(c).(type) {
	case *string:
		*f = raw
	case *job.Tier:
		*f = job.Tier(raw)
	case *bool:
		v, err := strconv.ParseBool(trimmed)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		*f = v
	case *int:
		v, err := strconv.Atoi(trimmed)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		*f = v
	case *int64:
		v, err := strconv.ParseInt(trimmed, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		*f = v
	case *time.Duration:
		v, err := time.ParseDuration(trimmed)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 30s", raw)
		}
		*f = v
	case *[]string:
		if k.Type != "array" { // a comma-separated list of column names, "" for none
			*f = nil
			if trimmed == "" {
				return nil
			}
			v, err := job.ParseColumns(raw)
			*f = v
			return err
		}
		if err := json.Unmarshal([]byte(raw), f); err != nil {
			return errors.New("want a list of strings")
		}
	case encoding.TextUnmarshaler:
		return f.UnmarshalText([]byte(raw))
	default:
		panic(fmt.Sprintf("settings: key %s binds a field of type %T", k.Name, f))
	}
	return nil
}

// declared is the key named name.
func declared(name string) (Key, bool) {
	i := slices.IndexFunc(Keys, func(k Key) bool { return k.Name == name })
	if i < 0 {
		return Key{}, false
	}
	return Keys[i], true
}

// nearest is the declared key closest to name.
func nearest(name string) string {
	names := make([]string, len(Keys))
	for i, k := range Keys {
		names[i] = k.Name
	}
	return nearestname.Names(name, names, 1)[0]
}

// keyError names config key (inferstack:key) as the setting that is wrong.
func keyError(key string, err error) error {
	return &configerr.Error{Key: Namespace + ":" + key, Err: err}
}
