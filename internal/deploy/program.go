package deploy

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/inferstack/inferstack/components"
	"github.com/inferstack/inferstack/internal/scaling"
)

// LoadConfig reads the stack's `pulumi config` into a validated Config.
func LoadConfig(ctx *pulumi.Context) (Config, error) {
	cfg := config.New(ctx, Namespace)
	return FromGetter(ctx.Stack(), func(key string) (string, bool) {
		v, err := cfg.Try(key)
		return v, err == nil
	})
}

// dispatchTimeout bounds one dispatch invocation: a batch of 10 with SDK
// retries takes seconds; Lambda allows up to 900.
const dispatchTimeout = 30

type tierSpec struct {
	name string
	gpu  bool
	cfg  TierConfig
	c    Config
}

func (c Config) tiers() []tierSpec {
	tiers := []tierSpec{{name: "cpu", cfg: c.CPU, c: c}}
	if c.GPUEnabled {
		tiers = append(tiers, tierSpec{name: "gpu", gpu: true, cfg: c.GPU, c: c})
	}
	return tiers
}

func (t tierSpec) args(core *components.Core) *components.ComputeTierArgs {
	root := 30
	if t.gpu {
		root = 60 // the GPU AMI carries the NVIDIA driver and CUDA runtime
	}
	args := &components.ComputeTierArgs{
		Core: core, Tier: t.name, GPU: t.gpu,
		InstanceTypes: t.cfg.InstanceTypes, Spot: t.cfg.Spot, OnDemandBase: t.cfg.OnDemandBase,
		Scaling: scaling.Config{
			MaxTasks: t.cfg.MaxTasks, BacklogPerTask: t.cfg.BacklogPerTask, IdleMinutes: t.cfg.IdleMinutes,
			TasksPerInstance: t.cfg.TasksPerInstance, WarmupSeconds: t.cfg.WarmupSeconds,
		},
		TaskCPU: t.cfg.TaskCPU, TaskMemory: t.cfg.TaskMemory, RootVolumeGiB: root, ImageTag: t.name,
		VisibilitySecs: t.c.VisibilityTimeout, MaxReceives: t.c.MaxReceives, StopTimeout: t.c.StopTimeout,
		BuildImage: t.c.BuildImages, ImageContext: ".", BuildArgs: map[string]string{},
	}
	if t.gpu {
		args.BuildArgs["ORT_GPU_SHA256"] = t.c.ORTGPUSHA256
	}
	return args
}

// Program creates the stack described by cfg and exports what clients need.
func Program(ctx *pulumi.Context, cfg Config) error {
	tags := map[string]string{"inferstack:environment": cfg.Environment, "inferstack:managed-by": "pulumi"}
	core, err := components.NewCore(ctx, "inferstack", &components.CoreArgs{
		Environment: cfg.Environment, Tier: string(cfg.Tier),
		Network: components.NetworkArgs{
			ExistingVpcID: cfg.VpcID, ExistingSubnetIDs: cfg.SubnetIDs,
			AvailabilityZones: cfg.AvailabilityZones, NatGatewayPerAZ: cfg.NatGatewayPerAZ,
		},
		ModelPath: cfg.ModelPath, DispatchZip: cfg.DispatchZip,
		LogRetentionDays: cfg.LogRetentionDays, ForceDestroy: cfg.ForceDestroy,
		InputsExpireDays: cfg.InputsExpireDays, ResultsExpireDays: cfg.ResultsExpireDays,
		AlarmEmail: cfg.AlarmEmail, TierCacheTTL: cfg.TierCacheTTL, AllowTierOverride: cfg.AllowTierOverride,
		AutoGPUMinBytes: cfg.AutoGPUMinBytes, DispatchTimeout: dispatchTimeout, Tags: tags,
	})
	if err != nil {
		return err
	}
	var tiers []*components.ComputeTier
	for _, spec := range cfg.tiers() {
		t, err := components.NewComputeTier(ctx, "inferstack-"+spec.name, spec.args(core))
		if err != nil {
			return err
		}
		tiers = append(tiers, t)
		ctx.Export(spec.name+"QueueUrl", t.Queue.Url)
		ctx.Export(spec.name+"DeadLetterQueueUrl", t.DeadLetter.Url)
	}
	if err := core.Connect(ctx, tiers...); err != nil {
		return err
	}
	ctx.Export("bucket", core.Bucket.Bucket)
	ctx.Export("intakeQueueUrl", core.Intake.Url)
	ctx.Export("intakeDeadLetterQueueUrl", core.IntakeDLQ.Url)
	ctx.Export("tierParameter", core.TierParameter.Name)
	ctx.Export("clusterName", core.Cluster.Name)
	ctx.Export("repositoryUrl", core.Repository.RepositoryUrl)
	ctx.Export("dashboardUrl", pulumi.Sprintf("https://console.aws.amazon.com/cloudwatch/home?region=%s#dashboards:name=%s",
		core.Region(), core.Dashboard.DashboardName))
	return nil
}
