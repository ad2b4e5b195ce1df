// Package deploy is the Pulumi program: it reads `pulumi config` once into
// validated settings (package deploy/settings) and composes the stack from
// them: the Core (network, bucket, intake, image repository, observability),
// a ComputeTier per enabled tier (queue, cluster, instances, capacity
// provider, service, autoscaling), then the dispatch function that routes
// intake to the tiers. main.go and the tests both drive it.
package deploy

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/inferstack/inferstack/deploy/settings"
)

// Config is the stack's settings (package settings).
type Config = settings.Config

// LoadConfig reads the stack's `pulumi config` into a validated Config.
func LoadConfig(ctx *pulumi.Context) (Config, error) {
	cfg := config.New(ctx, settings.Namespace)
	return settings.FromGetter(ctx.Stack(), func(key string) (string, bool) {
		v, err := cfg.Try(key)
		return v, err == nil
	})
}

// tierArgs are a tier's component args from its settings.
func tierArgs(c Config, t settings.Tier, core *Core) *ComputeTierArgs {
	root := 30
	if t.GPU {
		root = 60 // the GPU AMI carries the NVIDIA driver and CUDA runtime
	}
	args := &ComputeTierArgs{
		Core: core, Tier: t.Name, GPU: t.GPU,
		InstanceTypes: t.InstanceTypes, Spot: t.Spot, OnDemandBase: t.OnDemandBase,
		Scaling: t.Scaling(), TaskCPU: t.TaskCPU, TaskMemory: t.TaskMemory, RootVolumeGiB: root,
		VisibilitySecs: c.VisibilityTimeout, MaxReceives: c.MaxReceives, RetentionSecs: c.QueueRetentionDays * 24 * 3600,
		StopTimeout: c.StopTimeout, BuildImage: c.BuildImages, ImageContext: ".", Image: t.Image,
	}
	return args
}

// Program creates the stack described by cfg and exports what clients need.
func Program(ctx *pulumi.Context, cfg Config) error {
	tags := map[string]string{"inferstack:environment": cfg.Environment, "inferstack:managed-by": "pulumi"}
	core, err := NewCore(ctx, "inferstack", &CoreArgs{
		Environment: cfg.Environment, Tier: string(cfg.Tier),
		Network: NetworkArgs{
			ExistingVpcID: cfg.VpcID, ExistingSubnetIDs: cfg.SubnetIDs,
			AvailabilityZones: cfg.AvailabilityZones, NatGatewayPerAZ: cfg.NatGatewayPerAZ,
		},
		ModelPath: cfg.ModelPath, DispatchZip: cfg.DispatchZip,
		LogRetentionDays: cfg.LogRetentionDays, ForceDestroy: cfg.ForceDestroy,
		InputsExpireDays: cfg.InputsExpireDays, ResultsExpireDays: cfg.ResultsExpireDays,
		AlarmEmail: cfg.AlarmEmail, UploadTriggers: cfg.UploadTriggers, EventsSubscription: cfg.EventsSubscription,
		TierCacheTTL: cfg.TierCacheTTL, AllowTierOverride: cfg.AllowTierOverride,
		AutoGPUMinBytes: cfg.AutoGPUMinBytes, Keep: cfg.Keep, DispatchTimeout: settings.DispatchTimeout, Tags: tags,
	})
	if err != nil {
		return err
	}
	var tiers []*ComputeTier
	for _, spec := range cfg.Tiers() {
		t, err := NewComputeTier(ctx, "inferstack-"+spec.Name, tierArgs(cfg, spec, core))
		if err != nil {
			return err
		}
		tiers = append(tiers, t)
		ctx.Export(spec.Name+"QueueUrl", t.Queue.Url)
		ctx.Export(spec.Name+"DeadLetterQueueUrl", t.DeadLetter.Url)
		ctx.Export(spec.Name+"ClusterName", t.Cluster.Name)
	}
	if err := core.Connect(ctx, tiers...); err != nil {
		return err
	}
	ctx.Export("bucket", core.Bucket.Bucket)
	ctx.Export("intakeQueueUrl", core.Intake.Url)
	ctx.Export("intakeDeadLetterQueueUrl", core.IntakeDLQ.Url)
	ctx.Export("tierParameter", core.TierParameter.Name)
	ctx.Export("eventsTopic", core.EventsTopic.Arn)
	ctx.Export("repositoryUrl", core.Repository.RepositoryUrl)
	ctx.Export("dashboardUrl", pulumi.Sprintf("https://console.aws.amazon.com/cloudwatch/home?region=%s#dashboards:name=%s",
		core.Region(), core.Dashboard.DashboardName))
	return nil
}
