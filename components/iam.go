package components

import (
	"encoding/json"
	"strings"

	"github.com/inferstack/inferstack/internal/job"
)

// PolicyDocument is an IAM policy as data, so tests can inspect what each
// role may do before it is marshalled.
type PolicyDocument struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one IAM statement.
type Statement struct {
	Sid       string                    `json:"Sid,omitempty"`
	Effect    string                    `json:"Effect"`
	Principal map[string]any            `json:"Principal,omitempty"`
	Action    []string                  `json:"Action"`
	Resource  []string                  `json:"Resource,omitempty"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// JSON marshals the document.
func (d PolicyDocument) JSON() string {
	data, err := json.Marshal(d)
	if err != nil {
		panic(err) // only strings and maps of strings: cannot fail
	}
	return string(data)
}

func allow(sid string, actions []string, resources ...string) Statement {
	return Statement{Sid: sid, Effect: "Allow", Action: actions, Resource: resources}
}

func policy(statements ...Statement) PolicyDocument {
	return PolicyDocument{Version: "2012-10-17", Statement: statements}
}

// WildcardResourceActions are the only actions granted on Resource "*": AWS
// does not support resource-level permissions for them (Service Authorization
// Reference: "ecr:GetAuthorizationToken", "ecs:DiscoverPollEndpoint" and
// "ec2:DescribeTags" list no resource types).
var WildcardResourceActions = []string{"ecr:GetAuthorizationToken", "ecs:DiscoverPollEndpoint", "ec2:DescribeTags"}

// AssumeRolePolicy lets an AWS service assume a role.
func AssumeRolePolicy(service string) PolicyDocument {
	return policy(Statement{Effect: "Allow", Principal: map[string]any{"Service": service}, Action: []string{"sts:AssumeRole"}})
}

// DispatchPolicyArgs are the ARNs the dispatch function touches.
type DispatchPolicyArgs struct {
	IntakeQueueARN, DeadLetterARN string
	TierQueueARNs                 []string
	TierParameterARN              string
	BucketARN, InputPrefix        string
	LogGroupARN                   string
}

// DispatchPolicy: consume the intake queue, send to the tier queues and the
// intake DLQ, read the tier parameter, size inputs (HeadObject needs
// s3:GetObject), write error records for refused messages, write its logs.
func DispatchPolicy(a DispatchPolicyArgs) PolicyDocument {
	return policy(
		allow("ConsumeIntake", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}, a.IntakeQueueARN),
		allow("Forward", []string{"sqs:SendMessage"}, append(append([]string{}, a.TierQueueARNs...), a.DeadLetterARN)...),
		allow("ReadTier", []string{"ssm:GetParameter"}, a.TierParameterARN),
		allow("SizeInputs", []string{"s3:GetObject"}, a.BucketARN+"/"+a.InputPrefix+"*"),
		allow("RecordErrors", []string{"s3:PutObject"}, a.BucketARN+"/"+ErrorsPrefix+"*"),
		allow("Logs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, a.LogGroupARN+":*"),
	)
}

// WorkerPolicyArgs are the ARNs a tier's worker task touches.
type WorkerPolicyArgs struct {
	QueueARN, DeadLetterARN string
	BucketARN               string
	ClusterARN              string
}

// The bucket's prefixes, named once in package job.
const (
	InputPrefix      = job.InputPrefix
	ResultsPrefix    = job.ResultsPrefix
	StatusPrefix     = job.StatusPrefix
	ErrorsPrefix     = job.ErrorsPrefix
	CheckpointPrefix = job.CheckpointPrefix
	ModelsPrefix     = job.ModelsPrefix
)

// WorkerTaskPolicy: consume the tier queue (and dead-letter poison at once),
// read inputs and models, write results, status, errors and checkpoints, and
// set its own scale-in protection.
func WorkerTaskPolicy(a WorkerPolicyArgs) PolicyDocument {
	objects := func(prefixes ...string) []string {
		arns := make([]string, len(prefixes))
		for i, p := range prefixes {
			arns[i] = a.BucketARN + "/" + p + "*"
		}
		return arns
	}
	return policy(
		allow("ConsumeQueue", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}, a.QueueARN),
		allow("DeadLetterPoison", []string{"sqs:SendMessage"}, a.DeadLetterARN),
		allow("ReadInputs", []string{"s3:GetObject"}, objects(InputPrefix, ModelsPrefix)...),
		allow("WriteResults", []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
			objects(ResultsPrefix, StatusPrefix, ErrorsPrefix, CheckpointPrefix)...),
		allow("ScaleInProtection", []string{"ecs:UpdateTaskProtection", "ecs:GetTaskProtection"}, taskARNs(a.ClusterARN)),
	)
}

// ExecutionPolicy lets ECS pull the tier's image and ship its logs.
func ExecutionPolicy(repositoryARN, logGroupARN string) PolicyDocument {
	return policy(
		allow("RegistryLogin", []string{"ecr:GetAuthorizationToken"}, "*"),
		allow("PullImage", []string{"ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"}, repositoryARN),
		allow("Logs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, logGroupARN+":*"),
	)
}

// InstancePolicy is what the ECS agent on a tier's instances needs, scoped
// to the cluster and its container instances (the scoped form of
// AmazonEC2ContainerServiceforEC2Role).
func InstancePolicy(clusterARN string) PolicyDocument {
	return policy(
		allow("Discover", []string{"ecs:DiscoverPollEndpoint", "ec2:DescribeTags"}, "*"),
		allow("JoinCluster", []string{"ecs:RegisterContainerInstance", "ecs:DeregisterContainerInstance",
			"ecs:SubmitContainerStateChange", "ecs:SubmitTaskStateChange", "ecs:SubmitAttachmentStateChanges"}, clusterARN),
		allow("ServeTasks", []string{"ecs:Poll", "ecs:StartTelemetrySession", "ecs:UpdateContainerInstancesState"}, containerInstanceARNs(clusterARN)),
	)
}

// BucketTLSOnlyPolicy denies every request to the bucket that is not over TLS.
func BucketTLSOnlyPolicy(bucketARN string) PolicyDocument {
	return policy(Statement{
		Sid: "DenyInsecureTransport", Effect: "Deny", Principal: map[string]any{"AWS": "*"},
		Action:    []string{"s3:*"},
		Resource:  []string{bucketARN, bucketARN + "/*"},
		Condition: map[string]map[string]any{"Bool": {"aws:SecureTransport": "false"}},
	})
}

// taskARNs and containerInstanceARNs name every task and container instance
// of one cluster: arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/*.
func taskARNs(clusterARN string) string { return clusterScoped(clusterARN, "task") }

func containerInstanceARNs(clusterARN string) string {
	return clusterScoped(clusterARN, "container-instance")
}

func clusterScoped(clusterARN, kind string) string {
	prefix, name, ok := strings.Cut(clusterARN, ":cluster/")
	if !ok {
		return clusterARN // not a cluster ARN: scope to it rather than widen
	}
	return prefix + ":" + kind + "/" + name + "/*"
}

// AlarmKeyPolicy is the key policy of the key encrypting the alarm topic.
// CloudWatch cannot publish to a topic encrypted with the AWS managed
// aws/sns key; it needs kms:Decrypt and kms:GenerateDataKey* on a customer
// managed key (SNS developer guide, "Enable compatibility between event
// sources from AWS services and encrypted topics"). The first statement is
// KMS's default key policy: without it no one could manage the key. In a key
// policy, Resource "*" means this key.
func AlarmKeyPolicy(account string) PolicyDocument {
	return policy(
		Statement{Sid: "AccountManagesKey", Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::" + account + ":root"},
			Action: []string{"kms:*"}, Resource: []string{"*"}},
		Statement{Sid: "CloudWatchAlarmsPublish", Effect: "Allow", Principal: map[string]any{"Service": "cloudwatch.amazonaws.com"},
			Action: []string{"kms:Decrypt", "kms:GenerateDataKey*"}, Resource: []string{"*"},
			Condition: map[string]map[string]any{"StringEquals": {"aws:SourceAccount": account}}},
	)
}
