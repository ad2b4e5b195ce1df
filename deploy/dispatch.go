package deploy

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lambda"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/internal/runenv"
)

// DispatchType is the Dispatch component's type token.
const DispatchType = "inferstack:index:Dispatch"

// DispatchArgs configure the Dispatch: the stack's, the function's own
// settings, and the Core and tiers it connects.
type DispatchArgs struct {
	Stack StackArgs
	settings.Dispatch
	Timeout int // seconds (settings.DispatchTimeout; the intake's visibility is six times it)
	Core    *Core
	Tiers   []*ComputeTier // the enabled tiers: a disabled one is simply not passed
}

// Dispatch is what needs the tiers, created after them: the dispatch
// function that routes the intake to their queues, the events topic's
// policy naming every publisher (the function's role and each tier's
// workers'), and the dashboard over the intake and the tiers.
//
// Its resources were the Core's children until the Core stopped being
// built in two phases: they keep their names, and an alias to their old
// parent lets a deployed stack move them under this component instead of
// replacing them (a replaced function would be deleted and created again,
// and its log group with it).
type Dispatch struct {
	pulumi.ResourceState

	Function          *lambda.Function
	Role              *iam.Role // a publisher of job events
	EventsTopicPolicy *sns.TopicPolicy
	Dashboard         *cloudwatch.Dashboard
}

// NewDispatch creates the Dispatch. Its children are named after the Core
// (inferstack-dispatch, inferstack-events-policy, inferstack-dashboard), as
// they were as its children.
func NewDispatch(ctx *pulumi.Context, name string, args *DispatchArgs, opts ...pulumi.ResourceOption) (*Dispatch, error) {
	d := &Dispatch{}
	recorded := pulumi.Map{"environment": pulumi.String(args.Stack.Environment)}
	if err := ctx.RegisterComponentResourceV2(DispatchType, name, recorded, d, opts...); err != nil {
		return nil, err
	}
	core := args.Core
	parent, moved := pulumi.Parent(d), pulumi.Aliases([]pulumi.Alias{{Parent: core}})
	tags := pulumi.ToStringMap(args.Stack.Tags)
	if err := d.function(ctx, core.name+"-dispatch", args, tags, parent, moved); err != nil {
		return nil, err
	}
	publishers := pulumi.StringArray{d.Role.Arn}
	for _, t := range args.Tiers {
		publishers = append(publishers, t.TaskRole.Arn)
	}
	account := core.Intake.Arn.ApplyT(func(arn string) string { return policy.ARNField(arn, 4) }).(pulumi.StringOutput)
	var err error
	d.EventsTopicPolicy, err = sns.NewTopicPolicy(ctx, core.name+"-events-policy", &sns.TopicPolicyArgs{
		Arn: core.EventsTopic.Arn,
		Policy: pulumi.All(core.EventsTopic.Arn, account, publishers).ApplyT(func(v []any) string {
			return policy.EventsTopic(v[0].(string), v[1].(string), v[2].([]string)).JSON()
		}).(pulumi.StringOutput),
	}, parent, moved)
	if err != nil {
		return nil, err
	}
	d.Dashboard, err = cloudwatch.NewDashboard(ctx, core.name+"-dashboard", &cloudwatch.DashboardArgs{
		DashboardName: pulumi.Sprintf("inferstack-%s", args.Stack.Environment),
		DashboardBody: dashboardBody(core, args.Tiers),
	}, parent, moved)
	if err != nil {
		return nil, err
	}
	if err := ctx.RegisterResourceOutputs(d, pulumi.Map{
		"function":  d.Function.Name,
		"dashboard": d.Dashboard.DashboardName,
	}); err != nil {
		return nil, err
	}
	return d, nil
}

// function creates the dispatch function, its log group, role and policy,
// and the intake queue's event source mapping.
func (d *Dispatch) function(ctx *pulumi.Context, name string, args *DispatchArgs, tags pulumi.StringMap, opts ...pulumi.ResourceOption) error {
	core := args.Core
	queueURL := map[string]pulumi.StringOutput{}
	var queueARNs pulumi.StringArray
	for _, t := range args.Tiers {
		queueURL[t.Tier] = t.Queue.Url
		queueARNs = append(queueARNs, t.Queue.Arn)
	}
	logs, err := cloudwatch.NewLogGroup(ctx, name+"-logs", &cloudwatch.LogGroupArgs{
		Name: pulumi.Sprintf("/inferstack/%s/dispatch", args.Stack.Environment), RetentionInDays: pulumi.Int(args.Stack.LogRetentionDays), Tags: tags,
	}, opts...)
	if err != nil {
		return err
	}
	d.Role, err = iam.NewRole(ctx, name+"-role", &iam.RoleArgs{AssumeRolePolicy: pulumi.String(policy.AssumeRole("lambda.amazonaws.com").JSON()), Tags: tags}, opts...)
	if err != nil {
		return err
	}
	doc := pulumi.All(core.Intake.Arn, core.IntakeDLQ.Arn, queueARNs, core.TierParameter.Arn, core.Bucket.Arn, logs.Arn,
		core.EventsTopic.Arn, core.EventsKey.Arn).ApplyT(func(v []any) string {
		return policy.Dispatch(policy.DispatchArgs{
			IntakeQueueARN: v[0].(string), DeadLetterARN: v[1].(string), TierQueueARNs: v[2].([]string),
			TierParameterARN: v[3].(string), BucketARN: v[4].(string), LogGroupARN: v[5].(string),
			Events: policy.EventsArgs{TopicARN: v[6].(string), KeyARN: v[7].(string)},
		}).JSON()
	}).(pulumi.StringOutput)
	rolePolicy, err := iam.NewRolePolicy(ctx, name+"-policy", &iam.RolePolicyArgs{Role: d.Role.ID(), Policy: doc}, opts...)
	if err != nil {
		return err
	}
	gpuQueueURL := pulumi.String("").ToStringOutput() // a disabled gpu tier: no queue
	if url, ok := queueURL[string(job.TierGPU)]; ok {
		gpuQueueURL = url
	}
	env := pulumi.All(core.Bucket.Bucket, core.TierParameter.Name, queueURL[string(job.TierCPU)], gpuQueueURL, core.IntakeDLQ.Url,
		core.EventsTopic.Arn).ApplyT(func(v []any) map[string]string {
		return runenv.Dispatch{
			Bucket: v[0].(string), InputPrefix: job.InputPrefix, TierParameter: v[1].(string), TierCacheTTL: args.TierCacheTTL,
			CPUQueueURL: v[2].(string), GPUQueueURL: v[3].(string), DeadLetterURL: v[4].(string),
			AutoGPUMin: args.AutoGPUMinBytes, AllowOverride: args.AllowTierOverride, EventsTopicARN: v[5].(string),
			Keep: args.Keep,
		}.Env()
	}).(pulumi.StringMapOutput)
	d.Function, err = lambda.NewFunction(ctx, name, &lambda.FunctionArgs{
		Runtime:       pulumi.String("provided.al2023"),
		Architectures: pulumi.StringArray{pulumi.String("arm64")},
		Handler:       pulumi.String("bootstrap"),
		Code:          pulumi.NewFileArchive(args.DispatchZip),
		Role:          d.Role.Arn,
		Timeout:       pulumi.Int(args.Timeout),
		MemorySize:    pulumi.Int(256),
		Environment:   &lambda.FunctionEnvironmentArgs{Variables: env},
		LoggingConfig: &lambda.FunctionLoggingConfigArgs{LogFormat: pulumi.String("JSON"), LogGroup: logs.Name},
		Tags:          tags,
	}, append(opts, pulumi.DependsOn([]pulumi.Resource{rolePolicy}))...)
	if err != nil {
		return err
	}
	_, err = lambda.NewEventSourceMapping(ctx, name+"-intake", &lambda.EventSourceMappingArgs{
		EventSourceArn:        core.Intake.Arn,
		FunctionName:          d.Function.Arn,
		BatchSize:             pulumi.Int(10),
		FunctionResponseTypes: pulumi.StringArray{pulumi.String("ReportBatchItemFailures")},
	}, opts...)
	return err
}
