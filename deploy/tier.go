package deploy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/appautoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/autoscaling"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ecs"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sqs"
	awsxecr "github.com/pulumi/pulumi-awsx/sdk/v2/go/awsx/ecr"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/internal/scaling"
)

// ComputeTierType is the ComputeTier component's type token.
const ComputeTierType = "inferstack:index:ComputeTier"

// AMI parameters AWS publishes for the ECS-optimized Amazon Linux 2023 AMIs
// (Amazon ECS developer guide, "Retrieving Amazon ECS-optimized Linux AMI
// metadata"). The launch template resolves them at every launch
// ("resolve:ssm:"), so instances always start from the current recommended
// AMI, never from one picked by a name filter.
const (
	CPUAMIParameter = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
	GPUAMIParameter = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
)

// ComputeTierArgs configure one tier: the stack's, the tier's own settings
// and those every tier shares, and its queues as settings defines them (the
// local stack creates the same).
type ComputeTierArgs struct {
	Stack StackArgs
	// Core is the stack's Core; the tier uses its outputs: network, bucket,
	// model key, repository, alarm and events topics.
	Core *Core
	// Tier names the tier (cpu or gpu: names, env and the worker's device),
	// says whether it runs on GPUs (AMI, resource requirement, device auto),
	// and holds its instances, scaling, task size and image.
	settings.Tier
	// Workers are the settings every tier shares: visibility, receives,
	// stop timeout, and whether to build the image. With BuildImages the
	// tier builds images/<tier>.Dockerfile from ImageContext, pushes it to
	// the Core's repository (needs Docker where Pulumi runs) and runs it by
	// digest; otherwise it runs Image, an ECR image by digest. Either way
	// the task definition names what was pushed, never a tag.
	settings.Workers
	// Queue is the tier's queue, DeadLetter its dead-letter queue
	// (settings.Workers.TierQueue, settings.TierDeadLetterQueue).
	Queue, DeadLetter settings.Queue
	RootVolumeGiB     int
	ImageContext      string
}

// ComputeTier is one autoscaled tier: its queue, its cluster with the
// instances' capacity provider, and the worker service.
//
// ECS refuses a service whose capacity provider strategy names a provider
// not yet associated with its cluster, and refuses to take a provider off a
// cluster while a service uses it (ECS API reference, CreateService and
// PutClusterCapacityProviders). So the service depends on the association,
// and both live in the tier: a first `pulumi up` creates provider, then
// association, then service; `destroy` (or disabling the tier) deletes them
// in reverse. One association per cluster (it replaces the cluster's whole
// list) is why each tier has a cluster of its own.
type ComputeTier struct {
	pulumi.ResourceState

	Tier             string
	Policy           scaling.Policy
	Queue            *sqs.Queue
	DeadLetter       *sqs.Queue
	Cluster          *ecs.Cluster
	LaunchTemplate   *ec2.LaunchTemplate
	Group            *autoscaling.Group
	CapacityProvider *ecs.CapacityProvider
	Association      *ecs.ClusterCapacityProviders
	TaskRole         *iam.Role // the worker's; it publishes job events
	TaskDefinition   *ecs.TaskDefinition
	Service          *ecs.Service
	// LaunchFailures sends the group's failed launches (a quota, no
	// capacity in any listed type) to the alarm topic.
	LaunchFailures *cloudwatch.EventRule
}

// NewComputeTier creates a tier beside the Core. Its settings were
// validated once, when they were parsed (settings.Parse).
func NewComputeTier(ctx *pulumi.Context, name string, args *ComputeTierArgs, opts ...pulumi.ResourceOption) (*ComputeTier, error) {
	policy, err := scaling.New(args.Scaling())
	if err != nil {
		return nil, fmt.Errorf("tier %s: %w", args.Name, err)
	}
	t := &ComputeTier{Tier: args.Name, Policy: policy}
	recorded := pulumi.Map{"tier": pulumi.String(args.Name), "gpu": pulumi.Bool(args.GPU), "maxTasks": pulumi.Int(args.MaxTasks)}
	if err := ctx.RegisterComponentResourceV2(ComputeTierType, name, recorded, t, opts...); err != nil {
		return nil, err
	}
	b := &tierBuilder{ctx: ctx, t: t, a: args, name: name, core: args.Core, parent: pulumi.Parent(t),
		tags: pulumi.ToStringMap(args.Stack.Tags)}
	b.tags["inferstack:tier"] = pulumi.String(args.Name)
	for _, step := range []func() error{b.queues, b.cluster, b.logs, b.roles, b.instances, b.launchFailures, b.service, b.autoscaling} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := ctx.RegisterResourceOutputs(t, pulumi.Map{
		"queueUrl":           t.Queue.Url,
		"deadLetterQueueUrl": t.DeadLetter.Url,
		"serviceName":        t.Service.Name,
		"clusterName":        t.Cluster.Name,
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// tierBuilder carries what every step of NewComputeTier shares.
type tierBuilder struct {
	ctx    *pulumi.Context
	t      *ComputeTier
	a      *ComputeTierArgs
	core   *Core
	name   string
	parent pulumi.ResourceOption
	tags   pulumi.StringMap

	logGroup                *cloudwatch.LogGroup
	instanceProfile         *iam.InstanceProfile
	executionRole, taskRole *iam.Role
	securityGroup           *ec2.SecurityGroup
}

func (b *tierBuilder) queues() error {
	var err error
	if b.t.DeadLetter, err = newQueue(b.ctx, b.a.DeadLetter, nil, b.tags, b.parent); err != nil {
		return err
	}
	if b.t.Queue, err = newQueue(b.ctx, b.a.Queue, b.t.DeadLetter, b.tags, b.parent); err != nil {
		return err
	}
	_, err = dlqAlarm(b.ctx, b.name+"-dlq-alarm", b.t.DeadLetter, b.core.AlarmTopic, b.tags, b.parent)
	return err
}

func (b *tierBuilder) cluster() error {
	var err error
	b.t.Cluster, err = ecs.NewCluster(b.ctx, b.name+"-cluster", &ecs.ClusterArgs{
		Settings: ecs.ClusterSettingArray{&ecs.ClusterSettingArgs{Name: pulumi.String("containerInsights"), Value: pulumi.String("enabled")}},
		Tags:     b.tags,
	}, b.parent)
	return err
}

func (b *tierBuilder) logs() error {
	var err error
	b.logGroup, err = cloudwatch.NewLogGroup(b.ctx, b.name+"-logs", &cloudwatch.LogGroupArgs{
		Name:            pulumi.Sprintf("/inferstack/%s/worker-%s", b.a.Stack.Environment, b.a.Name),
		RetentionInDays: pulumi.Int(b.a.Stack.LogRetentionDays),
		Tags:            b.tags,
	}, b.parent)
	return err
}

// role creates a role for service with one inline policy.
func (b *tierBuilder) role(suffix, service string, doc pulumi.StringInput) (*iam.Role, error) {
	role, err := iam.NewRole(b.ctx, b.name+"-"+suffix+"-role", &iam.RoleArgs{
		AssumeRolePolicy: pulumi.String(policy.AssumeRole(service).JSON()), Tags: b.tags,
	}, b.parent)
	if err != nil {
		return nil, err
	}
	_, err = iam.NewRolePolicy(b.ctx, b.name+"-"+suffix+"-policy", &iam.RolePolicyArgs{Role: role.ID(), Policy: doc}, b.parent)
	return role, err
}

func (b *tierBuilder) roles() error {
	core := b.core
	var err error
	repository := core.Repository.Arn
	if !b.a.BuildImages {
		img, _ := settings.ParseECRImage(b.a.Image) // checked by settings.Config.Validate
		repository = pulumi.String(img.RepositoryARN()).ToStringOutput()
	}
	b.executionRole, err = b.role("execution", "ecs-tasks.amazonaws.com",
		pulumi.All(repository, b.logGroup.Arn).ApplyT(func(v []any) string {
			return policy.Execution(v[0].(string), v[1].(string)).JSON()
		}).(pulumi.StringOutput))
	if err != nil {
		return err
	}
	b.taskRole, err = b.role("task", "ecs-tasks.amazonaws.com",
		pulumi.All(b.t.Queue.Arn, b.t.DeadLetter.Arn, core.Bucket.Arn, b.t.Cluster.Arn, core.EventsTopic.Arn, core.EventsKey.Arn).ApplyT(func(v []any) string {
			return policy.WorkerTask(policy.WorkerArgs{QueueARN: v[0].(string), DeadLetterARN: v[1].(string), BucketARN: v[2].(string), ClusterARN: v[3].(string),
				Events: policy.EventsArgs{TopicARN: v[4].(string), KeyARN: v[5].(string)}}).JSON()
		}).(pulumi.StringOutput))
	if err != nil {
		return err
	}
	b.t.TaskRole = b.taskRole
	instanceRole, err := b.role("instance", "ec2.amazonaws.com",
		b.t.Cluster.Arn.ApplyT(func(arn string) string { return policy.Instance(arn).JSON() }).(pulumi.StringOutput))
	if err != nil {
		return err
	}
	b.instanceProfile, err = iam.NewInstanceProfile(b.ctx, b.name+"-instance-profile", &iam.InstanceProfileArgs{Role: instanceRole.Name, Tags: b.tags}, b.parent)
	return err
}

// UserData joins an instance to the cluster; the GPU agent setting makes the
// instance's GPUs schedulable, spot draining hands tasks over before a spot
// reclaim. ECS_AWSVPC_BLOCK_IMDS keeps awsvpc tasks from the instance
// metadata service (and so from the instance role's credentials): a hop
// limit of 1 does not, since an awsvpc task's traffic does not cross a
// container bridge (ECS developer guide, "Amazon ECS container agent
// configuration").
func UserData(cluster string, gpu, spot bool) string {
	lines := []string{"#!/bin/bash", "cat >> /etc/ecs/ecs.config <<'EOF'", "ECS_CLUSTER=" + cluster, "ECS_ENABLE_TASK_IAM_ROLE=true",
		"ECS_AWSVPC_BLOCK_IMDS=true"}
	if gpu {
		lines = append(lines, "ECS_ENABLE_GPU_SUPPORT=true")
	}
	if spot {
		lines = append(lines, "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true")
	}
	lines = append(lines, "EOF", "")
	return base64.StdEncoding.EncodeToString([]byte(strings.Join(lines, "\n")))
}

func (b *tierBuilder) instances() error {
	a, core := b.a, b.core
	var err error
	// Egress only: workers call AWS APIs; nothing calls them.
	b.securityGroup, err = ec2.NewSecurityGroup(b.ctx, b.name+"-sg", &ec2.SecurityGroupArgs{
		Description: pulumi.Sprintf("inferstack %s %s workers: egress only", a.Stack.Environment, a.Name),
		VpcId:       core.VpcID,
		Egress: ec2.SecurityGroupEgressArray{&ec2.SecurityGroupEgressArgs{
			Protocol: pulumi.String("-1"), FromPort: pulumi.Int(0), ToPort: pulumi.Int(0), CidrBlocks: pulumi.StringArray{pulumi.String("0.0.0.0/0")},
		}},
		Tags: b.tags,
	}, b.parent)
	if err != nil {
		return err
	}
	ami := CPUAMIParameter
	if a.GPU {
		ami = GPUAMIParameter
	}
	b.t.LaunchTemplate, err = ec2.NewLaunchTemplate(b.ctx, b.name+"-lt", &ec2.LaunchTemplateArgs{
		ImageId:            pulumi.String("resolve:ssm:" + ami),
		InstanceType:       pulumi.String(a.InstanceTypes[0]),
		IamInstanceProfile: &ec2.LaunchTemplateIamInstanceProfileArgs{Arn: b.instanceProfile.Arn},
		UserData:           b.t.Cluster.Name.ApplyT(func(n string) string { return UserData(n, a.GPU, a.Spot) }).(pulumi.StringOutput),
		MetadataOptions: &ec2.LaunchTemplateMetadataOptionsArgs{
			HttpEndpoint: pulumi.String("enabled"), HttpTokens: pulumi.String("required"), // IMDSv2 only
			HttpPutResponseHopLimit: pulumi.Int(1), // containers on a bridge cannot reach it; awsvpc tasks: see UserData
		},
		NetworkInterfaces: ec2.LaunchTemplateNetworkInterfaceArray{&ec2.LaunchTemplateNetworkInterfaceArgs{
			AssociatePublicIpAddress: pulumi.String("false"), SecurityGroups: pulumi.StringArray{b.securityGroup.ID()},
			DeleteOnTermination: pulumi.String("true"),
		}},
		BlockDeviceMappings: ec2.LaunchTemplateBlockDeviceMappingArray{&ec2.LaunchTemplateBlockDeviceMappingArgs{
			DeviceName: pulumi.String("/dev/xvda"),
			Ebs: &ec2.LaunchTemplateBlockDeviceMappingEbsArgs{
				VolumeSize: pulumi.Int(a.RootVolumeGiB), VolumeType: pulumi.String("gp3"), Encrypted: pulumi.String("true"), DeleteOnTermination: pulumi.String("true"),
			},
		}},
		UpdateDefaultVersion: pulumi.Bool(true),
		TagSpecifications: ec2.LaunchTemplateTagSpecificationArray{&ec2.LaunchTemplateTagSpecificationArgs{
			ResourceType: pulumi.String("instance"), Tags: b.tags,
		}},
		Tags: b.tags,
	}, b.parent)
	if err != nil {
		return err
	}
	group := &autoscaling.GroupArgs{
		MinSize:            pulumi.Int(0),
		MaxSize:            pulumi.Int(b.t.Policy.MaxInstances),
		VpcZoneIdentifiers: core.PrivateSubnetIDs,
		// Managed termination protection needs instances protected from
		// scale-in; ECS removes the protection when an instance is empty.
		ProtectFromScaleIn: pulumi.Bool(true),
		// Without it, `pulumi destroy` waits forever on protected instances.
		ForceDelete: pulumi.Bool(true),
		Tags: autoscaling.GroupTagArray{
			// ECS adds this tag for managed scaling; declaring it keeps Pulumi from removing it.
			&autoscaling.GroupTagArgs{Key: pulumi.String("AmazonECSManaged"), Value: pulumi.String("true"), PropagateAtLaunch: pulumi.Bool(true)},
			&autoscaling.GroupTagArgs{Key: pulumi.String("inferstack:tier"), Value: pulumi.String(a.Name), PropagateAtLaunch: pulumi.Bool(true)},
		},
	}
	// Always a mixed instances policy, so every listed type is tried when
	// the one before has no capacity, on-demand ("prioritized": in the
	// listed order) as well as spot.
	spec := &autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs{
		LaunchTemplateId: b.t.LaunchTemplate.ID(), Version: pulumi.String("$Latest"),
	}
	var overrides autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArray
	for _, it := range a.InstanceTypes {
		overrides = append(overrides, &autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs{InstanceType: pulumi.String(it)})
	}
	onDemandBase, onDemandAbove := 0, 100
	if a.Spot {
		onDemandBase, onDemandAbove = a.OnDemandBase, 0
		group.CapacityRebalance = pulumi.Bool(true) // replace spot instances at risk before they are reclaimed
	}
	group.MixedInstancesPolicy = &autoscaling.GroupMixedInstancesPolicyArgs{
		InstancesDistribution: &autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs{
			OnDemandAllocationStrategy:          pulumi.String("prioritized"),
			OnDemandBaseCapacity:                pulumi.Int(onDemandBase),
			OnDemandPercentageAboveBaseCapacity: pulumi.Int(onDemandAbove),
			SpotAllocationStrategy:              pulumi.String("price-capacity-optimized"),
		},
		LaunchTemplate: &autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs{LaunchTemplateSpecification: spec, Overrides: overrides},
	}
	b.t.Group, err = autoscaling.NewGroup(b.ctx, b.name+"-asg", group, b.parent,
		pulumi.IgnoreChanges([]string{"desiredCapacity"})) // managed scaling owns it
	if err != nil {
		return err
	}
	b.t.CapacityProvider, err = ecs.NewCapacityProvider(b.ctx, b.name+"-capacity", &ecs.CapacityProviderArgs{
		AutoScalingGroupProvider: &ecs.CapacityProviderAutoScalingGroupProviderArgs{
			AutoScalingGroupArn:          b.t.Group.Arn,
			ManagedTerminationProtection: pulumi.String("ENABLED"),
			ManagedDraining:              pulumi.String("ENABLED"),
			ManagedScaling: &ecs.CapacityProviderAutoScalingGroupProviderManagedScalingArgs{
				Status:                 pulumi.String("ENABLED"),
				TargetCapacity:         pulumi.Int(b.t.Policy.TargetCapacity),
				InstanceWarmupPeriod:   pulumi.Int(b.t.Policy.WarmupSeconds),
				MinimumScalingStepSize: pulumi.Int(1),
				MaximumScalingStepSize: pulumi.Int(max(1, b.t.Policy.MaxInstances)),
			},
		},
		Tags: b.tags,
	}, b.parent)
	if err != nil {
		return err
	}
	b.t.Association, err = ecs.NewClusterCapacityProviders(b.ctx, b.name+"-capacity-providers", &ecs.ClusterCapacityProvidersArgs{
		ClusterName:       b.t.Cluster.Name,
		CapacityProviders: pulumi.StringArray{b.t.CapacityProvider.Name},
		DefaultCapacityProviderStrategies: ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArray{
			&ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs{CapacityProvider: b.t.CapacityProvider.Name, Weight: pulumi.Int(1)},
		},
	}, b.parent)
	return err
}

// LaunchFailedDetailType is the event Auto Scaling sends EventBridge when
// it cannot launch an instance: a vCPU quota reached, no capacity for any
// listed type (EventBridge events reference, "Amazon EC2 Auto Scaling
// events").
const LaunchFailedDetailType = "EC2 Instance Launch Unsuccessful"

// LaunchFailureRuleName is the EventBridge rule of a tier's failed
// launches; the alarm topic lets rules of this prefix publish.
func LaunchFailureRuleName(environment, tier string) string {
	return launchFailureRulePrefix(environment) + tier
}

func launchFailureRulePrefix(environment string) string {
	return "inferstack-" + environment + "-launch-failed-"
}

// LaunchFailurePattern matches the failed launches of the group named group.
func LaunchFailurePattern(group string) string {
	data, _ := json.Marshal(map[string]any{
		"source": []string{"aws.autoscaling"}, "detail-type": []string{LaunchFailedDetailType},
		"detail": map[string]any{"AutoScalingGroupName": []string{group}},
	})
	return string(data)
}

// launchFailures tells the alarm topic when the group cannot launch: without
// it, queued jobs wait for capacity that never comes and nothing says why.
func (b *tierBuilder) launchFailures() error {
	env := b.a.Stack.Environment
	var err error
	b.t.LaunchFailures, err = cloudwatch.NewEventRule(b.ctx, b.name+"-launch-failed", &cloudwatch.EventRuleArgs{
		Name:         pulumi.String(LaunchFailureRuleName(env, b.a.Name)),
		Description:  pulumi.Sprintf("inferstack %s %s tier: an instance failed to launch", env, b.a.Name),
		EventPattern: b.t.Group.Name.ApplyT(LaunchFailurePattern).(pulumi.StringOutput),
		Tags:         b.tags,
	}, b.parent)
	if err != nil {
		return err
	}
	_, err = cloudwatch.NewEventTarget(b.ctx, b.name+"-launch-failed-alarm", &cloudwatch.EventTargetArgs{
		Rule: b.t.LaunchFailures.Name, Arn: b.core.AlarmTopic.Arn,
		InputTransformer: &cloudwatch.EventTargetInputTransformerArgs{
			InputPaths: pulumi.StringMap{"group": pulumi.String("$.detail.AutoScalingGroupName"), "cause": pulumi.String("$.detail.StatusMessage")},
			InputTemplate: pulumi.Sprintf(`"inferstack %s %s tier: Auto Scaling group <group> could not launch an instance: <cause> `+
				`(check the tier's EC2 vCPU quotas; see the README's Quotas section)"`, env, b.a.Name),
		},
	}, b.parent)
	return err
}

// ContainerDefinitions is the worker container of a tier's task definition.
func ContainerDefinitions(image, logGroup, region string, env map[string]string, gpu bool, stopTimeout int) string {
	var envList []map[string]string
	for _, k := range sortedKeys(env) {
		envList = append(envList, map[string]string{"name": k, "value": env[k]})
	}
	c := map[string]any{
		"name":                   "worker",
		"image":                  image,
		"essential":              true,
		"command":                []string{"worker"},
		"environment":            envList,
		"stopTimeout":            stopTimeout,
		"user":                   "10001",
		"readonlyRootFilesystem": false,
		"logConfiguration": map[string]any{
			"logDriver": "awslogs",
			"options":   map[string]string{"awslogs-group": logGroup, "awslogs-region": region, "awslogs-stream-prefix": "worker"},
		},
	}
	if gpu {
		c["resourceRequirements"] = []map[string]string{{"type": "GPU", "value": "1"}}
	}
	data, _ := json.Marshal([]any{c})
	return string(data)
}

func (b *tierBuilder) service() error {
	a, core := b.a, b.core
	region := core.Region()
	image := pulumi.String(a.Image).ToStringOutput()
	if a.BuildImages {
		// Its imageUri names the pushed digest, so a new build is a new
		// task definition revision, and the tag only labels it in ECR.
		built, err := awsxecr.NewImage(b.ctx, b.name+"-image", &awsxecr.ImageArgs{
			RepositoryUrl: core.Repository.RepositoryUrl,
			Context:       pulumi.String(a.ImageContext),
			Dockerfile:    pulumi.String(filepath.Join(a.ImageContext, "images", a.Name+".Dockerfile")),
			Platform:      pulumi.String("linux/amd64"),
			ImageTag:      pulumi.String(a.Name),
		}, b.parent)
		if err != nil {
			return err
		}
		image = built.ImageUri
	}
	defs := pulumi.All(image, b.logGroup.Name, region, b.t.Queue.Url, b.t.DeadLetter.Url, core.Bucket.Bucket, core.EventsTopic.Arn).ApplyT(func(v []any) string {
		env := a.Runtime(a.Tier, settings.Location{
			Region: v[2].(string), Bucket: v[5].(string), ModelKey: core.ModelKey, QueueURL: v[3].(string), DeadLetterURL: v[4].(string),
			EventsTopicARN: v[6].(string),
		}).Env()
		return ContainerDefinitions(v[0].(string), v[1].(string), v[2].(string), env, a.GPU, a.StopTimeout)
	}).(pulumi.StringOutput)
	var err error
	b.t.TaskDefinition, err = ecs.NewTaskDefinition(b.ctx, b.name+"-task", &ecs.TaskDefinitionArgs{
		Family:                  pulumi.Sprintf("inferstack-%s-%s", a.Stack.Environment, a.Name),
		NetworkMode:             pulumi.String("awsvpc"),
		RequiresCompatibilities: pulumi.StringArray{pulumi.String("EC2")},
		Cpu:                     pulumi.String(fmt.Sprint(a.TaskCPU)),
		Memory:                  pulumi.String(fmt.Sprint(a.TaskMemory)),
		ExecutionRoleArn:        b.executionRole.Arn,
		TaskRoleArn:             b.taskRole.Arn,
		ContainerDefinitions:    defs,
		RuntimePlatform:         &ecs.TaskDefinitionRuntimePlatformArgs{OperatingSystemFamily: pulumi.String("LINUX"), CpuArchitecture: pulumi.String("X86_64")},
		Tags:                    b.tags,
	}, b.parent)
	if err != nil {
		return err
	}
	b.t.Service, err = ecs.NewService(b.ctx, b.name+"-service", &ecs.ServiceArgs{
		Cluster:        b.t.Cluster.Arn,
		TaskDefinition: b.t.TaskDefinition.Arn,
		DesiredCount:   pulumi.Int(0), // autoscaling starts tasks when work arrives
		CapacityProviderStrategies: ecs.ServiceCapacityProviderStrategyArray{&ecs.ServiceCapacityProviderStrategyArgs{
			CapacityProvider: b.t.CapacityProvider.Name, Weight: pulumi.Int(1), Base: pulumi.Int(0),
		}},
		NetworkConfiguration: &ecs.ServiceNetworkConfigurationArgs{
			Subnets: core.PrivateSubnetIDs, SecurityGroups: pulumi.StringArray{b.securityGroup.ID()}, AssignPublicIp: pulumi.Bool(false),
		},
		// Queue workers: a deploy may stop old tasks first; they hand their job back.
		DeploymentMinimumHealthyPercent: pulumi.Int(0),
		DeploymentMaximumPercent:        pulumi.Int(100),
		ForceDelete:                     pulumi.Bool(true),
		PropagateTags:                   pulumi.String("SERVICE"),
		Tags:                            b.tags,
	}, b.parent,
		pulumi.IgnoreChanges([]string{"desiredCount"}),       // autoscaling owns it
		pulumi.DependsOn([]pulumi.Resource{b.t.Association})) // see ComputeTier

	return err
}

// backlogQueries is the alarm metric: visible plus in-flight messages, so a
// task's own job keeps counting until it is done.
func backlogQueries(queueName pulumi.StringInput, period int) cloudwatch.MetricAlarmMetricQueryArray {
	metric := func(id, name string) *cloudwatch.MetricAlarmMetricQueryArgs {
		return &cloudwatch.MetricAlarmMetricQueryArgs{Id: pulumi.String(id), Metric: &cloudwatch.MetricAlarmMetricQueryMetricArgs{
			Namespace: pulumi.String("AWS/SQS"), MetricName: pulumi.String(name), Dimensions: pulumi.StringMap{"QueueName": queueName},
			Period: pulumi.Int(period), Stat: pulumi.String("Maximum"),
		}}
	}
	return cloudwatch.MetricAlarmMetricQueryArray{
		metric("visible", "ApproximateNumberOfMessagesVisible"),
		metric("inflight", "ApproximateNumberOfMessagesNotVisible"),
		&cloudwatch.MetricAlarmMetricQueryArgs{Id: pulumi.String("backlog"), Expression: pulumi.String("visible + inflight"),
			Label: pulumi.String("backlog"), ReturnData: pulumi.Bool(true)},
	}
}

func (b *tierBuilder) autoscaling() error {
	p := b.t.Policy
	resourceID := pulumi.Sprintf("service/%s/%s", b.t.Cluster.Name, b.t.Service.Name)
	target, err := appautoscaling.NewTarget(b.ctx, b.name+"-scaling-target", &appautoscaling.TargetArgs{
		ServiceNamespace: pulumi.String("ecs"), ScalableDimension: pulumi.String("ecs:service:DesiredCount"),
		ResourceId: resourceID, MinCapacity: pulumi.Int(p.MinTasks), MaxCapacity: pulumi.Int(p.MaxTasks),
	}, b.parent)
	if err != nil {
		return err
	}
	stepPolicy := func(suffix string, steps appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArray) (*appautoscaling.Policy, error) {
		return appautoscaling.NewPolicy(b.ctx, b.name+"-"+suffix, &appautoscaling.PolicyArgs{
			PolicyType: pulumi.String("StepScaling"), ServiceNamespace: target.ServiceNamespace,
			ScalableDimension: target.ScalableDimension, ResourceId: target.ResourceId,
			StepScalingPolicyConfiguration: &appautoscaling.PolicyStepScalingPolicyConfigurationArgs{
				AdjustmentType: pulumi.String("ExactCapacity"), MetricAggregationType: pulumi.String("Maximum"),
				Cooldown: pulumi.Int(p.PeriodSeconds), StepAdjustments: steps,
			},
		}, b.parent)
	}
	var out appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArray
	for _, s := range p.ScaleOutSteps {
		adj := &appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArgs{
			MetricIntervalLowerBound: pulumi.String(fmt.Sprint(s.Lower)), ScalingAdjustment: pulumi.Int(s.Tasks),
		}
		if s.Upper != nil {
			adj.MetricIntervalUpperBound = pulumi.String(fmt.Sprint(*s.Upper))
		}
		out = append(out, adj)
	}
	scaleOut, err := stepPolicy("scale-out", out)
	if err != nil {
		return err
	}
	scaleIn, err := stepPolicy("scale-in", appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArray{
		&appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArgs{MetricIntervalUpperBound: pulumi.String("0"), ScalingAdjustment: pulumi.Int(0)},
	})
	if err != nil {
		return err
	}
	if _, err := cloudwatch.NewMetricAlarm(b.ctx, b.name+"-backlog-alarm", &cloudwatch.MetricAlarmArgs{
		AlarmDescription:   pulumi.Sprintf("%s tier: jobs waiting or running: scale tasks to the backlog", b.a.Name),
		MetricQueries:      backlogQueries(b.t.Queue.Name, p.PeriodSeconds),
		ComparisonOperator: pulumi.String("GreaterThanOrEqualToThreshold"),
		Threshold:          pulumi.Float64(p.ScaleOutThreshold),
		EvaluationPeriods:  pulumi.Int(1),
		TreatMissingData:   pulumi.String("notBreaching"),
		AlarmActions:       pulumi.Array{scaleOut.Arn},
		Tags:               b.tags,
	}, b.parent); err != nil {
		return err
	}
	// SQS stops publishing metrics for a queue idle for hours: missing data is idle.
	_, err = cloudwatch.NewMetricAlarm(b.ctx, b.name+"-idle-alarm", &cloudwatch.MetricAlarmArgs{
		AlarmDescription:   pulumi.Sprintf("%s tier: no jobs for %d minutes: scale to zero", b.a.Name, p.ScaleInPeriods),
		MetricQueries:      backlogQueries(b.t.Queue.Name, p.PeriodSeconds),
		ComparisonOperator: pulumi.String("LessThanThreshold"),
		Threshold:          pulumi.Float64(p.ScaleOutThreshold),
		EvaluationPeriods:  pulumi.Int(p.ScaleInPeriods),
		DatapointsToAlarm:  pulumi.Int(p.ScaleInPeriods),
		TreatMissingData:   pulumi.String("breaching"),
		AlarmActions:       pulumi.Array{scaleIn.Arn},
		Tags:               b.tags,
	}, b.parent)
	return err
}
