package policy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
)

const (
	bucket  = "arn:aws:s3:::inferstack-dev"
	cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/inferstack-cpu"
)

func docs() map[string]struct {
	doc   Document
	reads []string
} {
	return map[string]struct {
		doc   Document
		reads []string
	}{
		"dispatch": {Dispatch(DispatchArgs{IntakeQueueARN: "arn:aws:sqs:us-east-1:1:intake", DeadLetterARN: "arn:aws:sqs:us-east-1:1:dlq",
			TierQueueARNs: []string{"arn:aws:sqs:us-east-1:1:cpu"}, TierParameterARN: "arn:aws:ssm:us-east-1:1:parameter/p",
			BucketARN: bucket, LogGroupARN: "arn:aws:logs:us-east-1:1:log-group:g"}), DispatchReads},
		"worker": {WorkerTask(WorkerArgs{QueueARN: "arn:aws:sqs:us-east-1:1:cpu", DeadLetterARN: "arn:aws:sqs:us-east-1:1:cpu-dlq",
			BucketARN: bucket, ClusterARN: cluster}), WorkerReads},
		"client": {Client(ClientArgs{IntakeQueueARN: "arn:aws:sqs:us-east-1:1:intake", TierParameterARN: "arn:aws:ssm:us-east-1:1:parameter/p",
			BucketARN: bucket}), ClientReads},
	}
}

// S3 answers a read of a missing key with 404 only to a caller that may
// list the bucket at that key (s3:prefix is the key), and 403 otherwise.
func TestEveryReaderLearnsThatAKeyIsMissingOnlyWhereItReads(t *testing.T) {
	t.Parallel()
	for name, d := range docs() {
		for _, prefix := range d.reads {
			key := prefix + "job-1/manifest.json"
			require.True(t, d.doc.Allows("s3:GetObject", bucket+"/"+key, nil), "%s reads %s", name, key)
			require.True(t, d.doc.Allows("s3:ListBucket", bucket, map[string]string{"s3:prefix": key}),
				"%s gets 403, not 404, for a missing %s", name, key)
		}
		for _, other := range []string{"secrets/x", "", "inputsx/y"} {
			require.False(t, d.doc.Allows("s3:ListBucket", bucket, map[string]string{"s3:prefix": other}), "%s may list %q", name, other)
		}
		require.False(t, d.doc.Allows("s3:ListBucket", bucket, nil), "%s lists the whole bucket", name)

		// Without the statement a missing key reads as AccessDenied.
		without := d.doc.Without("KnowMissingKeys").Without("ListOutcomes")
		require.False(t, without.Allows("s3:ListBucket", bucket, map[string]string{"s3:prefix": d.reads[0] + "x"}), name)
	}
}

func TestWorkerWritesOnlyItsOutputs(t *testing.T) {
	t.Parallel()
	w := docs()["worker"].doc
	for _, p := range []string{job.ResultsPrefix, job.StatusPrefix, job.ErrorsPrefix, job.CheckpointPrefix} {
		require.True(t, w.Allows("s3:PutObject", bucket+"/"+p+"j/x", nil), p)
	}
	for _, p := range []string{job.InputPrefix, job.ModelsPrefix} {
		require.False(t, w.Allows("s3:PutObject", bucket+"/"+p+"x", nil), p)
	}
	// The calibration searches are shared: read and added to, never deleted.
	calib := bucket + "/" + job.CalibrationKey("0123abcd")
	require.True(t, w.Allows("s3:GetObject", calib, nil))
	require.True(t, w.Allows("s3:PutObject", calib, nil))
	require.False(t, w.Allows("s3:DeleteObject", calib, nil))
	require.False(t, w.Without("ShareCalibrations").Allows("s3:PutObject", calib, nil), "only ShareCalibrations grants it")
	require.True(t, w.Allows("ecs:UpdateTaskProtection", "arn:aws:ecs:us-east-1:123456789012:task/inferstack-cpu/abc", nil))
	require.False(t, w.Allows("ecs:UpdateTaskProtection", "arn:aws:ecs:us-east-1:123456789012:task/other/abc", nil))
}

func TestAllows(t *testing.T) {
	t.Parallel()
	d := doc(
		allow("A", []string{"s3:Get*"}, "arn:aws:s3:::b/in/*"),
		Statement{Effect: "Deny", Action: []string{"s3:*"}, Resource: []string{"arn:aws:s3:::b/in/secret"}},
	)
	require.True(t, d.Allows("s3:GetObject", "arn:aws:s3:::b/in/a/b/c", nil), "* crosses slashes")
	require.True(t, d.Allows("S3:getobject", "arn:aws:s3:::b/in/a", nil), "actions are case-insensitive")
	require.False(t, d.Allows("s3:GetObject", "arn:aws:s3:::b/IN/a", nil), "resources are not")
	require.False(t, d.Allows("s3:PutObject", "arn:aws:s3:::b/in/a", nil))
	require.False(t, d.Allows("s3:GetObject", "arn:aws:s3:::b/in/secret", nil), "an explicit deny wins")
	require.False(t, d.Allows("s3:GetObject", "arn:aws:s3:::b/in[x]", nil))
}

func TestClusterScopedARNs(t *testing.T) {
	t.Parallel()
	require.Equal(t, "arn:aws:ecs:us-east-1:123456789012:task/inferstack-cpu/*", taskARNs(cluster))
	require.Equal(t, "arn:aws:ecs:us-east-1:123456789012:container-instance/inferstack-cpu/*", containerInstanceARNs(cluster))
	require.Equal(t, "not-an-arn", taskARNs("not-an-arn"))
	require.Equal(t, "us-east-1", ARNField(cluster, 3))
}

const (
	account   = "123456789012"
	intake    = "arn:aws:sqs:us-east-1:123456789012:inferstack-intake"
	topic     = "arn:aws:sns:us-east-1:123456789012:inferstack-events"
	key       = "arn:aws:kms:us-east-1:123456789012:key/1234abcd"
	dispatchR = "arn:aws:iam::123456789012:role/inferstack-dispatch"
	workerR   = "arn:aws:iam::123456789012:role/inferstack-cpu-task"
)

func TestIntakeFromBucket(t *testing.T) {
	t.Parallel()
	d := IntakeFromBucket(intake, bucket, account)
	from := func(bucketARN, acct string) map[string]string {
		return map[string]string{"aws:SourceArn": bucketARN, "aws:SourceAccount": acct}
	}
	for _, tc := range []struct {
		name, kind, id, action, resource string
		ctx                              map[string]string
		want                             bool
	}{
		{"s3 from the bucket", "Service", "s3.amazonaws.com", "sqs:SendMessage", intake, from(bucket, account), true},
		{"another bucket", "Service", "s3.amazonaws.com", "sqs:SendMessage", intake, from("arn:aws:s3:::other", account), false},
		{"the bucket's name in another account", "Service", "s3.amazonaws.com", "sqs:SendMessage", intake, from(bucket, "210987654321"), false},
		{"no source", "Service", "s3.amazonaws.com", "sqs:SendMessage", intake, nil, false},
		{"another service", "Service", "sns.amazonaws.com", "sqs:SendMessage", intake, from(bucket, account), false},
		{"an account principal", "AWS", "arn:aws:iam::123456789012:root", "sqs:SendMessage", intake, from(bucket, account), false},
		{"another action", "Service", "s3.amazonaws.com", "sqs:ReceiveMessage", intake, from(bucket, account), false},
		{"another queue", "Service", "s3.amazonaws.com", "sqs:SendMessage", intake + "-dlq", from(bucket, account), false},
	} {
		require.Equal(t, tc.want, d.AllowsPrincipal(tc.kind, tc.id, tc.action, tc.resource, tc.ctx), tc.name)
	}
}

func TestEventsTopic(t *testing.T) {
	t.Parallel()
	d := EventsTopic(topic, account, []string{dispatchR, workerR})
	publish := func(role, tls string) bool {
		ctx := map[string]string{"aws:PrincipalArn": role}
		if tls != "" {
			ctx["aws:SecureTransport"] = tls
		}
		return d.AllowsPrincipal("AWS", role, "sns:Publish", topic, ctx)
	}
	require.True(t, publish(dispatchR, "true"))
	require.True(t, publish(workerR, "true"))
	require.False(t, publish(workerR, "false"), "over plain HTTP")
	require.False(t, publish("arn:aws:iam::123456789012:role/other", "true"), "a role of the account not named")
	require.False(t, publish("arn:aws:iam::123456789012:root", "true"), "the account itself")
	require.False(t, d.AllowsPrincipal("AWS", "*", "sns:Publish", topic, map[string]string{"aws:SecureTransport": "true"}), "anyone")

	// The explicit Deny wins over whatever else might allow another role.
	open := d
	open.Statement = append(append([]Statement{}, d.Statement...), Statement{Effect: "Allow", Principal: map[string]any{"AWS": "*"},
		Action: []string{"sns:Publish"}, Resource: []string{topic}})
	require.False(t, open.AllowsPrincipal("AWS", "arn:aws:iam::123456789012:role/other", "sns:Publish", topic,
		map[string]string{"aws:PrincipalArn": "arn:aws:iam::123456789012:role/other", "aws:SecureTransport": "true"}))

	// The account manages and subscribes; the publishers do no more than publish.
	root := "arn:aws:iam::123456789012:root"
	for _, a := range []string{"sns:Subscribe", "sns:SetTopicAttributes", "sns:GetTopicAttributes"} {
		require.True(t, d.AllowsPrincipal("AWS", root, a, topic, nil), a)
		require.False(t, d.AllowsPrincipal("AWS", workerR, a, topic, nil), a)
	}
	require.False(t, d.AllowsPrincipal("AWS", "arn:aws:iam::210987654321:root", "sns:Subscribe", topic, nil), "another account subscribes")
}

func TestEventsKey(t *testing.T) {
	t.Parallel()
	d := EventsKey(account)
	require.True(t, d.AllowsPrincipal("AWS", "arn:aws:iam::123456789012:root", "kms:PutKeyPolicy", "*", nil), "the account manages its key")
	require.False(t, d.AllowsPrincipal("AWS", "arn:aws:iam::210987654321:root", "kms:Decrypt", "*", nil))
	require.False(t, d.AllowsPrincipal("Service", "s3.amazonaws.com", "kms:Decrypt", "*", nil))
}

// The dispatch function and the workers may publish events to the topic,
// with its key, and nowhere else.
func TestPublishersMayPublishEvents(t *testing.T) {
	t.Parallel()
	events := EventsArgs{TopicARN: topic, KeyARN: key}
	for name, d := range map[string]Document{
		"dispatch": Dispatch(DispatchArgs{IntakeQueueARN: intake, BucketARN: bucket, Events: events}),
		"worker":   WorkerTask(WorkerArgs{QueueARN: "arn:aws:sqs:us-east-1:1:cpu", BucketARN: bucket, ClusterARN: cluster, Events: events}),
	} {
		require.True(t, d.Allows("sns:Publish", topic, nil), name)
		require.False(t, d.Allows("sns:Publish", topic+"-other", nil), name)
		require.False(t, d.Allows("sns:Subscribe", topic, nil), name)
		for _, a := range []string{"kms:GenerateDataKey", "kms:Decrypt"} {
			require.True(t, d.Allows(a, key, nil), "%s: %s", name, a)
			require.False(t, d.Allows(a, key+"-other", nil), "%s: %s", name, a)
		}
		require.False(t, d.Allows("kms:Encrypt", key, nil), name)
		require.False(t, d.Without("PublishEvents").Allows("sns:Publish", topic, nil), "%s: only PublishEvents grants it", name)
	}
}
