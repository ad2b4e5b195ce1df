package job

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Prefixes of the stack's bucket: where a job's input, results, status,
// error record and checkpoints live, and the calibration searches that the
// workers share. The Pulumi program scopes permissions and lifecycle rules
// to them; the dispatch function, the worker and the client read and write
// under them.
const (
	InputPrefix       = "inputs/"
	ResultsPrefix     = "results/"
	StatusPrefix      = "status/"
	ErrorsPrefix      = "errors/"
	CheckpointPrefix  = "checkpoints/"
	ModelsPrefix      = "models/"
	CalibrationPrefix = "calibration/"
)

// MetricsNamespace is the CloudWatch namespace of the worker's metrics.
const MetricsNamespace = "Inferstack"

// InputKey is where a request's input is.
func (r Request) InputKey() string { return InputPrefix + r.Filename }

// ResultsPrefix is where a request's outputs and manifest go:
// results/<output_prefix>/ when the request names one, else
// results/<job id>/. The worker writes there and records it in the job's
// status, where clients find it.
func (r Request) ResultsPrefix() string {
	out := r.OutputPrefix
	if out == "" {
		out = r.JobID
	}
	return ResultsPrefix + strings.TrimSuffix(out, "/") + "/"
}

// DefaultResultsPrefix is where a job's results are when its request set no
// output prefix.
func DefaultResultsPrefix(jobID string) string { return ResultsPrefix + jobID + "/" }

// StatusKey is the job's status object.
func StatusKey(jobID string) string { return StatusPrefix + jobID + ".json" }

// ErrorKey is the job's error record.
func ErrorKey(jobID string) string { return ErrorsPrefix + jobID + ".json" }

// CheckpointKey is the job's checkpoint.
func CheckpointKey(jobID string) string { return CheckpointPrefix + jobID + "/checkpoint.json" }

// A split job's plan keeps what its shards share under
// checkpoints/<job>/<plan>/: the plan, each shard's results and checkpoint
// until assembly (shard-NNNNN/), a mark per shard done (done/), the
// assembly's claim and the job's failure.

// PlanPrefix is where a split job's plan keeps its shards.
func PlanPrefix(jobID, plan string) string { return CheckpointPrefix + jobID + "/" + plan + "/" }

// ShardScope names a shard's checkpoint as a job id names a job's
// (CheckpointKey(ShardScope(...)) is the shard's checkpoint).
func ShardScope(jobID, plan string, index int) string {
	return fmt.Sprintf("%s/%s/shard-%05d", jobID, plan, index)
}

// ShardResultsPrefix is where a shard's results and manifest wait for assembly.
func ShardResultsPrefix(jobID, plan string, index int) string {
	return CheckpointPrefix + ShardScope(jobID, plan, index) + "/"
}

// ShardStatusPrefix holds the status of each of a plan's shards
// (ShardStatusKey), which clients list to follow a split job.
func ShardStatusPrefix(jobID, plan string) string { return StatusPrefix + jobID + "/" + plan + "/" }

// ShardStatusKey is one shard's status.
func ShardStatusKey(jobID, plan string, index int) string {
	return fmt.Sprintf("%s%05d.json", ShardStatusPrefix(jobID, plan), index)
}

// CalibrationKey is where the workers keep the calibration search under key
// (the engine's hash of the model, input shape, settings and hardware).
func CalibrationKey(key string) string { return CalibrationPrefix + key + ".json" }

// ModelKey is where a model file named name is kept.
func ModelKey(name string) string { return ModelsPrefix + name }

// The stack's queues and parameter, by the names the Pulumi program gives
// its resources and the local stack gives its queues.
const (
	IntakeQueue           = "inferstack-intake"
	IntakeDeadLetterQueue = "inferstack-intake-dlq"
)

// TierQueue is the tier's queue; TierDeadLetterQueue its dead-letter queue.
func TierQueue(t Tier) string { return "inferstack-" + string(t) + "-queue" }

// TierDeadLetterQueue is the tier's dead-letter queue.
func TierDeadLetterQueue(t Tier) string { return "inferstack-" + string(t) + "-dlq" }

// TierParameterName is the SSM parameter holding environment env's active tier.
func TierParameterName(env string) string { return "/inferstack/" + env + "/tier" }

// RedrivePolicy is a queue's RedrivePolicy attribute: after maxReceives
// deliveries SQS moves a message to the queue deadLetterARN.
func RedrivePolicy(deadLetterARN string, maxReceives int) string {
	data, _ := json.Marshal(struct {
		Target string `json:"deadLetterTargetArn"`
		Max    int    `json:"maxReceiveCount"`
	}{deadLetterARN, maxReceives})
	return string(data)
}
