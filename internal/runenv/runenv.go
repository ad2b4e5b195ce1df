// Package runenv is the contract between a deployment and its runtimes: the
// environment variables of a worker task and of the dispatch function. The
// Pulumi program (task definitions, the Lambda), the local stack and the
// tests build an environment from the stack's settings with Worker.Env and
// Dispatch.Env; the worker and the dispatcher read it back with ParseWorker
// and ParseDispatch. Both sides use this one definition, so a setting cannot
// be set on one side and missed on the other. No cgo, no SDK.
package runenv

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/inferstack/inferstack/internal/configerr"
	"github.com/inferstack/inferstack/internal/job"
)

// The worker task's environment.
const (
	// EnvRegion is the SDK's own variable. The Go SDK does not take the
	// region from instance metadata unless asked to, so the task sets it.
	EnvRegion        = "AWS_REGION"
	EnvTier          = "INFERSTACK_TIER"
	EnvDevice        = "INFERSTACK_DEVICE"
	EnvQueueURL      = "INFERSTACK_QUEUE_URL"
	EnvDeadLetterURL = "INFERSTACK_DEAD_LETTER_QUEUE_URL"
	EnvBucket        = "INFERSTACK_BUCKET"
	EnvModelKey      = "INFERSTACK_MODEL_KEY"
	EnvVisibility    = "INFERSTACK_VISIBILITY_TIMEOUT"
	EnvMaxReceives   = "INFERSTACK_MAX_RECEIVES"
	EnvStopTimeout   = "INFERSTACK_STOP_TIMEOUT"
	// EnvEventsTopic is the SNS topic job events go to (the dispatcher's too).
	EnvEventsTopic = "INFERSTACK_EVENTS_TOPIC_ARN"
	// EnvThreads is ONNX Runtime's intra-op thread count: the task's CPU
	// units in whole vCPUs (TaskThreads); unset, `inferstack run` uses the
	// cores its cgroup allows.
	EnvThreads = "INFERSTACK_THREADS"
	// EnvShardBytes: a job whose input is larger is split into shards of
	// about this many bytes (0: never split by size).
	EnvShardBytes = "INFERSTACK_SHARD_BYTES"

	// Tuning the deployment leaves unset (the worker's defaults apply);
	// for local runs and benchmarks.
	EnvBatchSize    = "INFERSTACK_BATCH_SIZE"
	EnvChunkSamples = "INFERSTACK_CHUNK_SAMPLES"
	// EnvResultRowGroupBytes sizes a table result's Parquet row groups.
	EnvResultRowGroupBytes = "INFERSTACK_RESULT_ROW_GROUP_BYTES"
	EnvStatusEvery         = "INFERSTACK_STATUS_EVERY"
	EnvPollWait            = "INFERSTACK_POLL_WAIT"
	// The input's read-ahead: ranged GETs of this many bytes, this many at once.
	EnvReadPartBytes   = "INFERSTACK_READ_PART_BYTES"
	EnvReadConcurrency = "INFERSTACK_READ_CONCURRENCY"
)

// The dispatch function's environment.
const (
	EnvInputPrefix   = "INFERSTACK_INPUT_PREFIX"
	EnvTierParameter = "INFERSTACK_TIER_PARAMETER"
	EnvTierCacheTTL  = "INFERSTACK_TIER_CACHE_TTL"
	EnvCPUQueueURL   = "INFERSTACK_CPU_QUEUE_URL"
	EnvGPUQueueURL   = "INFERSTACK_GPU_QUEUE_URL"
	EnvAutoGPUMin    = "INFERSTACK_AUTO_GPU_MIN_BYTES"
	EnvAllowOverride = "INFERSTACK_ALLOW_TIER_OVERRIDE"
	// EnvKeep: columns an upload-started table job keeps, comma-separated.
	EnvKeep = "INFERSTACK_KEEP"
	// EnvBucket and EnvDeadLetterURL (the intake's DLQ) as for the worker.
)

// Limits the parsers enforce, as AWS does, and the deployment's own
// (deploy/settings takes its limits from here: each is defined once).
const (
	MaxVisibility = 12 * time.Hour // SQS: a visibility timeout of 0 to 43,200 s
	// MinVisibility is the shortest visibility a worker runs with: its
	// heartbeat ticks every third of it (tests and local stacks use 3 s).
	MinVisibility = 3 * time.Second
	// MinDeployedVisibility is the shortest a deployed stack may set: on AWS
	// a heartbeat's ChangeMessageVisibility call must land well within a
	// third of it, whatever the API's latency and retries.
	MinDeployedVisibility = 30 * time.Second
	MaxReceives           = 1000 // SQS redrive policy: maxReceiveCount 1 to 1,000
	// MaxStopTimeout is ECS's longest container stopTimeout; a worker's own
	// stop timeout (WorkerStopTimeout) is shorter by StopMargin.
	MaxStopTimeout = 120 * time.Second
)

// LambdaReserved are the variables Lambda sets itself and refuses in a
// function's configuration (Lambda developer guide, "Defined runtime
// environment variables"); the region among them.
var LambdaReserved = []string{
	"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
	"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
	"AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
	"AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ",
}

// ErrRequired marks a variable the deployment must set.
var ErrRequired = errors.New("required: the deployment sets it")

// Worker is what a tier's worker learns from its deployment: every field is
// set by the task definition (and by the local stack), from the tier's and
// its queue's settings.
type Worker struct {
	Region        string
	Tier          string // cpu or gpu
	Device        string // auto, cpu or gpu (the engine checks it)
	QueueURL      string
	DeadLetterURL string
	Bucket        string
	ModelKey      string // default model, under models/
	// Visibility is the tier queue's visibility timeout: what each receive
	// asks for and the heartbeat extends to.
	Visibility time.Duration
	// MaxReceives is the queue's redrive maxReceiveCount: the last delivery
	// of a failing job is dead-lettered by the worker, with an error record.
	MaxReceives int
	// StopTimeout is how long a job may go on after SIGTERM: ECS's stop
	// timeout less StopMargin, so the job ends before the SIGKILL.
	StopTimeout time.Duration
	// EventsTopicARN is where the worker publishes finished and failed events.
	EventsTopicARN string
	// Threads is ONNX Runtime's intra-op thread count, from the task's CPU
	// units (TaskThreads): on EC2 a task's cpu is a hard cgroup ceiling, and
	// threads above it are throttled.
	Threads int
	// ShardBytes splits a job whose input is larger into shards of about
	// this size, run by as many workers as the tier scales to (0: never).
	ShardBytes int64
}

// CPUUnitsPerVCPU is how ECS counts CPU: 1,024 units are one vCPU.
const CPUUnitsPerVCPU = 1024

// TaskThreads is the thread count for a task of cpuUnits: one per whole
// vCPU, at least one.
func TaskThreads(cpuUnits int) int { return max(1, cpuUnits/CPUUnitsPerVCPU) }

// StopMargin is what the worker leaves of ECS's stop timeout for its own
// exit after handing back or finishing a job.
const StopMargin = 5 * time.Second

// WorkerStopTimeout is the worker's stop timeout for an ECS container stop
// timeout of ecsSeconds.
func WorkerStopTimeout(ecsSeconds int) time.Duration {
	return time.Duration(ecsSeconds)*time.Second - StopMargin
}

// Env is the worker's environment.
func (w Worker) Env() map[string]string {
	return map[string]string{
		EnvRegion: w.Region, EnvTier: w.Tier, EnvDevice: w.Device,
		EnvQueueURL: w.QueueURL, EnvDeadLetterURL: w.DeadLetterURL, EnvBucket: w.Bucket, EnvModelKey: w.ModelKey,
		EnvVisibility: seconds(w.Visibility), EnvMaxReceives: strconv.Itoa(w.MaxReceives), EnvStopTimeout: seconds(w.StopTimeout),
		EnvEventsTopic: w.EventsTopicARN, EnvThreads: strconv.Itoa(w.Threads), EnvShardBytes: strconv.FormatInt(w.ShardBytes, 10),
	}
}

// ParseWorker reads and checks a worker's environment.
func ParseWorker(getenv func(string) string) (Worker, error) {
	p := parser{getenv: getenv}
	w := Worker{
		Region: p.str(EnvRegion), Tier: p.str(EnvTier), Device: p.str(EnvDevice),
		QueueURL: p.str(EnvQueueURL), DeadLetterURL: p.str(EnvDeadLetterURL), Bucket: p.str(EnvBucket), ModelKey: p.str(EnvModelKey),
		Visibility:     p.duration(EnvVisibility, MinVisibility, MaxVisibility),
		MaxReceives:    p.integer(EnvMaxReceives, 1, MaxReceives),
		StopTimeout:    p.duration(EnvStopTimeout, time.Millisecond, MaxStopTimeout), // positive: a job gets some time
		EventsTopicARN: p.str(EnvEventsTopic),
		Threads:        p.integer(EnvThreads, 1, 1024),
	}
	if v := p.str(EnvShardBytes); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			p.fail(EnvShardBytes, fmt.Errorf("%q: want a number of bytes (0: never split)", v))
		}
		w.ShardBytes = n
	}
	if t := job.Tier(w.Tier); p.err == nil && t != job.TierCPU && t != job.TierGPU {
		p.fail(EnvTier, fmt.Errorf("%q: want cpu or gpu", w.Tier))
	}
	return w, p.err
}

// Dispatch is what the dispatch function learns from its deployment. Its
// region comes from Lambda itself (AWS_REGION is reserved there).
type Dispatch struct {
	Bucket        string
	InputPrefix   string
	TierParameter string        // SSM parameter holding cpu, gpu or auto
	TierCacheTTL  time.Duration // how long a read of the parameter is trusted
	CPUQueueURL   string
	GPUQueueURL   string // empty: the gpu tier is disabled
	DeadLetterURL string // the intake queue's dead-letter queue
	AutoGPUMin    int64  // with tier auto, inputs of at least this many bytes go to the gpu tier
	AllowOverride bool   // may a message choose its tier?
	// EventsTopicARN is where the dispatcher publishes refused events.
	EventsTopicARN string
	// Keep names the columns an upload-started table job copies beside its
	// predictions (none when empty).
	Keep []string
}

// Env is the function's environment; a disabled gpu tier leaves its queue out.
func (d Dispatch) Env() map[string]string {
	env := map[string]string{
		EnvBucket: d.Bucket, EnvInputPrefix: d.InputPrefix, EnvTierParameter: d.TierParameter,
		EnvTierCacheTTL: d.TierCacheTTL.String(), EnvCPUQueueURL: d.CPUQueueURL, EnvDeadLetterURL: d.DeadLetterURL,
		EnvAutoGPUMin: strconv.FormatInt(d.AutoGPUMin, 10), EnvAllowOverride: strconv.FormatBool(d.AllowOverride),
		EnvEventsTopic: d.EventsTopicARN,
	}
	if d.GPUQueueURL != "" {
		env[EnvGPUQueueURL] = d.GPUQueueURL
	}
	if len(d.Keep) > 0 {
		env[EnvKeep] = strings.Join(d.Keep, ",")
	}
	return env
}

// ParseDispatch reads and checks the function's environment.
func ParseDispatch(getenv func(string) string) (Dispatch, error) {
	p := parser{getenv: getenv}
	d := Dispatch{
		Bucket: p.str(EnvBucket), InputPrefix: p.str(EnvInputPrefix), TierParameter: p.str(EnvTierParameter),
		TierCacheTTL: p.duration(EnvTierCacheTTL, 0, 24*time.Hour),
		CPUQueueURL:  p.str(EnvCPUQueueURL), GPUQueueURL: getenv(EnvGPUQueueURL), DeadLetterURL: p.str(EnvDeadLetterURL),
		AutoGPUMin:     int64(p.integer(EnvAutoGPUMin, 0, 1<<62)),
		AllowOverride:  p.boolean(EnvAllowOverride),
		EventsTopicARN: p.str(EnvEventsTopic),
	}
	if p.err == nil && (job.CheckRelativeKey(d.InputPrefix) != nil || !strings.HasSuffix(d.InputPrefix, "/")) {
		p.fail(EnvInputPrefix, fmt.Errorf("%q must be a relative key prefix ending in '/'", d.InputPrefix))
	}
	if keep := getenv(EnvKeep); keep != "" && p.err == nil {
		var err error
		if d.Keep, err = job.ParseColumns(keep); err != nil {
			p.fail(EnvKeep, err)
		}
	}
	return d, p.err
}

// List renders an environment as KEY=VALUE lines in key order, for exec.Cmd.Env.
func List(env map[string]string) []string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + env[k]
	}
	return out
}

// seconds renders a duration as Go parses it back exactly ("300s").
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// parser reads required variables and keeps the first error.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(key string, err error) {
	if p.err == nil {
		p.err = &configerr.Error{Key: key, Err: err}
	}
}

func (p *parser) str(key string) string {
	v := p.getenv(key)
	if v == "" {
		p.fail(key, ErrRequired)
	}
	return v
}

func (p *parser) duration(key string, lo, hi time.Duration) time.Duration {
	v := p.str(key)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		p.fail(key, fmt.Errorf("%q: want a duration from %s to %s", v, lo, hi))
	}
	return d
}

func (p *parser) integer(key string, lo, hi int) int {
	v := p.str(key)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(key, fmt.Errorf("%q: want an integer from %d to %d", v, lo, hi))
	}
	return n
}

func (p *parser) boolean(key string) bool {
	v := p.str(key)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(key, fmt.Errorf("%q: want true or false", v))
	}
	return b
}
