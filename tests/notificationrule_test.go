package tests

// These tests check, through the real engine, that the mock provider refuses
// a bucket notification to a queue whose policy does not (yet) let S3 send
// from the bucket, as S3 does (tests/mockprovider/s3.go), so that a program
// which creates the two at once fails here as it would on AWS. The real
// program passes the rule in TestDevStackLifecycleThroughTheEngine and
// TestUploadTriggersPassTheS3RuleThroughTheEngine.
//
// Like the ECS rule tests they do not run in parallel: a busy engine could
// start the notification so late that it misses the policy's delay.

import (
	"testing"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sqs"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/policy"
)

// unvalidated is what S3 answers, as the mock words it.
const unvalidated = "InvalidArgument: Unable to validate the following destination configurations"

// notificationProgram is the test program: a bucket, a queue, maybe the
// queue's policy allowing the bucket (withPolicy), and the bucket's
// notification to the queue, waiting for the policy if dependsOn.
func notificationProgram(withPolicy, dependsOn bool) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		bucket, err := s3.NewBucketV2(ctx, "s3rule-bucket", &s3.BucketV2Args{})
		if err != nil {
			return err
		}
		queue, err := sqs.NewQueue(ctx, "s3rule-queue", &sqs.QueueArgs{SqsManagedSseEnabled: pulumi.Bool(true)})
		if err != nil {
			return err
		}
		var opts []pulumi.ResourceOption
		if withPolicy {
			qp, err := sqs.NewQueuePolicy(ctx, "s3rule-queue-policy", &sqs.QueuePolicyArgs{
				QueueUrl: queue.Url,
				Policy: pulumi.All(queue.Arn, bucket.Arn).ApplyT(func(v []any) string {
					return policy.IntakeFromBucket(v[0].(string), v[1].(string), policy.ARNField(v[0].(string), 4)).JSON()
				}).(pulumi.StringOutput),
			})
			if err != nil {
				return err
			}
			if dependsOn {
				opts = append(opts, pulumi.DependsOn([]pulumi.Resource{qp}))
			}
		}
		_, err = s3.NewBucketNotification(ctx, "s3rule-notification", &s3.BucketNotificationArgs{
			Bucket: bucket.ID().ToStringOutput(),
			Queues: s3.BucketNotificationQueueArray{&s3.BucketNotificationQueueArgs{
				QueueArn: queue.Arn, Events: pulumi.StringArray{pulumi.String("s3:ObjectCreated:*")}, FilterPrefix: pulumi.String(job.InputPrefix),
			}},
		}, opts...)
		return err
	}
}

func notificationStack(t *testing.T, prog pulumi.RunFunc) auto.Stack {
	t.Helper()
	e := newEngine(t)
	stack, err := auto.UpsertStackInlineSource(t.Context(), "s3rule", "inferstack", prog, e.opts...)
	require.NoError(t, err)
	require.NoError(t, stack.SetConfig(t.Context(), "aws:region", auto.ConfigValue{Value: "us-east-1"}))
	return stack
}

func TestS3RuleNotificationWithoutQueuePolicyFails(t *testing.T) {
	stack := notificationStack(t, notificationProgram(false, false))
	_, err := stack.Up(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), "putting S3 Bucket Notification Configuration (s3rule-bucket)")
	require.Contains(t, err.Error(), unvalidated)
}

// The policy exists but the notification does not wait for it: the engine
// puts both at once and S3 refuses the notification.
func TestS3RuleNotificationNotAfterQueuePolicyFails(t *testing.T) {
	stack := notificationStack(t, notificationProgram(true, false))
	_, err := stack.Up(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), unvalidated)
}

func TestS3RuleNotificationAfterQueuePolicyUpAndDestroy(t *testing.T) {
	ctx := t.Context()
	stack := notificationStack(t, notificationProgram(true, true))
	_, s := up(t, ctx, stack)
	require.ElementsMatch(t, []string{"s3rule-bucket", "s3rule-queue", "s3rule-queue-policy", "s3rule-notification"}, names(s[apitype.OpCreate]))
	// A second up (a new provider process) puts nothing again.
	_, s = up(t, ctx, stack)
	require.Empty(t, s[apitype.OpCreate])
	require.Empty(t, s[apitype.OpUpdate])
	_, err := stack.Destroy(ctx)
	require.NoError(t, err)
}

// The real program, upload triggers on (the default), goes up through the
// rule; and turning them off, then on again, deletes and recreates the pair.
func TestUploadTriggersPassTheS3RuleThroughTheEngine(t *testing.T) {
	ctx := t.Context()
	stack := devStack(t, ctx)
	_, s := up(t, ctx, stack)
	require.Subset(t, names(s[apitype.OpCreate]), []string{"inferstack-intake-from-bucket", "inferstack-uploads"})

	require.NoError(t, stack.SetConfig(ctx, "inferstack:uploadTriggers", auto.ConfigValue{Value: "false"}))
	_, s = up(t, ctx, stack)
	require.Equal(t, []string{"inferstack-intake-from-bucket", "inferstack-uploads"}, names(s[apitype.OpDelete]))
	require.Empty(t, s[apitype.OpCreate])
	require.Empty(t, s[apitype.OpUpdate])

	require.NoError(t, stack.SetConfig(ctx, "inferstack:uploadTriggers", auto.ConfigValue{Value: "true"}))
	_, s = up(t, ctx, stack)
	require.Equal(t, []string{"inferstack-intake-from-bucket", "inferstack-uploads"}, names(s[apitype.OpCreate]))
}
