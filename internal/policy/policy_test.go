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
