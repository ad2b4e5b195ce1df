// Package settings is the stack's configuration: every `pulumi config` key
// with its default (Keys, which Pulumi.yaml is generated from), the one
// validated Config they parse into, the limits AWS enforces, and the queues
// and worker environments they imply. The Pulumi program (package deploy)
// and the local stack (internal/localstack) both build from it, so they
// cannot drift apart. It imports no Pulumi code.
package settings

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/scaling"
)

// Config is the whole stack's settings, parsed and validated once (Parse).
// Its groups are what each component takes: Core the Core's, Dispatch the
// dispatch function's, Workers the settings every tier shares, CPU and GPU
// each tier's own.
type Config struct {
	Environment string // the stack's name, not a key
	Core
	Dispatch
	Workers
	GPUEnabled       bool
	LogRetentionDays int
	CPU, GPU         TierConfig
}

// Core is the Core component's settings: network, bucket, topics, intake.
type Core struct {
	// Tier is the tier parameter's first value: cpu, gpu or auto.
	Tier              job.Tier
	ModelPath         string // local ONNX file, uploaded to models/
	VpcID             string // an existing VPC (then SubnetIDs), or "" for a new one
	SubnetIDs         []string
	AvailabilityZones int  // of a new VPC
	NatGatewayPerAZ   bool // one NAT per AZ (resilient) or one in all (cheap)
	ForceDestroy      bool // let `pulumi destroy` delete a bucket holding objects
	InputsExpireDays  int
	ResultsExpireDays int
	AlarmEmail        string // optional subscription to the alarm topic
	// UploadTriggers makes an upload under inputs/ start a job by itself.
	UploadTriggers bool
	// EventsSubscription subscribes an email address or an SQS queue to the
	// job events topic (none when its Endpoint is empty).
	EventsSubscription Subscription
}

// Dispatch is the dispatch function's settings.
type Dispatch struct {
	DispatchZip       string        // dist/dispatch/bootstrap.zip (make build)
	TierCacheTTL      time.Duration // how long a read of the tier parameter is trusted
	AllowTierOverride bool
	AutoGPUMinBytes   int64
	// Keep names the columns an upload-started table job copies beside its
	// predictions (a message says its own).
	Keep []string
}

// Workers are the settings every tier's queue and workers share.
type Workers struct {
	VisibilityTimeout int // seconds; the worker's heartbeat extends it
	MaxReceives       int // deliveries before a job is dead-lettered
	// QueueRetentionDays is how long a tier queue keeps a waiting job;
	// shorter than its dead-letter queue keeps one (DeadLetterRetention).
	QueueRetentionDays int
	StopTimeout        int // seconds ECS waits after SIGTERM before SIGKILL
	// ShardBytes splits a larger input into shards of about this size (0: never).
	ShardBytes int64
	// BuildImages builds each tier's image on `pulumi up`; otherwise each
	// tier runs its TierConfig.Image.
	BuildImages bool
}

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

// Subscription is an events topic subscriber: an email address (protocol
// email) or an SQS queue ARN (protocol sqs).
type Subscription struct {
	Protocol, Endpoint string
}

// UnmarshalText reads an endpoint ("" for none) and finds its protocol.
func (s *Subscription) UnmarshalText(text []byte) error {
	*s = Subscription{Endpoint: string(text)}
	if s.Endpoint == "" {
		return nil
	}
	var err error
	s.Protocol, err = EventsProtocol(s.Endpoint)
	return err
}

// Limits AWS enforces, and the stack's own fixed settings. The SQS limits a
// worker parses its environment against live in runenv, defined once there.
const (
	MaxVisibilitySeconds = int(runenv.MaxVisibility / time.Second)         // SQS: 0 to 43,200 seconds
	MinVisibilitySeconds = int(runenv.MinDeployedVisibility / time.Second) // the worker's heartbeat ticks every third of it
	MaxStopTimeout       = int(runenv.MaxStopTimeout / time.Second)        // ECS container stopTimeout: at most 120 seconds
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
	// TierQueueWaitSeconds is a tier queue's long polling: fewer empty receives.
	TierQueueWaitSeconds = 20
	// MinTaskCPU and MinTaskMemory are the smallest task ONNX Runtime runs in.
	MinTaskCPU, MinTaskMemory = 256, 512
	// MinShardBytes is the smallest shard a deployment asks for: below it a
	// shard's fixed costs (a receive, the model's load, a plan read, its
	// assembly) outweigh its share of the work (docs/scaling.md).
	MinShardBytes = 64 << 20
)

// Validate checks the values against each other and against AWS's limits;
// Parse calls it, and nothing after it checks them again.
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
	if c.ShardBytes != 0 && c.ShardBytes < MinShardBytes {
		return bad("shardBytes", "%d: want 0 (never split) or at least %d (64 MiB)", c.ShardBytes, MinShardBytes)
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
		switch {
		case len(t.InstanceTypes) == 0:
			return bad(t.Name+"InstanceTypes", "tier %s: no instance types", t.Name)
		case t.OnDemandBase < 0:
			return bad(t.Name+"OnDemandBase", "tier %s: on-demand base %d must not be negative", t.Name, t.OnDemandBase)
		case t.TaskCPU < MinTaskCPU:
			return bad(t.Name+"TaskCpu", "tier %s: task size %d CPU units / %d MiB is too small for ONNX Runtime", t.Name, t.TaskCPU, t.TaskMemory)
		case t.TaskMemory < MinTaskMemory:
			return bad(t.Name+"TaskMemory", "tier %s: task size %d CPU units / %d MiB is too small for ONNX Runtime", t.Name, t.TaskCPU, t.TaskMemory)
		}
		if _, err := scaling.New(t.Scaling()); err != nil {
			return bad(t.Name+"MaxTasks", "%v", err)
		}
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
	// WaitSeconds is the queue's default long polling (0: none). The local
	// stack leaves it to its receivers, which each ask for their own wait.
	WaitSeconds int
}

// Queues lists the stack's queues: the intake and each enabled tier's, each
// with its dead-letter queue, DLQs first.
func (c Config) Queues() []Queue {
	queues := []Queue{IntakeDeadLetterQueue(), IntakeQueue()}
	for _, t := range c.Tiers() {
		queues = append(queues, TierDeadLetterQueue(t.Name), c.TierQueue(t.Name))
	}
	return queues
}

// IntakeDeadLetterQueue is where intake messages go after IntakeMaxReceives dispatch attempts.
func IntakeDeadLetterQueue() Queue {
	return Queue{Name: job.IntakeDeadLetterQueue, RetentionSeconds: DeadLetterRetention}
}

// IntakeQueue is the queue the dispatch function reads.
func IntakeQueue() Queue {
	return Queue{Name: job.IntakeQueue, VisibilitySeconds: LambdaVisibilityFactor * DispatchTimeout, RetentionSeconds: IntakeRetention,
		DeadLetter: job.IntakeDeadLetterQueue, MaxReceives: IntakeMaxReceives}
}

// TierDeadLetterQueue is the dead-letter queue of tier.
func TierDeadLetterQueue(tier string) Queue {
	return Queue{Name: job.TierDeadLetterQueue(job.Tier(tier)), RetentionSeconds: DeadLetterRetention}
}

// TierQueue is the queue of tier, where its workers take jobs.
func (w Workers) TierQueue(tier string) Queue {
	return Queue{Name: job.TierQueue(job.Tier(tier)), VisibilitySeconds: w.VisibilityTimeout, RetentionSeconds: w.QueueRetentionDays * 24 * 3600,
		DeadLetter: job.TierDeadLetterQueue(job.Tier(tier)), MaxReceives: w.MaxReceives, WaitSeconds: TierQueueWaitSeconds}
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

// Runtime is what tier t's worker is told (its task definition's
// environment): its tier, its queue's visibility and max receives, the ECS
// stop timeout less the worker's margin, and threads from the task's CPU
// units. The Pulumi program and the local stack both build the worker's
// environment with it.
func (w Workers) Runtime(t Tier, at Location) runenv.Worker {
	device := "cpu"
	if t.GPU {
		device = "auto" // CUDA, falling back to the CPU with the reason in the manifest
	}
	return runenv.Worker{
		Region: at.Region, Tier: t.Name, Device: device, QueueURL: at.QueueURL, DeadLetterURL: at.DeadLetterURL,
		Bucket: at.Bucket, ModelKey: at.ModelKey, Visibility: time.Duration(w.VisibilityTimeout) * time.Second,
		MaxReceives: w.MaxReceives, StopTimeout: runenv.WorkerStopTimeout(w.StopTimeout), EventsTopicARN: at.EventsTopicARN,
		Threads: runenv.TaskThreads(t.TaskCPU), ShardBytes: w.ShardBytes,
	}
}
