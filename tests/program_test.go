package tests

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/policy"
)

func str(m resource.PropertyMap, key string) string {
	v, ok := m[resource.PropertyKey(key)]
	if !ok || v.IsNull() || !v.IsString() {
		return ""
	}
	return v.StringValue()
}

func obj(m resource.PropertyMap, key string) resource.PropertyMap {
	v := m[resource.PropertyKey(key)]
	if !v.IsObject() {
		return resource.PropertyMap{}
	}
	return v.ObjectValue()
}

func boolean(m resource.PropertyMap, key string) bool {
	v := m[resource.PropertyKey(key)]
	return v.IsBool() && v.BoolValue()
}

func number(m resource.PropertyMap, key string) float64 {
	v := m[resource.PropertyKey(key)]
	if !v.IsNumber() {
		return -1
	}
	return v.NumberValue()
}

func TestInventoryPerConfiguration(t *testing.T) {
	t.Parallel()
	dev := run(t, config(t, "dev", nil))
	prod := run(t, config(t, "prod", nil))
	noGPU := run(t, config(t, "dev", map[string]string{"gpuEnabled": "false"}))

	c := dev.counts()
	require.Equal(t, 1, c[deploy.CoreType])
	require.Equal(t, 2, c[deploy.ComputeTierType])
	require.Equal(t, 1, c["awsx:ec2:Vpc"])
	require.Equal(t, 6, c["aws:sqs/queue:Queue"], "intake, intake DLQ, and a queue and DLQ per tier")
	require.Equal(t, 2, c["aws:ecs/capacityProvider:CapacityProvider"])
	require.Equal(t, 2, c["aws:autoscaling/group:Group"])
	require.Equal(t, 2, c["aws:ecs/service:Service"])
	require.Equal(t, 2, c["aws:ecs/cluster:Cluster"], "a cluster per tier")
	require.Equal(t, 2, c["aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"])
	require.Equal(t, 1, c["aws:lambda/function:Function"])
	require.Equal(t, 1, c["aws:lambda/eventSourceMapping:EventSourceMapping"])
	require.Equal(t, 7, c["aws:iam/role:Role"], "dispatch, and execution, task and instance per tier")
	require.Equal(t, 7, c["aws:cloudwatch/metricAlarm:MetricAlarm"], "intake DLQ, and DLQ, backlog and idle per tier")
	require.Equal(t, 2, c["aws:sns/topic:Topic"], "alarms and job events")
	require.Equal(t, 2, c["aws:kms/key:Key"], "a key per topic")
	require.Equal(t, 2, c["aws:sns/topicPolicy:TopicPolicy"], "the alarm topic's and the events topic's")
	require.Equal(t, 2, c["aws:cloudwatch/eventRule:EventRule"], "a tier's failed launches")
	require.Equal(t, 2, c["awsx:ecr:Image"], "an image built per tier")
	require.Equal(t, 1, c["aws:sqs/queuePolicy:QueuePolicy"], "the intake queue's, for upload triggers")
	require.Equal(t, 1, c["aws:s3/bucketNotification:BucketNotification"])
	require.Zero(t, c["aws:sns/topicSubscription:TopicSubscription"])

	require.Equal(t, 1, prod.counts()["aws:sns/topicSubscription:TopicSubscription"], "prod mails its alarms")
	require.Equal(t, len(dev.all)+1, len(prod.all))

	// Disabling the gpu tier removes exactly the gpu tier.
	var gpuTier []string
	for _, r := range dev.all {
		if strings.HasPrefix(r.Name, "inferstack-gpu") {
			gpuTier = append(gpuTier, r.Type+"::"+r.Name)
		}
	}
	require.Len(t, gpuTier, 28, "the gpu component and its 27 resources")
	require.Equal(t, len(dev.all)-len(gpuTier), len(noGPU.all))
	for _, r := range noGPU.all {
		require.False(t, strings.HasPrefix(r.Name, "inferstack-gpu"), r.Name)
	}
	fn := noGPU.ofType("aws:lambda/function:Function")[0]
	require.NotContains(t, obj(obj(fn.Inputs, "environment"), "variables"), resource.PropertyKey("INFERSTACK_GPU_QUEUE_URL"))
}

func TestEveryChildHasItsComponentAsParentAndAPrefixedUniqueName(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	seen := map[string]bool{}
	for _, r := range d.all {
		if r.Type == "pulumi:providers:aws" || r.Type == "pulumi:pulumi:Stack" {
			continue
		}
		require.False(t, seen[r.Name], "two resources named %s", r.Name)
		seen[r.Name] = true
		require.True(t, strings.HasPrefix(r.Name, "inferstack"), "unprefixed name %s", r.Name)
		switch r.Type {
		case deploy.CoreType, deploy.ComputeTierType, deploy.DispatchType:
			require.True(t, strings.HasSuffix(r.Parent, "pulumi:pulumi:Stack::inferstack-dev"), "%s parent %s", r.Name, r.Parent)
		default:
			owner := deploy.CoreType + "::inferstack"
			for _, tier := range []string{"cpu", "gpu"} {
				if strings.HasPrefix(r.Name, "inferstack-"+tier) {
					owner = deploy.ComputeTierType + "::inferstack-" + tier
				}
			}
			if dispatchChildren[r.Name] {
				owner = deploy.DispatchType + "::inferstack-dispatcher"
			}
			require.True(t, strings.HasSuffix(r.Parent, owner), "%s %s has parent %q, want %s", r.Type, r.Name, r.Parent, owner)
		}
	}
}

// dispatchChildren are the Dispatch component's resources: the Core's
// children before the Core stopped being built in two phases.
var dispatchChildren = map[string]bool{
	"inferstack-dispatch-logs": true, "inferstack-dispatch-role": true, "inferstack-dispatch-policy": true,
	"inferstack-dispatch": true, "inferstack-dispatch-intake": true, "inferstack-events-policy": true, "inferstack-dashboard": true,
}

// The resources that moved from the Core to the Dispatch component keep
// their names and carry an alias to their old parent, the Core: a stack
// deployed before moves them (same URN history) instead of replacing them.
// Nothing else has an alias.
func TestMovedResourcesAliasTheirOldParent(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	core := d.ofType(deploy.CoreType)
	require.Len(t, core, 1)
	moved := 0
	for _, r := range d.all {
		if !dispatchChildren[r.Name] {
			require.Empty(t, r.AliasParents, "%s %s", r.Type, r.Name)
			continue
		}
		moved++
		require.True(t, strings.HasSuffix(r.Parent, deploy.DispatchType+"::inferstack-dispatcher"), "%s parent %s", r.Name, r.Parent)
		require.Len(t, r.AliasParents, 1, r.Name)
		require.True(t, strings.HasSuffix(r.AliasParents[0], "::"+deploy.CoreType+"::inferstack"), "%s alias parent %s", r.Name, r.AliasParents[0])
	}
	require.Equal(t, len(dispatchChildren), moved)
}

func TestQueuesRedriveEncryptAndTimeOutWithinLimits(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	for _, q := range d.ofType("aws:sqs/queue:Queue") {
		require.True(t, boolean(q.Inputs, "sqsManagedSseEnabled"), "%s unencrypted", q.Name)
		if strings.HasSuffix(q.Name, "dlq") {
			require.Equal(t, float64(14*24*3600), number(q.Inputs, "messageRetentionSeconds"))
			continue
		}
		var redrive struct {
			Target string `json:"deadLetterTargetArn"`
			Max    int    `json:"maxReceiveCount"`
		}
		require.NoError(t, json.Unmarshal([]byte(str(q.Inputs, "redrivePolicy")), &redrive), q.Name)
		require.Equal(t, "arn:aws:sqs:us-east-1:123456789012:"+strings.TrimSuffix(q.Name, "-queue")+"-dlq", redrive.Target, q.Name)
		require.Equal(t, 5, redrive.Max)
		vis := number(q.Inputs, "visibilityTimeoutSeconds")
		require.LessOrEqual(t, vis, float64(12*3600), "SQS allows at most 12 h")
		if q.Name == "inferstack-intake" {
			require.Equal(t, float64(6*30), vis, "six times the dispatch timeout")
		} else {
			require.Equal(t, float64(300), vis)
		}
	}
}

func TestCapacityProvidersScaleFromZeroAndProtectRunningWork(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "prod", map[string]string{"cpuSpot": "true", "cpuOnDemandBase": "1", "gpuSpot": "true", "gpuOnDemandBase": "1"}))
	for _, cp := range d.ofType("aws:ecs/capacityProvider:CapacityProvider") {
		asg := obj(cp.Inputs, "autoScalingGroupProvider")
		require.Equal(t, "ENABLED", str(asg, "managedTerminationProtection"))
		require.Equal(t, "ENABLED", str(asg, "managedDraining"))
		ms := obj(asg, "managedScaling")
		require.Equal(t, "ENABLED", str(ms, "status"))
		require.Equal(t, float64(100), number(ms, "targetCapacity"))
	}
	for _, g := range d.ofType("aws:autoscaling/group:Group") {
		require.Equal(t, float64(0), number(g.Inputs, "minSize"), g.Name)
		require.True(t, boolean(g.Inputs, "protectFromScaleIn"), "managed termination protection needs it")
		require.True(t, boolean(g.Inputs, "forceDelete"), "or pulumi destroy hangs on protected instances")
		require.True(t, boolean(g.Inputs, "capacityRebalance"), "spot: rebalance")
		dist := obj(obj(g.Inputs, "mixedInstancesPolicy"), "instancesDistribution")
		require.Equal(t, float64(1), number(dist, "onDemandBaseCapacity"))
	}
	for _, s := range d.ofType("aws:ecs/service:Service") {
		strategy := s.Inputs["capacityProviderStrategies"].ArrayValue()
		require.Len(t, strategy, 1)
		require.Equal(t, float64(0), number(s.Inputs, "desiredCount"))
	}
}

// The two traps of scaling from zero: a > comparison, and counting only
// visible messages (a running job then looks like no work).
func TestBacklogAlarmStartsTasksFromZero(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	for _, tier := range []string{"cpu", "gpu"} {
		alarm := d.named("inferstack-" + tier + "-backlog-alarm")
		require.Equal(t, "GreaterThanOrEqualToThreshold", str(alarm.Inputs, "comparisonOperator"))
		require.Equal(t, float64(1), number(alarm.Inputs, "threshold"))
		var expression string
		var metrics []string
		for _, q := range alarm.Inputs["metricQueries"].ArrayValue() {
			qm := q.ObjectValue()
			if e := str(qm, "expression"); e != "" {
				expression = e
			} else {
				metrics = append(metrics, str(obj(qm, "metric"), "metricName"))
			}
		}
		require.Equal(t, "visible + inflight", expression)
		require.ElementsMatch(t, []string{"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"}, metrics)

		idle := d.named("inferstack-" + tier + "-idle-alarm")
		require.Equal(t, "LessThanThreshold", str(idle.Inputs, "comparisonOperator"))
		require.Equal(t, float64(5), number(idle.Inputs, "evaluationPeriods"), "Pulumi.dev.yaml: 5 idle minutes")
		require.Equal(t, "breaching", str(idle.Inputs, "treatMissingData"))

		target := d.named("inferstack-" + tier + "-scaling-target")
		require.Equal(t, float64(0), number(target.Inputs, "minCapacity"))
		out := d.named("inferstack-" + tier + "-scale-out")
		steps := obj(out.Inputs, "stepScalingPolicyConfiguration")["stepAdjustments"].ArrayValue()
		require.Equal(t, "0", str(steps[0].ObjectValue(), "metricIntervalLowerBound"))
		require.Equal(t, float64(1), number(steps[0].ObjectValue(), "scalingAdjustment"))
	}
}

func TestGPUTierAloneGetsTheGPUAMIAndAGPU(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	cpuLT, gpuLT := d.named("inferstack-cpu-lt"), d.named("inferstack-gpu-lt")
	require.Equal(t, "resolve:ssm:"+deploy.CPUAMIParameter, str(cpuLT.Inputs, "imageId"))
	require.Equal(t, "resolve:ssm:"+deploy.GPUAMIParameter, str(gpuLT.Inputs, "imageId"))
	require.Contains(t, deploy.GPUAMIParameter, "/amazon-linux-2023/gpu/")

	for tier, wantGPU := range map[string]bool{"cpu": false, "gpu": true} {
		var defs []map[string]any
		require.NoError(t, json.Unmarshal([]byte(str(d.named("inferstack-"+tier+"-task").Inputs, "containerDefinitions")), &defs))
		_, hasGPU := defs[0]["resourceRequirements"]
		require.Equal(t, wantGPU, hasGPU, tier)
		env := map[string]string{}
		for _, e := range defs[0]["environment"].([]any) {
			kv := e.(map[string]any)
			env[kv["name"].(string)] = kv["value"].(string)
		}
		require.Equal(t, str(d.named("inferstack-"+tier+"-image").Outputs, "imageUri"), defs[0]["image"], "the tier's own image")
		require.Equal(t, "images/"+tier+".Dockerfile", str(d.named("inferstack-"+tier+"-image").Inputs, "dockerfile"))
		require.Equal(t, tier, env["INFERSTACK_TIER"])
		require.Equal(t, map[string]string{"cpu": "cpu", "gpu": "auto"}[tier], env["INFERSTACK_DEVICE"])
		require.Equal(t, "models/detector.onnx", env["INFERSTACK_MODEL_KEY"])
		require.Contains(t, env["INFERSTACK_QUEUE_URL"], "inferstack-"+tier+"-queue")

		userData, err := base64.StdEncoding.DecodeString(str(d.named("inferstack-"+tier+"-lt").Inputs, "userData"))
		require.NoError(t, err)
		require.Contains(t, string(userData), "\nECS_AWSVPC_BLOCK_IMDS=true\n", "awsvpc tasks cannot reach the instance's metadata")
		require.Contains(t, string(userData), "\nECS_CLUSTER="+str(d.named("inferstack-"+tier+"-cluster").Outputs, "name")+"\n")
	}
}

func TestSecureByDefault(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	pab := d.ofType("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0]
	for _, k := range []string{"blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"} {
		require.True(t, boolean(pab.Inputs, k), k)
	}
	sse := d.ofType("aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")[0]
	rule := sse.Inputs["rules"].ArrayValue()[0].ObjectValue()
	require.Equal(t, "aws:kms", str(obj(rule, "applyServerSideEncryptionByDefault"), "sseAlgorithm"))

	var tls policy.Document
	require.NoError(t, json.Unmarshal([]byte(str(d.ofType("aws:s3/bucketPolicy:BucketPolicy")[0].Inputs, "policy")), &tls))
	require.Equal(t, "Deny", tls.Statement[0].Effect)
	require.Equal(t, map[string]any{"aws:SecureTransport": "false"}, tls.Statement[0].Condition["Bool"])

	for _, lt := range d.ofType("aws:ec2/launchTemplate:LaunchTemplate") {
		md := obj(lt.Inputs, "metadataOptions")
		require.Equal(t, "required", str(md, "httpTokens"), "IMDSv2 only")
		ni := lt.Inputs["networkInterfaces"].ArrayValue()[0].ObjectValue()
		require.Equal(t, "false", str(ni, "associatePublicIpAddress"))
		ebs := obj(lt.Inputs["blockDeviceMappings"].ArrayValue()[0].ObjectValue(), "ebs")
		require.Equal(t, "true", str(ebs, "encrypted"))
	}
	for _, s := range d.ofType("aws:ecs/service:Service") {
		require.False(t, boolean(obj(s.Inputs, "networkConfiguration"), "assignPublicIp"))
	}
	// The alarm topic is encrypted with a key CloudWatch may use (not aws/sns, which it cannot).
	key := d.named("inferstack-alarms-key")
	require.Equal(t, str(key.Outputs, "arn"), str(d.named("inferstack-alarms").Inputs, "kmsMasterKeyId"))
	require.True(t, boolean(key.Inputs, "enableKeyRotation"))
	var keyPolicy policy.Document
	require.NoError(t, json.Unmarshal([]byte(str(key.Inputs, "policy")), &keyPolicy))
	require.Equal(t, policy.AlarmKey("123456789012"), keyPolicy)
	fn := d.ofType("aws:lambda/function:Function")[0]
	require.Equal(t, "provided.al2023", str(fn.Inputs, "runtime"))
	require.Equal(t, []resource.PropertyValue{resource.NewStringProperty("arm64")}, fn.Inputs["architectures"].ArrayValue())
	esm := d.ofType("aws:lambda/eventSourceMapping:EventSourceMapping")[0]
	require.Equal(t, []resource.PropertyValue{resource.NewStringProperty("ReportBatchItemFailures")}, esm.Inputs["functionResponseTypes"].ArrayValue())
}

// IAM documents grant no wildcard action, and only this stack's ARNs, except
// for the actions AWS only accepts on "*", which are listed in one place.
func TestIAMIsLeastPrivilege(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	var arns []string
	for _, r := range d.all {
		if a := str(r.Outputs, "arn"); a != "" {
			arns = append(arns, a)
		}
	}
	owned := func(res string) bool {
		for _, a := range arns {
			if res == a || strings.HasPrefix(res, a+"/") || strings.HasPrefix(res, a+":") {
				return true
			}
			if prefix, cluster, ok := strings.Cut(a, ":cluster/"); ok {
				for _, kind := range []string{"task", "container-instance"} {
					if res == prefix+":"+kind+"/"+cluster+"/*" {
						return true
					}
				}
			}
		}
		return false
	}
	policies := d.ofType("aws:iam/rolePolicy:RolePolicy")
	require.Len(t, policies, 7)
	// The one action pattern granted: what the SNS developer guide grants a
	// publisher to a topic encrypted with a customer managed key (see
	// policy.EventsArgs), on that key only.
	patterns := []string{"kms:GenerateDataKey*"}
	wildcards := map[string]bool{}
	for _, p := range policies {
		var doc policy.Document
		require.NoError(t, json.Unmarshal([]byte(str(p.Inputs, "policy")), &doc), p.Name)
		for _, s := range doc.Statement {
			require.Equal(t, "Allow", s.Effect)
			for _, a := range s.Action {
				if !slices.Contains(patterns, a) {
					require.NotContains(t, a, "*", "%s grants a wildcard action %s", p.Name, a)
				}
			}
			for _, res := range s.Resource {
				if res == "*" {
					for _, a := range s.Action {
						require.True(t, slices.Contains(policy.WildcardResourceActions, a), "%s grants %s on *", p.Name, a)
						wildcards[a] = true
					}
					continue
				}
				require.True(t, owned(res), "%s names %s, which is not this stack's", p.Name, res)
			}
		}
	}
	require.Len(t, wildcards, len(policy.WildcardResourceActions), "every listed exception is used, and none else")
	for _, r := range d.ofType("aws:iam/role:Role") {
		var trust policy.Document
		require.NoError(t, json.Unmarshal([]byte(str(r.Inputs, "assumeRolePolicy")), &trust))
		require.Len(t, trust.Statement, 1)
	}
}

func TestImagesAreBuiltAndRunByDigest(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	images := d.ofType("awsx:ecr:Image")
	require.Len(t, images, 2)
	for _, tier := range []string{"cpu", "gpu"} {
		img := d.named("inferstack-" + tier + "-image")
		require.Equal(t, "images/"+tier+".Dockerfile", str(img.Inputs, "dockerfile"))
		require.Equal(t, "linux/amd64", str(img.Inputs, "platform"))
		var defs []map[string]any
		require.NoError(t, json.Unmarshal([]byte(str(d.named("inferstack-"+tier+"-task").Inputs, "containerDefinitions")), &defs))
		require.Equal(t, str(img.Outputs, "imageUri"), defs[0]["image"], "the task runs the image just built")
	}
}

// The local stack creates its queues from settings.Queues: the program must
// create exactly those, with the same settings.
func TestProgramQueuesAreTheSettingsQueues(t *testing.T) {
	t.Parallel()
	for _, overrides := range []map[string]string{nil, {"gpuEnabled": "false"}} {
		cfg := config(t, "prod", overrides)
		d := run(t, cfg)
		queues := d.ofType("aws:sqs/queue:Queue")
		require.Len(t, queues, len(cfg.Queues()))
		for _, want := range cfg.Queues() {
			q := d.named(want.Name)
			require.Equal(t, float64(want.RetentionSeconds), number(q.Inputs, "messageRetentionSeconds"), want.Name)
			if want.DeadLetter == "" {
				continue
			}
			require.Equal(t, float64(want.VisibilitySeconds), number(q.Inputs, "visibilityTimeoutSeconds"), want.Name)
			var redrive struct {
				Target string `json:"deadLetterTargetArn"`
				Max    int    `json:"maxReceiveCount"`
			}
			require.NoError(t, json.Unmarshal([]byte(str(q.Inputs, "redrivePolicy")), &redrive))
			require.Equal(t, str(d.named(want.DeadLetter).Outputs, "arn"), redrive.Target)
			require.Equal(t, want.MaxReceives, redrive.Max)
		}
		require.Equal(t, cfg.TierParameterName(), str(d.named("inferstack-tier").Inputs, "name"))
	}
}

// Every lifecycle rule aborts incomplete multipart uploads after a day: the
// backstop for an upload a worker or client could not abort itself (a
// killed process), so none is billed for ever. Every prefix a job writes
// has a rule.
func TestLifecycleAbortsIncompleteMultipartUploads(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	lc := d.ofType("aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2")
	require.Len(t, lc, 1)
	prefixes := map[string]bool{}
	for _, r := range lc[0].Inputs["rules"].ArrayValue() {
		rule := r.ObjectValue()
		require.Equal(t, "Enabled", str(rule, "status"))
		require.Equal(t, float64(1), number(obj(rule, "abortIncompleteMultipartUpload"), "daysAfterInitiation"), str(rule, "id"))
		prefixes[str(obj(rule, "filter"), "prefix")] = true
	}
	for _, p := range []string{job.InputPrefix, job.ResultsPrefix, job.StatusPrefix, job.ErrorsPrefix, job.CheckpointPrefix} {
		require.True(t, prefixes[p], "no lifecycle rule for %s", p)
	}
}
