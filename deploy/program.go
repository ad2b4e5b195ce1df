// Package deploy is the Pulumi program: it reads `pulumi config` once into
// validated settings (package deploy/settings) and composes the stack from
// them: the Core (network, bucket, intake, image repository, alarms, events
// topic), a ComputeTier per enabled tier (queue, cluster, instances,
// capacity provider, service, autoscaling), then the Dispatch (the function
// routing the intake to the tiers, the events topic's policy, the
// dashboard). Components take typed args only. main.go and the tests both
// drive it.
package deploy

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/inferstack/inferstack/deploy/settings"
)

// ParseConfig reads the stack's `pulumi config` into validated settings.
// (`pulumi up` itself refuses a key Pulumi.yaml does not declare.)
func ParseConfig(ctx *pulumi.Context) (settings.Config, error) {
	cfg := config.New(ctx, settings.Namespace)
	values := map[string]string{}
	for _, k := range settings.Keys {
		if v, err := cfg.Try(k.Name); err == nil {
			values[k.Name] = v
		}
	}
	return settings.Parse(ctx.Stack(), values)
}

// rootVolumeGiB is a tier's instance root volume.
func rootVolumeGiB(gpu bool) int {
	if gpu {
		return 60 // the GPU AMI carries the NVIDIA driver and CUDA runtime
	}
	return 30
}

// Program creates the stack described by cfg (from settings.Parse) and
// exports what clients need.
func Program(ctx *pulumi.Context, cfg settings.Config) error {
	stack := StackArgs{
		Environment:      cfg.Environment,
		Tags:             map[string]string{"inferstack:environment": cfg.Environment, "inferstack:managed-by": "pulumi"},
		LogRetentionDays: cfg.LogRetentionDays,
	}
	core, err := NewCore(ctx, "inferstack", &CoreArgs{Stack: stack, Core: cfg.Core,
		Intake: settings.IntakeQueue(), IntakeDeadLetter: settings.IntakeDeadLetterQueue()})
	if err != nil {
		return err
	}
	var tiers []*ComputeTier
	for _, spec := range cfg.Tiers() {
		t, err := NewComputeTier(ctx, "inferstack-"+spec.Name, &ComputeTierArgs{
			Stack: stack, Core: core, Tier: spec, Workers: cfg.Workers,
			Queue: cfg.TierQueue(spec.Name), DeadLetter: settings.TierDeadLetterQueue(spec.Name),
			RootVolumeGiB: rootVolumeGiB(spec.GPU), ImageContext: ".",
		})
		if err != nil {
			return err
		}
		tiers = append(tiers, t)
		ctx.Export(spec.Name+"QueueUrl", t.Queue.Url)
		ctx.Export(spec.Name+"DeadLetterQueueUrl", t.DeadLetter.Url)
		ctx.Export(spec.Name+"ClusterName", t.Cluster.Name)
	}
	dispatch, err := NewDispatch(ctx, "inferstack-dispatcher", &DispatchArgs{Stack: stack, Dispatch: cfg.Dispatch,
		Timeout: settings.DispatchTimeout, Core: core, Tiers: tiers})
	if err != nil {
		return err
	}
	ctx.Export("bucket", core.Bucket.Bucket)
	ctx.Export("intakeQueueUrl", core.Intake.Url)
	ctx.Export("intakeDeadLetterQueueUrl", core.IntakeDLQ.Url)
	ctx.Export("tierParameter", core.TierParameter.Name)
	ctx.Export("eventsTopic", core.EventsTopic.Arn)
	ctx.Export("repositoryUrl", core.Repository.RepositoryUrl)
	ctx.Export("dashboardUrl", pulumi.Sprintf("https://console.aws.amazon.com/cloudwatch/home?region=%s#dashboards:name=%s",
		core.Region(), dispatch.Dashboard.DashboardName))
	return nil
}
