// Package policy holds the stack's IAM policy documents as data: what each
// principal (the dispatch function, a tier's worker task, its instances, a
// client) may do, scoped to ARNs. The Pulumi program attaches them to roles;
// the local stack gives the same documents to emulator users, so that a
// missing permission fails here as it would on AWS. It imports no Pulumi code.
package policy

import (
	"encoding/json"
	"strings"

	"github.com/inferstack/inferstack/internal/job"
)

// Document is an IAM policy as data, so tests can inspect what each role may
// do before it is marshalled.
type Document struct {
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
func (d Document) JSON() string {
	data, err := json.Marshal(d)
	if err != nil {
		panic(err) // only strings and maps of strings: cannot fail
	}
	return string(data)
}

// Without returns the document less the statement sid (tests show that each
// statement is needed).
func (d Document) Without(sid string) Document {
	out := Document{Version: d.Version}
	for _, s := range d.Statement {
		if s.Sid != sid {
			out.Statement = append(out.Statement, s)
		}
	}
	return out
}

func allow(sid string, actions []string, resources ...string) Statement {
	return Statement{Sid: sid, Effect: "Allow", Action: actions, Resource: resources}
}

func doc(statements ...Statement) Document {
	return Document{Version: "2012-10-17", Statement: statements}
}

// WildcardResourceActions are the only actions granted on Resource "*": AWS
// does not support resource-level permissions for them (Service Authorization
// Reference: "ecr:GetAuthorizationToken", "ecs:DiscoverPollEndpoint" and
// "ec2:DescribeTags" list no resource types).
var WildcardResourceActions = []string{"ecr:GetAuthorizationToken", "ecs:DiscoverPollEndpoint", "ec2:DescribeTags"}

// AssumeRole lets an AWS service assume a role.
func AssumeRole(service string) Document {
	return doc(Statement{Effect: "Allow", Principal: map[string]any{"Service": service}, Action: []string{"sts:AssumeRole"}})
}

// objects are the object ARNs under each prefix of a bucket.
func objects(bucketARN string, prefixes ...string) []string {
	arns := make([]string, len(prefixes))
	for i, p := range prefixes {
		arns[i] = bucketARN + "/" + p + "*"
	}
	return arns
}

// KnowMissingKeys lets a principal that reads under prefixes learn that a
// key there does not exist. Without s3:ListBucket on the bucket, S3 answers
// a GetObject or HeadObject of a missing key with 403 AccessDenied, not 404
// (S3 API reference, HeadObject and GetObject, "Permissions"), so a missing
// input or a first look for a manifest would look like a denied call. S3
// evaluates that implicit ListBucket check with the requested key as
// s3:prefix (ceph/ceph#68577 matches RGW to AWS on this), so the grant is
// limited to the prefixes the principal reads: it cannot list the rest.
func KnowMissingKeys(bucketARN string, prefixes ...string) Statement {
	patterns := make([]string, len(prefixes))
	for i, p := range prefixes {
		patterns[i] = p + "*"
	}
	s := allow("KnowMissingKeys", []string{"s3:ListBucket"}, bucketARN)
	s.Condition = map[string]map[string]any{"StringLike": {"s3:prefix": patterns}}
	return s
}

// DispatchArgs are the ARNs the dispatch function touches.
type DispatchArgs struct {
	IntakeQueueARN, DeadLetterARN string
	TierQueueARNs                 []string
	TierParameterARN              string
	BucketARN                     string
	LogGroupARN                   string
	Events                        EventsArgs
}

// EventsArgs name the job events topic and the key that encrypts it.
type EventsArgs struct {
	TopicARN, KeyARN string
}

// publishEvents lets a role publish to the events topic only. Publishing to
// a topic encrypted with a customer managed key takes kms:GenerateDataKey*
// and kms:Decrypt on that key (SNS developer guide, "Key management": the
// publisher's permissions for an encrypted topic). A local stack has no key.
func publishEvents(e EventsArgs) []Statement {
	if e.TopicARN == "" {
		return nil // no topic, no grant (rather than one on Resource "")
	}
	out := []Statement{allow("PublishEvents", []string{"sns:Publish"}, e.TopicARN)}
	if e.KeyARN != "" {
		out = append(out, allow("EncryptEvents", []string{"kms:GenerateDataKey*", "kms:Decrypt"}, e.KeyARN))
	}
	return out
}

// Dispatch: consume the intake queue, send to the tier queues and the intake
// DLQ, read the tier parameter, size inputs (HeadObject needs s3:GetObject,
// and s3:ListBucket to tell a missing input from a denied one), write error
// records for refused messages, write its logs.
func Dispatch(a DispatchArgs) Document {
	return doc(append([]Statement{
		allow("ConsumeIntake", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}, a.IntakeQueueARN),
		allow("Forward", []string{"sqs:SendMessage"}, append(append([]string{}, a.TierQueueARNs...), a.DeadLetterARN)...),
		allow("ReadTier", []string{"ssm:GetParameter"}, a.TierParameterARN),
		allow("SizeInputs", []string{"s3:GetObject"}, objects(a.BucketARN, job.InputPrefix)...),
		KnowMissingKeys(a.BucketARN, job.InputPrefix),
		allow("RecordErrors", []string{"s3:PutObject"}, objects(a.BucketARN, job.ErrorsPrefix)...),
		allow("Logs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, a.LogGroupARN+":*"),
	}, publishEvents(a.Events)...)...)
}

// DispatchReads are the prefixes the dispatch function reads.
var DispatchReads = []string{job.InputPrefix}

// WorkerArgs are the ARNs a tier's worker task touches.
type WorkerArgs struct {
	QueueARN, DeadLetterARN string
	BucketARN               string
	ClusterARN              string
	Events                  EventsArgs
}

// WorkerReads are the prefixes a worker reads: its input, the model, a
// finished job's manifest (results/), its checkpoints and the shared
// calibration searches.
var WorkerReads = []string{job.InputPrefix, job.ModelsPrefix, job.ResultsPrefix, job.CheckpointPrefix, job.CalibrationPrefix}

// WorkerTask: consume the tier queue (and replace a message at SQS's 12-hour
// visibility ceiling with a fresh copy; dead-letter poison at once), read
// inputs and models, learn that a manifest, checkpoint or calibration does
// not exist yet, write results, status, errors and checkpoints, read and
// add to the calibration searches every task shares (never delete them),
// and set its own scale-in protection.
func WorkerTask(a WorkerArgs) Document {
	return doc(append([]Statement{
		allow("ConsumeQueue", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
			"sqs:SendMessage"}, a.QueueARN),
		allow("DeadLetterPoison", []string{"sqs:SendMessage"}, a.DeadLetterARN),
		allow("ReadInputs", []string{"s3:GetObject"}, objects(a.BucketARN, job.InputPrefix, job.ModelsPrefix)...),
		KnowMissingKeys(a.BucketARN, WorkerReads...),
		allow("WriteResults", []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
			objects(a.BucketARN, job.ResultsPrefix, job.StatusPrefix, job.ErrorsPrefix, job.CheckpointPrefix)...),
		allow("ShareCalibrations", []string{"s3:GetObject", "s3:PutObject"}, objects(a.BucketARN, job.CalibrationPrefix)...),
		allow("ScaleInProtection", []string{"ecs:UpdateTaskProtection", "ecs:GetTaskProtection"}, taskARNs(a.ClusterARN)),
	}, publishEvents(a.Events)...)...)
}

// ClientArgs are the ARNs a user of the stack (inferstack submit, status,
// results, tier) touches.
type ClientArgs struct {
	IntakeQueueARN   string
	TierParameterARN string
	BucketARN        string
}

// ClientReads are the prefixes a client reads.
var ClientReads = []string{job.ResultsPrefix, job.StatusPrefix, job.ErrorsPrefix}

// Client: upload inputs, send intake messages, follow status, read results
// and error records, and read or switch the tier. The least a user of the
// stack needs; attach it to the users or roles that submit jobs. Inputs go
// up in parts (CreateMultipartUpload, UploadPart and CompleteMultipartUpload
// are authorized as s3:PutObject), and a failed upload aborts its parts.
func Client(a ClientArgs) Document {
	return doc(
		allow("UploadInputs", []string{"s3:PutObject", "s3:AbortMultipartUpload"}, objects(a.BucketARN, job.InputPrefix)...),
		allow("ReadOutcomes", []string{"s3:GetObject"}, objects(a.BucketARN, ClientReads...)...),
		listUnder(a.BucketARN, ClientReads...),
		allow("Submit", []string{"sqs:SendMessage"}, a.IntakeQueueARN),
		allow("Tier", []string{"ssm:GetParameter", "ssm:PutParameter"}, a.TierParameterARN),
	)
}

// listUnder lets a client list (and so know missing keys) under prefixes.
func listUnder(bucketARN string, prefixes ...string) Statement {
	s := KnowMissingKeys(bucketARN, prefixes...)
	s.Sid = "ListOutcomes"
	return s
}

// Execution lets ECS pull the tier's image and ship its logs.
func Execution(repositoryARN, logGroupARN string) Document {
	return doc(
		allow("RegistryLogin", []string{"ecr:GetAuthorizationToken"}, "*"),
		allow("PullImage", []string{"ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"}, repositoryARN),
		allow("Logs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, logGroupARN+":*"),
	)
}

// Instance is what the ECS agent on a tier's instances needs, scoped to the
// cluster and its container instances (the scoped form of
// AmazonEC2ContainerServiceforEC2Role).
func Instance(clusterARN string) Document {
	return doc(
		allow("Discover", []string{"ecs:DiscoverPollEndpoint", "ec2:DescribeTags"}, "*"),
		allow("JoinCluster", []string{"ecs:RegisterContainerInstance", "ecs:DeregisterContainerInstance",
			"ecs:SubmitContainerStateChange", "ecs:SubmitTaskStateChange", "ecs:SubmitAttachmentStateChanges"}, clusterARN),
		allow("ServeTasks", []string{"ecs:Poll", "ecs:StartTelemetrySession", "ecs:UpdateContainerInstancesState"}, containerInstanceARNs(clusterARN)),
	)
}

// BucketTLSOnly denies every request to the bucket that is not over TLS.
func BucketTLSOnly(bucketARN string) Document {
	return doc(Statement{
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

// AlarmKey is the key policy of the key encrypting the alarm topic.
// CloudWatch cannot publish to a topic encrypted with the AWS managed
// aws/sns key; it needs kms:Decrypt and kms:GenerateDataKey* on a customer
// managed key (SNS developer guide, "Enable compatibility between event
// sources from AWS services and encrypted topics"). The first statement is
// KMS's default key policy: without it no one could manage the key. In a key
// policy, Resource "*" means this key.
func AlarmKey(account string) Document {
	return doc(
		Statement{Sid: "AccountManagesKey", Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::" + account + ":root"},
			Action: []string{"kms:*"}, Resource: []string{"*"}},
		Statement{Sid: "CloudWatchAlarmsPublish", Effect: "Allow", Principal: map[string]any{"Service": "cloudwatch.amazonaws.com"},
			Action: []string{"kms:Decrypt", "kms:GenerateDataKey*"}, Resource: []string{"*"},
			Condition: map[string]map[string]any{"StringEquals": {"aws:SourceAccount": account}}},
		Statement{Sid: "EventBridgeRulesPublish", Effect: "Allow", Principal: map[string]any{"Service": "events.amazonaws.com"},
			Action: []string{"kms:Decrypt", "kms:GenerateDataKey*"}, Resource: []string{"*"},
			Condition: map[string]map[string]any{"StringEquals": {"aws:SourceAccount": account}}},
	)
}

// AlarmTopic is the alarm topic's policy: the account manages it, its
// CloudWatch alarms publish to it, and so do the EventBridge rules named
// rulePrefix* (the tiers' failed launches). EventBridge needs this grant in
// the topic policy (EventBridge user guide, "Amazon SNS permissions").
func AlarmTopic(topicARN, account, rulePrefix string) Document {
	return doc(
		Statement{Sid: "AccountManagesTopic", Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::" + account + ":root"},
			Action: []string{"sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission", "sns:RemovePermission",
				"sns:DeleteTopic", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish"},
			Resource: []string{topicARN}},
		Statement{Sid: "CloudWatchAlarmsPublish", Effect: "Allow", Principal: map[string]any{"Service": "cloudwatch.amazonaws.com"},
			Action: []string{"sns:Publish"}, Resource: []string{topicARN},
			Condition: map[string]map[string]any{
				"ArnLike":      {"aws:SourceArn": "arn:aws:cloudwatch:*:" + account + ":alarm:*"},
				"StringEquals": {"aws:SourceAccount": account},
			}},
		Statement{Sid: "LaunchFailuresPublish", Effect: "Allow", Principal: map[string]any{"Service": "events.amazonaws.com"},
			Action: []string{"sns:Publish"}, Resource: []string{topicARN},
			Condition: map[string]map[string]any{
				"ArnLike":      {"aws:SourceArn": "arn:aws:events:*:" + account + ":rule/" + rulePrefix + "*"},
				"StringEquals": {"aws:SourceAccount": account},
			}},
	)
}

// IntakeFromBucket is the intake queue's policy: S3 may send it the
// bucket's event notifications, and no other bucket (of any account) may.
// The conditions are the ones S3's guide gives for an SQS destination
// (S3 user guide, "Granting permissions to publish event notification
// messages to a destination"); S3 checks them when the notification is
// configured, so the policy must exist first.
func IntakeFromBucket(queueARN, bucketARN, account string) Document {
	return doc(Statement{
		Sid: "BucketNotifications", Effect: "Allow", Principal: map[string]any{"Service": "s3.amazonaws.com"},
		Action: []string{"sqs:SendMessage"}, Resource: []string{queueARN},
		Condition: map[string]map[string]any{
			"ArnEquals":    {"aws:SourceArn": bucketARN},
			"StringEquals": {"aws:SourceAccount": account},
		},
	})
}

// EventsTopic is the job events topic's policy: the account manages it and
// subscribes to it, and only the stack's publishers (the dispatch role and
// the worker task roles) may publish, over TLS; an explicit Deny holds the
// line against any other principal an identity policy might let in.
func EventsTopic(topicARN, account string, publisherRoleARNs []string) Document {
	return doc(
		Statement{Sid: "AccountManagesTopic", Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::" + account + ":root"},
			Action: []string{"sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission", "sns:RemovePermission",
				"sns:DeleteTopic", "sns:Subscribe", "sns:ListSubscriptionsByTopic"},
			Resource: []string{topicARN}},
		Statement{Sid: "StackPublishes", Effect: "Allow", Principal: map[string]any{"AWS": publisherRoleARNs},
			Action: []string{"sns:Publish"}, Resource: []string{topicARN}},
		Statement{Sid: "OnlyTheStackPublishes", Effect: "Deny", Principal: map[string]any{"AWS": "*"},
			Action: []string{"sns:Publish"}, Resource: []string{topicARN},
			Condition: map[string]map[string]any{"ArnNotEquals": {"aws:PrincipalArn": publisherRoleARNs}}},
		Statement{Sid: "DenyInsecureTransport", Effect: "Deny", Principal: map[string]any{"AWS": "*"},
			Action: []string{"sns:Publish"}, Resource: []string{topicARN},
			Condition: map[string]map[string]any{"Bool": {"aws:SecureTransport": "false"}}},
	)
}

// EventsKey is the key policy of the key encrypting the events topic: the
// account manages it (KMS's default statement), and IAM policies grant its
// use (publishEvents).
func EventsKey(account string) Document {
	return doc(Statement{Sid: "AccountManagesKey", Effect: "Allow", Principal: map[string]any{"AWS": "arn:aws:iam::" + account + ":root"},
		Action: []string{"kms:*"}, Resource: []string{"*"}})
}

// ARNField is field i of an ARN: arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE.
func ARNField(arn string, i int) string {
	if parts := strings.SplitN(arn, ":", 6); len(parts) == 6 {
		return parts[i]
	}
	return ""
}
