// Package settings is the stack's configuration: every `pulumi config` key
// with its default, one validated Config, and the limits AWS enforces. The
// Pulumi program (package deploy) and the local stack (internal/localstack)
// both build from it, so they cannot drift apart. It imports no Pulumi code.
package settings

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/inferstack/inferstack/internal/configerr"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/scaling"
)

// Namespace is the config namespace: keys are inferstack:<key>.
const Namespace = "inferstack"

// TierConfig is one tier's settings.
type TierConfig struct {
	InstanceTypes    []string
	Spot             bool
	OnDemandBase     int
	MaxTasks         int
	BacklogPerTask   int
	IdleMinutes      int
	TasksPerInstance int
	WarmupSeconds    int
	TaskCPU          int
	TaskMemory       int
	// Image is the worker image by digest, for a stack that does not build
	// its images (BuildImages false).
	Image string
}

// Config is the whole stack's settings, read once from `pulumi config`.
type Config struct {
	Environment       string
	Tier              job.Tier
	GPUEnabled        bool
	AllowTierOverride bool
	AutoGPUMinBytes   int64
	TierCacheTTL      time.Duration
	ModelPath         string
	DispatchZip       string
	VpcID             string
	SubnetIDs         []string
	AvailabilityZones int
	NatGatewayPerAZ   bool
	LogRetentionDays  int
	ForceDestroy      bool
	InputsExpireDays  int
	ResultsExpireDays int
	AlarmEmail        string
	// UploadTriggers makes an upload under inputs/ start a job by itself.
	UploadTriggers bool
	// Keep names the columns an upload-started table job copies beside its
	// predictions (a message says its own).
	Keep []string
	// EventsSubscription is an email address or an SQS queue ARN subscribed
	// to the job events topic ("" for none).
	EventsSubscription string
	VisibilityTimeout  int
	MaxReceives        int
	// QueueRetentionDays is how long a tier queue keeps a waiting job;
	// shorter than its dead-letter queue keeps one (DeadLetterRetention).
	QueueRetentionDays int
	StopTimeout        int
	BuildImages        bool
	CPU, GPU           TierConfig
}

// keyError names config key (inferstack:key) as the setting that is wrong.
func keyError(key string, err error) error {
	return &configerr.Error{Key: Namespace + ":" + key, Err: err}
}

// Key describes one config key: Pulumi.yaml declares the same keys, types,
// defaults and descriptions, and a test holds the two together.
type Key struct {
	Name, Type, Default, Description string
}

// Keys is every config key with its default.
var Keys = []Key{
	{"tier", "string", "cpu", "active tier the dispatch function routes to: cpu, gpu or auto (by input size)"},
	{"gpuEnabled", "boolean", "true", "create the gpu tier; when false its work goes to the cpu tier"},
	{"allowTierOverride", "boolean", "false", "let a message choose its tier with a \"tier\" field"},
	{"autoGpuMinBytes", "integer", "1073741824", "with tier auto, inputs of at least this many bytes go to the gpu tier"},
	{"tierCacheTtl", "string", "30s", "how long the dispatch function trusts a read of the tier parameter"},
	{"modelPath", "string", "out/demo/detector.onnx", "local ONNX model uploaded to models/ (make demo writes the default)"},
	{"dispatchZip", "string", "dist/dispatch/bootstrap.zip", "the dispatch function's zip (make build writes it)"},
	{"vpcId", "string", "", "an existing VPC to use instead of creating one (then set subnetIds)"},
	{"subnetIds", "array", "[]", "private subnets of vpcId, with a route to the internet or VPC endpoints"},
	{"availabilityZones", "integer", "2", "availability zones of a new VPC"},
	{"natGatewayPerAz", "boolean", "false", "one NAT gateway per availability zone (resilient) instead of one in all (cheap)"},
	{"logRetentionDays", "integer", "14", "CloudWatch Logs retention"},
	{"forceDestroy", "boolean", "false", "let pulumi destroy delete the bucket and image repository with their contents"},
	{"inputsExpireDays", "integer", "7", "days before inputs and checkpoints expire"},
	{"resultsExpireDays", "integer", "30", "days before results, status and error records expire"},
	{"alarmEmail", "string", "", "email address subscribed to the alarm topic (optional)"},
	{"uploadTriggers", "boolean", "true", "an upload under inputs/ starts a job by itself (an S3 event notification to the intake queue)"},
	{"keep", "string", "", "table columns an upload-started table job copies beside its predictions, e.g. id,ts (optional; a message names its own)"},
	{"eventsSubscription", "string", "", "email address or SQS queue ARN subscribed to the job events topic (optional)"},
	{"visibilityTimeout", "integer", "300", "tier queue visibility timeout in seconds; the worker's heartbeat extends it (max 43200)"},
	{"maxReceives", "integer", "5", "deliveries of a job before it is dead-lettered"},
	{"queueRetentionDays", "integer", "7", "days a tier queue keeps a job waiting for capacity (1 to 13: its dead-letter queue keeps 14)"},
	{"stopTimeout", "integer", "110", "seconds ECS waits after SIGTERM before SIGKILL (10 to 120); the worker stops 5 s earlier"},
	{"buildImages", "boolean", "true", "build images/<tier>.Dockerfile and push it to the stack's repository on pulumi up (needs Docker where pulumi runs); false: set cpuImage and gpuImage"},
	{"cpuInstanceTypes", "array", `["c7i.large","c6i.large","m7i.large"]`, "cpu tier instance types (x86_64), first preferred"},
	{"cpuSpot", "boolean", "false", "run the cpu tier on spot above cpuOnDemandBase"},
	{"cpuOnDemandBase", "integer", "0", "cpu tier on-demand instances before spot"},
	{"cpuMaxTasks", "integer", "4", "cpu tier tasks at full backlog"},
	{"cpuBacklogPerTask", "integer", "2", "cpu tier jobs per task the scaling aims for"},
	{"cpuIdleMinutes", "integer", "10", "minutes without jobs before the cpu tier returns to zero"},
	{"cpuTasksPerInstance", "integer", "2", "cpu tier tasks that fit one instance"},
	{"cpuWarmupSeconds", "integer", "180", "cpu tier instance warm-up for managed scaling"},
	{"cpuTaskCpu", "integer", "1024", "cpu tier task CPU units (1024 = 1 vCPU)"},
	{"cpuTaskMemory", "integer", "1536", "cpu tier task memory in MiB"},
	{"cpuImage", "string", "", "with buildImages false: the cpu worker image in ECR by digest (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME@sha256:...)"},
	{"gpuInstanceTypes", "array", `["g4dn.xlarge","g5.xlarge","g6.xlarge"]`, "gpu tier instance types, first preferred"},
	{"gpuSpot", "boolean", "false", "run the gpu tier on spot above gpuOnDemandBase"},
	{"gpuOnDemandBase", "integer", "0", "gpu tier on-demand instances before spot"},
	{"gpuMaxTasks", "integer", "2", "gpu tier tasks at full backlog"},
	{"gpuBacklogPerTask", "integer", "4", "gpu tier jobs per task the scaling aims for"},
	{"gpuIdleMinutes", "integer", "10", "minutes without jobs before the gpu tier returns to zero"},
	{"gpuTasksPerInstance", "integer", "1", "gpu tier tasks per instance (one GPU each)"},
	{"gpuWarmupSeconds", "integer", "300", "gpu tier instance warm-up for managed scaling"},
	{"gpuTaskCpu", "integer", "2048", "gpu tier task CPU units"},
	{"gpuTaskMemory", "integer", "12288", "gpu tier task memory in MiB"},
	{"gpuImage", "string", "", "with buildImages false: the gpu worker image in ECR by digest"},
}

// FromGetter builds and validates the Config of stack env from get, which
// returns a key's configured value (or false: the default applies). Arrays
// come as JSON, as `pulumi config set --path` stores them.
func FromGetter(env string, get func(key string) (string, bool)) (Config, error) {
	r := reader{get: get}
	c := Config{
		Environment:        env,
		Tier:               job.Tier(r.str("tier")),
		GPUEnabled:         r.boolean("gpuEnabled"),
		AllowTierOverride:  r.boolean("allowTierOverride"),
		AutoGPUMinBytes:    int64(r.integer("autoGpuMinBytes")),
		TierCacheTTL:       r.duration("tierCacheTtl"),
		ModelPath:          r.str("modelPath"),
		DispatchZip:        r.str("dispatchZip"),
		VpcID:              r.str("vpcId"),
		SubnetIDs:          r.array("subnetIds"),
		AvailabilityZones:  r.integer("availabilityZones"),
		NatGatewayPerAZ:    r.boolean("natGatewayPerAz"),
		LogRetentionDays:   r.integer("logRetentionDays"),
		ForceDestroy:       r.boolean("forceDestroy"),
		InputsExpireDays:   r.integer("inputsExpireDays"),
		ResultsExpireDays:  r.integer("resultsExpireDays"),
		AlarmEmail:         r.str("alarmEmail"),
		UploadTriggers:     r.boolean("uploadTriggers"),
		Keep:               r.columns("keep"),
		EventsSubscription: r.str("eventsSubscription"),
		VisibilityTimeout:  r.integer("visibilityTimeout"),
		MaxReceives:        r.integer("maxReceives"),
		QueueRetentionDays: r.integer("queueRetentionDays"),
		StopTimeout:        r.integer("stopTimeout"),
		BuildImages:        r.boolean("buildImages"),
		CPU:                r.tier(string(job.TierCPU)),
		GPU:                r.tier(string(job.TierGPU)),
	}
	if r.err != nil {
		return Config{}, r.err
	}
	return c, c.Validate()
}

// Validate checks the values against each other and against AWS's limits.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return keyError(key, fmt.Errorf(format, args...))
	}
	if _, err := job.ParseTier(string(c.Tier)); err != nil {
		return keyError("tier", err)
	}
	if c.Tier == job.TierGPU && !c.GPUEnabled {
		return bad("tier", "is gpu but gpuEnabled is false")
	}
	if c.TierCacheTTL < 0 {
		return bad("tierCacheTtl", "%s must not be negative", c.TierCacheTTL)
	}
	for key, path := range map[string]string{"modelPath": c.ModelPath, "dispatchZip": c.DispatchZip} {
		if _, err := os.Stat(path); err != nil {
			fix := "run `make demo` or point it at your model"
			if key == "dispatchZip" {
				fix = "run `make build`"
			}
			return bad(key, "%s is missing: %s", path, fix)
		}
	}
	if (c.VpcID == "") != (len(c.SubnetIDs) == 0) {
		return bad("subnetIds", "vpcId and subnetIds go together")
	}
	if c.VpcID == "" && (c.AvailabilityZones < 1 || c.AvailabilityZones > 6) {
		return bad("availabilityZones", "%d: want 1 to 6", c.AvailabilityZones)
	}
	if !validRetention[c.LogRetentionDays] {
		return bad("logRetentionDays", "%d is not a retention CloudWatch Logs offers (1, 3, 5, 7, 14, 30, 60, 90, ...)", c.LogRetentionDays)
	}
	if c.InputsExpireDays < 1 || c.ResultsExpireDays < 1 {
		return bad("inputsExpireDays", "expirations must be at least a day")
	}
	if c.AlarmEmail != "" && !strings.Contains(c.AlarmEmail, "@") {
		return bad("alarmEmail", "%q is not an email address", c.AlarmEmail)
	}
	if _, err := EventsProtocol(c.EventsSubscription); c.EventsSubscription != "" && err != nil {
		return keyError("eventsSubscription", err)
	}
	// The tier queues' and workers' settings, under their own keys (CheckTier
	// below checks them again for the components' own callers).
	if c.VisibilityTimeout < MinVisibilitySeconds || c.VisibilityTimeout > MaxVisibilitySeconds {
		return bad("visibilityTimeout", "%d s: want %d to %d (SQS allows at most 12 h; under %d s the heartbeat cannot keep up)",
			c.VisibilityTimeout, MinVisibilitySeconds, MaxVisibilitySeconds, MinVisibilitySeconds)
	}
	if c.MaxReceives < 1 || c.MaxReceives > runenv.MaxReceives {
		return bad("maxReceives", "%d: SQS's redrive policy allows 1 to %d", c.MaxReceives, runenv.MaxReceives)
	}
	if c.StopTimeout < MinStopTimeout || c.StopTimeout > MaxStopTimeout {
		return bad("stopTimeout", "%d s: want %d to %d (ECS allows at most %d; the worker stops %s earlier and needs time of its own)",
			c.StopTimeout, MinStopTimeout, MaxStopTimeout, MaxStopTimeout, runenv.StopMargin)
	}
	if days := c.QueueRetentionDays; days < 1 || days*24*3600 >= DeadLetterRetention {
		return bad("queueRetentionDays", "%d: want 1 to %d, under the %d days a dead-letter queue keeps a message "+
			"(a dead-lettered message keeps the time it was first sent, so a shorter DLQ drops it early)",
			days, DeadLetterRetention/(24*3600)-1, DeadLetterRetention/(24*3600))
	}
	if err := checkDeadLetterRetention(c.Queues()); err != nil {
		return bad("queueRetentionDays", "%v", err)
	}
	for _, t := range c.Tiers() {
		if !c.BuildImages {
			if _, err := ParseECRImage(t.Image); err != nil {
				return bad(t.Name+"Image", "buildImages is false, so the %s tier needs its image by digest: %v", t.Name, err)
			}
		}
		if err := CheckTier(t.Name, t.InstanceTypes, c.VisibilityTimeout, c.MaxReceives, c.StopTimeout, t.OnDemandBase, t.TaskCPU, t.TaskMemory); err != nil {
			return bad(t.Name+"MaxTasks", "%v", err)
		}
		if _, err := scaling.New(t.Scaling()); err != nil {
			return bad(t.Name+"MaxTasks", "%v", err)
		}
	}
	return nil
}

// Limits AWS enforces, and the stack's own fixed settings.
const (
	MaxVisibilitySeconds = 12 * 3600 // SQS: 0 to 43,200 seconds
	MinVisibilitySeconds = 30        // the worker's heartbeat ticks every third of it
	MaxStopTimeout       = 120       // ECS container stopTimeout: at most 120 seconds
	// MinStopTimeout leaves the worker at least 5 s of its own after its
	// margin (runenv.StopMargin) for a job to reach a chunk boundary.
	MinStopTimeout      = 10
	MaxRetentionSeconds = 14 * 24 * 3600 // SQS keeps a message 14 days at most
	// DeadLetterRetention is every dead-letter queue's: the most SQS keeps.
	// A message SQS moves to a DLQ keeps its first enqueue time, so its
	// source queue must keep messages for less (SQS developer guide,
	// "Using dead-letter queues": "always set the retention period of a
	// dead-letter queue to be longer than the retention period of the
	// original queue").
	DeadLetterRetention = MaxRetentionSeconds
	IntakeRetention     = 4 * 24 * 3600 // intake messages: dispatched in seconds, kept 4 days
	IntakeMaxReceives   = 5             // dispatch attempts before the intake DLQ
	DispatchTimeout     = 30            // seconds: a batch of 10 with SDK retries; Lambda allows 900
	// LambdaVisibilityFactor: Lambda's documentation asks for an SQS event
	// source's visibility timeout of at least six times the function timeout.
	LambdaVisibilityFactor = 6
)

// CheckTier checks one tier's settings against what AWS accepts.
func CheckTier(tier string, instanceTypes []string, visibility, maxReceives, stopTimeout, onDemandBase, taskCPU, taskMemory int) error {
	switch {
	case tier != string(job.TierCPU) && tier != string(job.TierGPU):
		return fmt.Errorf("tier %q: want cpu or gpu", tier)
	case len(instanceTypes) == 0:
		return fmt.Errorf("tier %s: no instance types", tier)
	case visibility < MinVisibilitySeconds || visibility > MaxVisibilitySeconds:
		return fmt.Errorf("tier %s: visibility timeout %ds: SQS allows at most %d (12 h), and under 30 s the heartbeat cannot keep up", tier, visibility, MaxVisibilitySeconds)
	case maxReceives < 1 || maxReceives > runenv.MaxReceives:
		return fmt.Errorf("tier %s: max receives %d: SQS allows 1 to 1000", tier, maxReceives)
	case stopTimeout < MinStopTimeout || stopTimeout > MaxStopTimeout:
		return fmt.Errorf("tier %s: stop timeout %ds: want %d to %d s (ECS allows at most %d; the worker stops %s earlier and needs some of it)",
			tier, stopTimeout, MinStopTimeout, MaxStopTimeout, MaxStopTimeout, runenv.StopMargin)
	case onDemandBase < 0:
		return fmt.Errorf("tier %s: on-demand base %d must not be negative", tier, onDemandBase)
	case taskCPU < 256 || taskMemory < 512:
		return fmt.Errorf("tier %s: task size %d CPU units / %d MiB is too small for ONNX Runtime", tier, taskCPU, taskMemory)
	}
	return nil
}

// Tier is one enabled tier with its settings.
type Tier struct {
	Name string
	GPU  bool
	TierConfig
}

// Tiers are the enabled tiers: cpu, and gpu unless disabled.
func (c Config) Tiers() []Tier {
	tiers := []Tier{{Name: string(job.TierCPU), TierConfig: c.CPU}}
	if c.GPUEnabled {
		tiers = append(tiers, Tier{Name: string(job.TierGPU), GPU: true, TierConfig: c.GPU})
	}
	return tiers
}

// Scaling is the tier's scaling settings.
func (t TierConfig) Scaling() scaling.Config {
	return scaling.Config{MaxTasks: t.MaxTasks, BacklogPerTask: t.BacklogPerTask, IdleMinutes: t.IdleMinutes,
		TasksPerInstance: t.TasksPerInstance, WarmupSeconds: t.WarmupSeconds}
}

// TierParameterName is the SSM parameter holding the active tier.
func (c Config) TierParameterName() string { return job.TierParameterName(c.Environment) }

// Queue is one queue of the stack, as both the Pulumi program and the
// local stack create it.
type Queue struct {
	Name              string // logical name (the Pulumi resource name)
	VisibilitySeconds int
	RetentionSeconds  int
	DeadLetter        string // logical name of its DLQ, "" for a DLQ
	MaxReceives       int
}

// Queues lists the stack's queues: the intake and each enabled tier's, each
// with its dead-letter queue, DLQs first.
func (c Config) Queues() []Queue {
	queues := []Queue{
		{Name: job.IntakeDeadLetterQueue, RetentionSeconds: DeadLetterRetention},
		{Name: job.IntakeQueue, VisibilitySeconds: LambdaVisibilityFactor * DispatchTimeout, RetentionSeconds: IntakeRetention,
			DeadLetter: job.IntakeDeadLetterQueue, MaxReceives: IntakeMaxReceives},
	}
	for _, t := range c.Tiers() {
		queues = append(queues,
			Queue{Name: job.TierDeadLetterQueue(job.Tier(t.Name)), RetentionSeconds: DeadLetterRetention},
			Queue{Name: job.TierQueue(job.Tier(t.Name)), VisibilitySeconds: c.VisibilityTimeout, RetentionSeconds: c.QueueRetentionDays * 24 * 3600,
				DeadLetter: job.TierDeadLetterQueue(job.Tier(t.Name)), MaxReceives: c.MaxReceives})
	}
	return queues
}

// checkDeadLetterRetention refuses a queue that keeps messages as long as
// its dead-letter queue or longer: there a message that waited out most of
// its time before being dead-lettered would vanish before anyone reads it.
func checkDeadLetterRetention(queues []Queue) error {
	retention := map[string]int{}
	for _, q := range queues {
		retention[q.Name] = q.RetentionSeconds
	}
	for _, q := range queues {
		if q.DeadLetter != "" && q.RetentionSeconds >= retention[q.DeadLetter] {
			return fmt.Errorf("queue %s keeps messages %d s, its dead-letter queue %s only %d s: a dead letter keeps its first enqueue time, so the DLQ must keep them longer",
				q.Name, q.RetentionSeconds, q.DeadLetter, retention[q.DeadLetter])
		}
	}
	return nil
}

// ECRImage is a worker image in an ECR repository, named by digest.
type ECRImage struct {
	Account, Region, Repository, Digest string
}

// RepositoryARN is the image's repository, which the task's execution role
// must be allowed to pull from.
func (i ECRImage) RepositoryARN() string {
	return fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", i.Region, i.Account, i.Repository)
}

// ParseECRImage reads ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME@sha256:HEX.
// A tag is refused: a task definition that names a tag runs whatever was
// pushed last under it, or nothing if nothing was.
func ParseECRImage(ref string) (ECRImage, error) {
	host, rest, ok := strings.Cut(ref, "/")
	name, digest, hasDigest := strings.Cut(rest, "@")
	h := strings.Split(host, ".")
	switch {
	case ref == "":
		return ECRImage{}, errors.New("none set (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack@sha256:...)")
	case !ok || len(h) != 6 || h[1] != "dkr" || h[2] != "ecr" || h[4] != "amazonaws" || h[5] != "com" || len(h[0]) != 12:
		return ECRImage{}, fmt.Errorf("%q is not in ECR (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME@sha256:...)", ref)
	case !hasDigest || !validDigest(digest):
		return ECRImage{}, fmt.Errorf("%q names no digest: a task definition must name the image pushed (NAME@sha256:64 hex digits), not a tag", ref)
	case name == "" || strings.Contains(name, ":"):
		return ECRImage{}, fmt.Errorf("%q: want NAME@sha256:..., without a tag", ref)
	}
	return ECRImage{Account: h[0], Region: h[3], Repository: name, Digest: digest}, nil
}

func validDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	return strings.Trim(hex, "0123456789abcdef") == ""
}

// validRetention are the values CloudWatch Logs accepts for RetentionInDays
// (PutRetentionPolicy API reference).
var validRetention = map[int]bool{1: true, 3: true, 5: true, 7: true, 14: true, 30: true, 60: true, 90: true, 120: true, 150: true,
	180: true, 365: true, 400: true, 545: true, 731: true, 1096: true, 1827: true, 2192: true, 2557: true, 2922: true, 3288: true, 3653: true}

// reader reads keys with their defaults and keeps the first error.
type reader struct {
	get func(string) (string, bool)
	err error
}

func (r *reader) raw(key string) string {
	if v, ok := r.get(key); ok {
		return v
	}
	for _, k := range Keys {
		if k.Name == key {
			return k.Default
		}
	}
	panic("deploy: undeclared config key " + key)
}

func (r *reader) fail(key string, err error) {
	if r.err == nil {
		r.err = keyError(key, err)
	}
}

func (r *reader) str(key string) string { return r.raw(key) }

func (r *reader) integer(key string) int {
	v, err := strconv.Atoi(strings.TrimSpace(r.raw(key)))
	if err != nil {
		r.fail(key, fmt.Errorf("%q is not an integer", r.raw(key)))
	}
	return v
}

func (r *reader) duration(key string) time.Duration {
	v, err := time.ParseDuration(strings.TrimSpace(r.raw(key)))
	if err != nil {
		r.fail(key, fmt.Errorf("%q is not a duration like 30s", r.raw(key)))
	}
	return v
}

func (r *reader) boolean(key string) bool {
	v, err := strconv.ParseBool(strings.TrimSpace(r.raw(key)))
	if err != nil {
		r.fail(key, fmt.Errorf("%q is not true or false", r.raw(key)))
	}
	return v
}

func (r *reader) array(key string) []string {
	var v []string
	if err := json.Unmarshal([]byte(r.raw(key)), &v); err != nil {
		r.fail(key, errors.New("want a list of strings"))
	}
	return v
}

// columns reads a comma-separated list of column names ("" for none).
func (r *reader) columns(key string) []string {
	s := r.raw(key)
	if strings.TrimSpace(s) == "" {
		return nil
	}
	v, err := job.ParseColumns(s)
	if err != nil {
		r.fail(key, err)
	}
	return v
}

func (r *reader) tier(prefix string) TierConfig {
	return TierConfig{
		InstanceTypes:    r.array(prefix + "InstanceTypes"),
		Spot:             r.boolean(prefix + "Spot"),
		OnDemandBase:     r.integer(prefix + "OnDemandBase"),
		MaxTasks:         r.integer(prefix + "MaxTasks"),
		BacklogPerTask:   r.integer(prefix + "BacklogPerTask"),
		IdleMinutes:      r.integer(prefix + "IdleMinutes"),
		TasksPerInstance: r.integer(prefix + "TasksPerInstance"),
		WarmupSeconds:    r.integer(prefix + "WarmupSeconds"),
		TaskCPU:          r.integer(prefix + "TaskCpu"),
		TaskMemory:       r.integer(prefix + "TaskMemory"),
		Image:            r.str(prefix + "Image"),
	}
}

// EventsProtocol is the SNS protocol of an events subscription endpoint:
// email for an address, sqs for a queue ARN.
func EventsProtocol(endpoint string) (string, error) {
	switch {
	case strings.HasPrefix(endpoint, "arn:"):
		f := strings.Split(endpoint, ":")
		if len(f) != 6 || f[2] != "sqs" || f[3] == "" || f[4] == "" || f[5] == "" {
			return "", fmt.Errorf("%q: an ARN here must be an SQS queue's (arn:aws:sqs:REGION:ACCOUNT:NAME)", endpoint)
		}
		return "sqs", nil
	case strings.Contains(endpoint, "@") && !strings.ContainsAny(endpoint, " \t"):
		return "email", nil
	}
	return "", fmt.Errorf("%q: want an email address or an SQS queue ARN", endpoint)
}

// Location is where a deployment put what a worker uses: known once the
// resources exist (Pulumi outputs, or the local stack's emulator).
type Location struct {
	Region, Bucket, ModelKey, QueueURL, DeadLetterURL, EventsTopicARN string
}

// WorkerRuntime is what a tier's worker is told (its task definition's
// environment): its tier, its queue's visibility and max receives, the ECS
// stop timeout less the worker's margin, and threads from the task's CPU
// units. The Pulumi program and the local stack both build the worker's
// environment with it.
func WorkerRuntime(tier string, gpu bool, taskCPU, visibilitySecs, maxReceives, ecsStopTimeout int, at Location) runenv.Worker {
	device := "cpu"
	if gpu {
		device = "auto" // CUDA, falling back to the CPU with the reason in the manifest
	}
	return runenv.Worker{
		Region: at.Region, Tier: tier, Device: device, QueueURL: at.QueueURL, DeadLetterURL: at.DeadLetterURL,
		Bucket: at.Bucket, ModelKey: at.ModelKey, Visibility: time.Duration(visibilitySecs) * time.Second,
		MaxReceives: maxReceives, StopTimeout: runenv.WorkerStopTimeout(ecsStopTimeout), EventsTopicARN: at.EventsTopicARN,
		Threads: runenv.TaskThreads(taskCPU),
	}
}
