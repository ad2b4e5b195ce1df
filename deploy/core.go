package deploy

import (
	"path/filepath"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecr"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sqs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ssm"
	awsxec2 "github.com/pulumi/pulumi-awsx/sdk/v2/go/awsx/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/policy"
)

// CoreType is the Core component's type token.
const CoreType = "inferstack:index:Core"

// StackArgs are what every component shares: the environment it deploys,
// the tags on everything it creates, and how long its logs are kept.
type StackArgs struct {
	Environment      string
	Tags             map[string]string
	LogRetentionDays int
}

// CoreArgs configure the Core: the stack's, the Core's own settings, and
// its queues as settings defines them (the local stack creates the same).
type CoreArgs struct {
	Stack StackArgs
	settings.Core
	// Intake is the queue the dispatch function reads, IntakeDeadLetter its
	// dead-letter queue (settings.IntakeQueue, settings.IntakeDeadLetterQueue).
	Intake, IntakeDeadLetter settings.Queue
}

// Core is the shared half of a stack: everything but the compute tiers and
// the dispatch function that routes to them (see Dispatch). Each tier has a
// cluster of its own (see ComputeTier), so that its service can depend on
// its cluster's capacity provider association and a tier can be removed
// without touching another's.
type Core struct {
	pulumi.ResourceState

	VpcID            pulumi.StringOutput
	PrivateSubnetIDs pulumi.StringArrayOutput
	Bucket           *s3.BucketV2
	ModelKey         string
	Intake           *sqs.Queue
	IntakeDLQ        *sqs.Queue
	TierParameter    *ssm.Parameter
	Repository       *ecr.Repository
	AlarmTopic       *sns.Topic
	EventsKey        *kms.Key
	EventsTopic      *sns.Topic // job events: finished, failed, refused; its policy comes with Dispatch
	// IntakePolicy and Uploads exist with UploadTriggers only.
	IntakePolicy *sqs.QueuePolicy
	Uploads      *s3.BucketNotification

	name string
	args CoreArgs
}

// NewCore creates the Core.
func NewCore(ctx *pulumi.Context, name string, args *CoreArgs, opts ...pulumi.ResourceOption) (*Core, error) {
	c := &Core{name: name, args: *args}
	// The tier is left out of the recorded inputs: switching it must change
	// only the parameter, not show the Core itself as updated.
	recorded := pulumi.Map{"environment": pulumi.String(args.Stack.Environment), "modelPath": pulumi.String(args.ModelPath)}
	if err := ctx.RegisterComponentResourceV2(CoreType, name, recorded, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	tags := pulumi.ToStringMap(args.Stack.Tags)
	var err error

	if err := c.network(ctx, parent, tags); err != nil {
		return nil, err
	}
	if err := c.storage(ctx, parent, tags); err != nil {
		return nil, err
	}
	if err := c.queues(ctx, parent, tags); err != nil {
		return nil, err
	}
	c.TierParameter, err = ssm.NewParameter(ctx, name+"-tier", &ssm.ParameterArgs{
		Name:        pulumi.String(job.TierParameterName(args.Stack.Environment)),
		Type:        pulumi.String("String"),
		Value:       pulumi.String(string(args.Tier)),
		Description: pulumi.String("active inferstack tier: cpu, gpu or auto (set with pulumi config set inferstack:tier)"),
		Tags:        tags,
	}, parent)
	if err != nil {
		return nil, err
	}
	c.Repository, err = ecr.NewRepository(ctx, name+"-worker", &ecr.RepositoryArgs{
		ImageTagMutability:         pulumi.String("MUTABLE"),
		ImageScanningConfiguration: &ecr.RepositoryImageScanningConfigurationArgs{ScanOnPush: pulumi.Bool(true)},
		EncryptionConfigurations:   ecr.RepositoryEncryptionConfigurationArray{&ecr.RepositoryEncryptionConfigurationArgs{EncryptionType: pulumi.String("AES256")}},
		ForceDelete:                pulumi.Bool(args.ForceDestroy),
		Tags:                       tags,
	}, parent)
	if err != nil {
		return nil, err
	}
	account := c.Intake.Arn.ApplyT(func(arn string) string { return policy.ARNField(arn, 4) }).(pulumi.StringOutput)
	alarmKey, err := kms.NewKey(ctx, name+"-alarms-key", &kms.KeyArgs{
		Description:       pulumi.Sprintf("inferstack %s alarm topic", args.Stack.Environment),
		EnableKeyRotation: pulumi.Bool(true),
		Policy:            account.ApplyT(func(a string) string { return policy.AlarmKey(a).JSON() }).(pulumi.StringOutput),
		Tags:              tags,
	}, parent)
	if err != nil {
		return nil, err
	}
	c.AlarmTopic, err = sns.NewTopic(ctx, name+"-alarms", &sns.TopicArgs{
		KmsMasterKeyId: alarmKey.Arn,
		Tags:           tags,
	}, parent)
	if err != nil {
		return nil, err
	}
	if _, err := sns.NewTopicPolicy(ctx, name+"-alarms-policy", &sns.TopicPolicyArgs{
		Arn: c.AlarmTopic.Arn,
		Policy: pulumi.All(c.AlarmTopic.Arn, account).ApplyT(func(v []any) string {
			return policy.AlarmTopic(v[0].(string), v[1].(string), launchFailureRulePrefix(args.Stack.Environment)).JSON()
		}).(pulumi.StringOutput),
	}, parent); err != nil {
		return nil, err
	}
	if args.AlarmEmail != "" {
		if _, err := sns.NewTopicSubscription(ctx, name+"-alarms-email", &sns.TopicSubscriptionArgs{
			Topic: c.AlarmTopic.Arn, Protocol: pulumi.String("email"), Endpoint: pulumi.String(args.AlarmEmail),
		}, parent); err != nil {
			return nil, err
		}
	}
	if _, err := dlqAlarm(ctx, name+"-intake-dlq-alarm", c.IntakeDLQ, c.AlarmTopic, tags, parent); err != nil {
		return nil, err
	}
	if err := c.events(ctx, parent, tags, account); err != nil {
		return nil, err
	}
	if args.UploadTriggers {
		if err := c.uploadTriggers(ctx, parent, account); err != nil {
			return nil, err
		}
	}
	if err := ctx.RegisterResourceOutputs(c, pulumi.Map{
		"bucket":        c.Bucket.Bucket,
		"intakeQueue":   c.Intake.Url,
		"tierParameter": c.TierParameter.Name,
		"eventsTopic":   c.EventsTopic.Arn,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// events creates the job events topic, encrypted with a key of its own, and
// its optional subscription. Its policy waits for the publishers' roles
// (Dispatch).
func (c *Core) events(ctx *pulumi.Context, parent pulumi.ResourceOption, tags pulumi.StringMap, account pulumi.StringOutput) error {
	name := c.name + "-events"
	var err error
	c.EventsKey, err = kms.NewKey(ctx, name+"-key", &kms.KeyArgs{
		Description:       pulumi.Sprintf("inferstack %s job events topic", c.args.Stack.Environment),
		EnableKeyRotation: pulumi.Bool(true),
		Policy:            account.ApplyT(func(a string) string { return policy.EventsKey(a).JSON() }).(pulumi.StringOutput),
		Tags:              tags,
	}, parent)
	if err != nil {
		return err
	}
	c.EventsTopic, err = sns.NewTopic(ctx, name, &sns.TopicArgs{KmsMasterKeyId: c.EventsKey.Arn, Tags: tags}, parent)
	if err != nil {
		return err
	}
	subscriber := c.args.EventsSubscription
	if subscriber.Endpoint == "" {
		return nil
	}
	sub := &sns.TopicSubscriptionArgs{Topic: c.EventsTopic.Arn, Protocol: pulumi.String(subscriber.Protocol), Endpoint: pulumi.String(subscriber.Endpoint)}
	if subscriber.Protocol == "sqs" {
		// The subscriber queue is not this stack's: its own policy must let
		// sns.amazonaws.com send to it with aws:SourceArn this topic (and a
		// queue encrypted with a customer managed key must let SNS use the
		// key), or SNS delivers nothing. Raw delivery stays off: the body is
		// then SNS's JSON envelope, with TopicArn, MessageId, Timestamp and
		// the MessageAttributes (state, tier) subscribers filter and route
		// on, the same document an email subscriber reads. Raw delivery
		// would move the attributes into SQS message attributes, which a
		// receiver only gets by asking for them by name.
		sub.RawMessageDelivery = pulumi.Bool(false)
	}
	_, err = sns.NewTopicSubscription(ctx, name+"-subscription", sub, parent)
	return err
}

// uploadTriggers makes an object created under job.InputPrefix start a job:
// the bucket notifies the intake queue, which the queue's policy allows.
func (c *Core) uploadTriggers(ctx *pulumi.Context, parent pulumi.ResourceOption, account pulumi.StringOutput) error {
	var err error
	c.IntakePolicy, err = sqs.NewQueuePolicy(ctx, c.name+"-intake-from-bucket", &sqs.QueuePolicyArgs{
		QueueUrl: c.Intake.Url,
		Policy: pulumi.All(c.Intake.Arn, c.Bucket.Arn, account).ApplyT(func(v []any) string {
			return policy.IntakeFromBucket(v[0].(string), v[1].(string), v[2].(string)).JSON()
		}).(pulumi.StringOutput),
	}, parent)
	if err != nil {
		return err
	}
	// The intake queue is encrypted with SSE-SQS, which S3 can send to; a
	// customer managed key would need a key policy for s3.amazonaws.com.
	//
	// S3 checks that it may send to the destination when the configuration
	// is put, and refuses it otherwise ("Unable to validate the following
	// destination configurations"; S3 user guide, "Granting permissions to
	// publish event notification messages to a destination"): the
	// notification waits for the queue policy.
	c.Uploads, err = s3.NewBucketNotification(ctx, c.name+"-uploads", &s3.BucketNotificationArgs{
		Bucket: c.Bucket.ID().ToStringOutput(),
		Queues: s3.BucketNotificationQueueArray{&s3.BucketNotificationQueueArgs{
			QueueArn:     c.Intake.Arn,
			Events:       pulumi.StringArray{pulumi.String("s3:ObjectCreated:*")},
			FilterPrefix: pulumi.String(job.InputPrefix),
		}},
	}, parent, pulumi.DependsOn([]pulumi.Resource{c.IntakePolicy}))
	return err
}

func (c *Core) network(ctx *pulumi.Context, parent pulumi.ResourceOption, tags pulumi.StringMap) error {
	n := c.args.Core
	if n.VpcID != "" {
		c.VpcID = pulumi.String(n.VpcID).ToStringOutput()
		c.PrivateSubnetIDs = pulumi.ToStringArray(n.SubnetIDs).ToStringArrayOutput()
		return nil
	}
	strategy := awsxec2.NatGatewayStrategySingle
	if n.NatGatewayPerAZ {
		strategy = awsxec2.NatGatewayStrategyOnePerAz
	}
	azs := n.AvailabilityZones
	vpc, err := awsxec2.NewVpc(ctx, c.name+"-vpc", &awsxec2.VpcArgs{
		NumberOfAvailabilityZones: &azs,
		NatGateways:               &awsxec2.NatGatewayConfigurationArgs{Strategy: strategy},
		EnableDnsHostnames:        pulumi.Bool(true),
		Tags:                      tags,
	}, parent)
	if err != nil {
		return err
	}
	c.VpcID, c.PrivateSubnetIDs = vpc.VpcId, vpc.PrivateSubnetIds
	return nil
}

func (c *Core) storage(ctx *pulumi.Context, parent pulumi.ResourceOption, tags pulumi.StringMap) error {
	name := c.name
	var err error
	c.Bucket, err = s3.NewBucketV2(ctx, name+"-bucket", &s3.BucketV2Args{ForceDestroy: pulumi.Bool(c.args.ForceDestroy), Tags: tags}, parent)
	if err != nil {
		return err
	}
	bucket := c.Bucket.ID().ToStringOutput()
	if _, err := s3.NewBucketPublicAccessBlock(ctx, name+"-bucket-public-access", &s3.BucketPublicAccessBlockArgs{
		Bucket: bucket, BlockPublicAcls: pulumi.Bool(true), BlockPublicPolicy: pulumi.Bool(true),
		IgnorePublicAcls: pulumi.Bool(true), RestrictPublicBuckets: pulumi.Bool(true),
	}, parent); err != nil {
		return err
	}
	if _, err := s3.NewBucketOwnershipControls(ctx, name+"-bucket-ownership", &s3.BucketOwnershipControlsArgs{
		Bucket: bucket, Rule: &s3.BucketOwnershipControlsRuleArgs{ObjectOwnership: pulumi.String("BucketOwnerEnforced")},
	}, parent); err != nil {
		return err
	}
	if _, err := s3.NewBucketServerSideEncryptionConfigurationV2(ctx, name+"-bucket-encryption", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: bucket,
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{&s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: &s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{SseAlgorithm: pulumi.String("aws:kms")},
			BucketKeyEnabled:                   pulumi.Bool(true),
		}},
	}, parent); err != nil {
		return err
	}
	if _, err := s3.NewBucketPolicy(ctx, name+"-bucket-tls-only", &s3.BucketPolicyArgs{
		Bucket: bucket,
		Policy: c.Bucket.Arn.ApplyT(func(arn string) string { return policy.BucketTLSOnly(arn).JSON() }).(pulumi.StringOutput),
	}, parent); err != nil {
		return err
	}
	expire := func(id, prefix string, days int) *s3.BucketLifecycleConfigurationV2RuleArgs {
		return &s3.BucketLifecycleConfigurationV2RuleArgs{
			Id: pulumi.String(id), Status: pulumi.String("Enabled"),
			Filter:                         &s3.BucketLifecycleConfigurationV2RuleFilterArgs{Prefix: pulumi.String(prefix)},
			Expiration:                     &s3.BucketLifecycleConfigurationV2RuleExpirationArgs{Days: pulumi.Int(days)},
			AbortIncompleteMultipartUpload: &s3.BucketLifecycleConfigurationV2RuleAbortIncompleteMultipartUploadArgs{DaysAfterInitiation: pulumi.Int(1)},
		}
	}
	if _, err := s3.NewBucketLifecycleConfigurationV2(ctx, name+"-bucket-lifecycle", &s3.BucketLifecycleConfigurationV2Args{
		Bucket: bucket,
		Rules: s3.BucketLifecycleConfigurationV2RuleArray{
			expire("expire-inputs", job.InputPrefix, c.args.InputsExpireDays),
			expire("expire-results", job.ResultsPrefix, c.args.ResultsExpireDays),
			expire("expire-status", job.StatusPrefix, c.args.ResultsExpireDays),
			expire("expire-errors", job.ErrorsPrefix, c.args.ResultsExpireDays),
			expire("expire-checkpoints", job.CheckpointPrefix, max(1, c.args.InputsExpireDays)),
			// No rule for job.CalibrationPrefix: a completed search is
			// never written again, so an expiry counted from its last write
			// would drop the searches in daily use and send the next burst
			// searching afresh. Its objects are a few KiB each, one per
			// model, input shape, setting and hardware the stack has run.
		},
	}, parent); err != nil {
		return err
	}
	c.ModelKey = job.ModelKey(filepath.Base(c.args.ModelPath))
	_, err = s3.NewBucketObjectv2(ctx, name+"-model", &s3.BucketObjectv2Args{
		Bucket: bucket, Key: pulumi.String(c.ModelKey), Source: pulumi.NewFileAsset(c.args.ModelPath),
		ServerSideEncryption: pulumi.String("aws:kms"), Tags: tags,
	}, parent)
	return err
}

func (c *Core) queues(ctx *pulumi.Context, parent pulumi.ResourceOption, tags pulumi.StringMap) error {
	var err error
	if c.IntakeDLQ, err = newQueue(ctx, c.args.IntakeDeadLetter, nil, tags, parent); err != nil {
		return err
	}
	c.Intake, err = newQueue(ctx, c.args.Intake, c.IntakeDLQ, tags, parent)
	return err
}

// newQueue creates queue q as settings defines it, named q.Name and
// encrypted with SSE-SQS: a dead-letter queue when dlq is nil, otherwise a
// queue whose messages go to dlq after q.MaxReceives deliveries.
func newQueue(ctx *pulumi.Context, q settings.Queue, dlq *sqs.Queue, tags pulumi.StringMap, parent pulumi.ResourceOption) (*sqs.Queue, error) {
	args := &sqs.QueueArgs{SqsManagedSseEnabled: pulumi.Bool(true), MessageRetentionSeconds: pulumi.Int(q.RetentionSeconds), Tags: tags}
	if dlq != nil {
		args.VisibilityTimeoutSeconds = pulumi.Int(q.VisibilitySeconds)
		args.RedrivePolicy = dlq.Arn.ApplyT(func(arn string) string { return job.RedrivePolicy(arn, q.MaxReceives) }).(pulumi.StringOutput)
	}
	if q.WaitSeconds > 0 {
		args.ReceiveWaitTimeSeconds = pulumi.Int(q.WaitSeconds)
	}
	return sqs.NewQueue(ctx, q.Name, args, parent)
}

// dlqAlarm alarms as soon as a dead-letter queue holds a message.
func dlqAlarm(ctx *pulumi.Context, name string, dlq *sqs.Queue, topic *sns.Topic, tags pulumi.StringMap, parent pulumi.ResourceOption) (*cloudwatch.MetricAlarm, error) {
	return cloudwatch.NewMetricAlarm(ctx, name, &cloudwatch.MetricAlarmArgs{
		AlarmDescription:   pulumi.String("a message was dead-lettered: read its reason attribute and the errors/ record"),
		Namespace:          pulumi.String("AWS/SQS"),
		MetricName:         pulumi.String("ApproximateNumberOfMessagesVisible"),
		Dimensions:         pulumi.StringMap{"QueueName": dlq.Name},
		Statistic:          pulumi.String("Maximum"),
		Period:             pulumi.Int(60),
		EvaluationPeriods:  pulumi.Int(1),
		Threshold:          pulumi.Float64(1),
		ComparisonOperator: pulumi.String("GreaterThanOrEqualToThreshold"),
		TreatMissingData:   pulumi.String("notBreaching"),
		AlarmActions:       pulumi.Array{topic.Arn},
		OkActions:          pulumi.Array{topic.Arn},
		Tags:               tags,
	}, parent)
}

// Region is the stack's region, read off one of its ARNs.
func (c *Core) Region() pulumi.StringOutput {
	return c.Intake.Arn.ApplyT(func(arn string) string { return policy.ARNField(arn, 3) }).(pulumi.StringOutput)
}
