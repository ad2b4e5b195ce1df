package tests

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy"
	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/tests/fakeaws"
)

// What the first job on a new account needs of the rendered program: an
// image that was pushed, capacity the account's quotas allow, a word when
// a launch fails anyway, and dead letters that outlive their queues.

const digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// prebuilt is the config of a stack whose images were pushed elsewhere.
var prebuilt = map[string]string{
	"buildImages": "false",
	"cpuImage":    "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack-worker" + digest,
	"gpuImage":    "210987654321.dkr.ecr.eu-west-1.amazonaws.com/team/gpu-worker" + digest,
}

// A task definition never names a tag: it runs the digest the program just
// built and pushed, or the digest the stack was given.
func TestTaskDefinitionsRunOnlyPushedImages(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env       string
		overrides map[string]string
	}{{"dev", nil}, {"prod", nil}, {"dev", prebuilt}} {
		d := run(t, config(t, c.env, c.overrides))
		for _, task := range d.ofType("aws:ecs/taskDefinition:TaskDefinition") {
			tier := strings.TrimSuffix(strings.TrimPrefix(task.Name, "inferstack-"), "-task")
			var defs []map[string]any
			require.NoError(t, json.Unmarshal([]byte(str(task.Inputs, "containerDefinitions")), &defs))
			image := defs[0]["image"].(string)
			_, ref, _ := strings.Cut(image, "/")
			require.NotContains(t, strings.Split(ref, "@")[0], ":", "%s names a tag: %s", task.Name, image)
			require.Regexp(t, `@sha256:[0-9a-f]{64}$`, image, task.Name)

			pushed := c.overrides[tier+"Image"]
			if pushed == "" {
				built := d.named("inferstack-" + tier + "-image")
				require.Equal(t, "awsx:ecr:Image", built.Type, "nothing builds the %s image", tier)
				pushed = str(built.Outputs, "imageUri")
				require.Equal(t, str(d.named("inferstack-worker").Outputs, "repositoryUrl"), str(built.Inputs, "repositoryUrl"))
			}
			require.Equal(t, pushed, image, "%s runs an image nothing pushed", task.Name)

			// The execution role may pull it, from its own repository only.
			img, err := settings.ParseECRImage(image)
			require.NoError(t, err)
			exec := document(t, d.named("inferstack-"+tier+"-execution-policy"), "policy")
			require.True(t, exec.Allows("ecr:BatchGetImage", img.RepositoryARN(), nil), "%s cannot pull %s", tier, image)
			require.False(t, exec.Allows("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:123456789012:repository/other", nil))
		}
	}
	require.Empty(t, run(t, config(t, "dev", prebuilt)).ofType("awsx:ecr:Image"), "nothing is built when the images are given")
}

// vCPUs of the instance types the shipped stacks list (EC2 instance types).
var vCPUs = map[string]int{"c7i.large": 2, "c6i.large": 2, "m7i.large": 2, "g4dn.xlarge": 4, "g5.xlarge": 4, "g6.xlarge": 4}

// New-account quotas (EC2 user guide, "Spot Instance quotas"), in vCPUs.
const (
	newAccountStandardSpot = 5
	newAccountGSpot        = 0
)

// Every shipped stack can reach each tier's maximum on a new account's Spot
// quotas: spot instances above the on-demand base, at the largest listed
// type, fit them (on-demand quotas are in the README: they vary by account).
func TestShippedStacksFitANewAccountsSpotQuotas(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"dev", "prod"} {
		cfg := config(t, env, nil)
		d := run(t, cfg)
		for _, tier := range cfg.Tiers() {
			largest := 0
			for _, it := range tier.InstanceTypes {
				require.Contains(t, vCPUs, it, "add %s's vCPUs to this test", it)
				largest = max(largest, vCPUs[it])
			}
			group := d.named("inferstack-" + tier.Name + "-asg")
			dist := obj(obj(group.Inputs, "mixedInstancesPolicy"), "instancesDistribution")
			maxInstances := int(number(group.Inputs, "maxSize"))
			spot := 0
			if number(dist, "onDemandPercentageAboveBaseCapacity") < 100 {
				spot = max(0, maxInstances-int(number(dist, "onDemandBaseCapacity")))
			}
			quota := map[bool]int{false: newAccountStandardSpot, true: newAccountGSpot}[tier.GPU]
			require.LessOrEqual(t, spot*largest, quota, "%s's %s tier needs %d spot vCPUs at its maximum; a new account has %d",
				env, tier.Name, spot*largest, quota)
		}
	}
}

// With spot or without, a group tries every listed type, in the listed
// order on-demand, so one type short of capacity does not block the tier.
func TestEveryTierTriesEveryListedInstanceType(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env       string
		overrides map[string]string
		spot      bool
	}{{"prod", nil, false}, {"dev", nil, true}, {"prod", map[string]string{"cpuSpot": "true", "gpuSpot": "true", "gpuOnDemandBase": "1"}, true}} {
		cfg := config(t, c.env, c.overrides)
		d := run(t, cfg)
		for _, tier := range cfg.Tiers() {
			group := d.named("inferstack-" + tier.Name + "-asg")
			require.NotContains(t, group.Inputs, resource.PropertyKey("launchTemplate"), "a plain launch template launches one type only")
			mixed := obj(group.Inputs, "mixedInstancesPolicy")
			var types []string
			for _, o := range obj(mixed, "launchTemplate")["overrides"].ArrayValue() {
				types = append(types, str(o.ObjectValue(), "instanceType"))
			}
			require.Equal(t, tier.InstanceTypes, types, "%s %s", c.env, tier.Name)
			dist := obj(mixed, "instancesDistribution")
			require.Equal(t, "prioritized", str(dist, "onDemandAllocationStrategy"))
			if tier.Spot != c.spot && tier.Name == "cpu" {
				t.Fatalf("%s: cpu spot %v, want %v", c.env, tier.Spot, c.spot)
			}
			if tier.Spot {
				require.Equal(t, float64(0), number(dist, "onDemandPercentageAboveBaseCapacity"))
				require.Equal(t, float64(tier.OnDemandBase), number(dist, "onDemandBaseCapacity"))
				require.True(t, boolean(group.Inputs, "capacityRebalance"))
			} else {
				require.Equal(t, float64(100), number(dist, "onDemandPercentageAboveBaseCapacity"), "no spot: all on-demand")
				require.False(t, boolean(group.Inputs, "capacityRebalance"))
			}
		}
	}
}

// A launch that fails (a vCPU quota, no capacity) reaches the alarm topic:
// each tier's rule matches its own group's failures, targets the topic, and
// the topic and its key let that rule publish, and no rule of another stack.
func TestFailedLaunchesReachTheAlarmTopic(t *testing.T) {
	t.Parallel()
	cfg := config(t, "dev", nil)
	d := run(t, cfg)
	topic := str(d.named("inferstack-alarms").Outputs, "arn")
	topicPolicy := document(t, d.named("inferstack-alarms-policy"), "policy")
	require.Equal(t, topic, str(d.named("inferstack-alarms-policy").Inputs, "arn"))
	keyPolicy := document(t, d.named("inferstack-alarms-key"), "policy")
	from := func(arn string) map[string]string {
		return map[string]string{"aws:SourceArn": arn, "aws:SourceAccount": fakeaws.Account}
	}
	for _, tier := range cfg.Tiers() {
		rule := d.named("inferstack-" + tier.Name + "-launch-failed")
		require.Equal(t, deploy.LaunchFailureRuleName(cfg.Environment, tier.Name), str(rule.Inputs, "name"))
		var pattern struct {
			Source     []string `json:"source"`
			DetailType []string `json:"detail-type"`
			Detail     struct {
				Group []string `json:"AutoScalingGroupName"`
			} `json:"detail"`
		}
		require.NoError(t, json.Unmarshal([]byte(str(rule.Inputs, "eventPattern")), &pattern))
		require.Equal(t, []string{"aws.autoscaling"}, pattern.Source)
		require.Equal(t, []string{"EC2 Instance Launch Unsuccessful"}, pattern.DetailType)
		require.Equal(t, []string{str(d.named("inferstack-"+tier.Name+"-asg").Outputs, "name")}, pattern.Detail.Group)

		target := d.named("inferstack-" + tier.Name + "-launch-failed-alarm")
		require.Equal(t, topic, str(target.Inputs, "arn"))
		require.Equal(t, str(rule.Outputs, "name"), str(target.Inputs, "rule"))
		require.Contains(t, str(obj(target.Inputs, "inputTransformer"), "inputTemplate"), "<cause>")

		ruleARN := str(rule.Outputs, "arn")
		require.True(t, topicPolicy.AllowsPrincipal("Service", "events.amazonaws.com", "sns:Publish", topic, from(ruleARN)), ruleARN)
		require.True(t, keyPolicy.AllowsPrincipal("Service", "events.amazonaws.com", "kms:GenerateDataKey", "*", from(ruleARN)))
	}
	other := "arn:aws:events:us-east-1:" + fakeaws.Account + ":rule/someone-elses-rule"
	require.False(t, topicPolicy.AllowsPrincipal("Service", "events.amazonaws.com", "sns:Publish", topic, from(other)))
	require.False(t, topicPolicy.AllowsPrincipal("Service", "events.amazonaws.com", "sns:Publish", topic,
		map[string]string{"aws:SourceArn": strings.Replace(str(d.named("inferstack-cpu-launch-failed").Outputs, "arn"), fakeaws.Account, "999999999999", 1),
			"aws:SourceAccount": "999999999999"}))
	// The dead-letter alarms still publish.
	alarm := "arn:aws:cloudwatch:us-east-1:" + fakeaws.Account + ":alarm:inferstack-cpu-dlq-alarm"
	require.True(t, topicPolicy.AllowsPrincipal("Service", "cloudwatch.amazonaws.com", "sns:Publish", topic, from(alarm)))
}

// Every queue with a dead-letter queue keeps messages for less time than
// its DLQ: SQS keeps a dead-lettered message's first enqueue time, so a
// message that waited days for capacity would otherwise vanish from the
// DLQ soon after it arrived.
func TestDeadLettersOutliveTheirQueues(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"dev", "prod"} {
		d := run(t, config(t, env, nil))
		retention := map[string]float64{}
		for _, q := range d.ofType("aws:sqs/queue:Queue") {
			retention[str(q.Outputs, "arn")] = number(q.Inputs, "messageRetentionSeconds")
		}
		redriven := 0
		for _, q := range d.ofType("aws:sqs/queue:Queue") {
			if str(q.Inputs, "redrivePolicy") == "" {
				continue
			}
			var redrive struct {
				Target string `json:"deadLetterTargetArn"`
			}
			require.NoError(t, json.Unmarshal([]byte(str(q.Inputs, "redrivePolicy")), &redrive))
			require.Contains(t, retention, redrive.Target)
			require.Less(t, number(q.Inputs, "messageRetentionSeconds"), retention[redrive.Target],
				"%s keeps messages as long as its dead-letter queue", q.Name)
			redriven++
		}
		require.Equal(t, 3, redriven, "intake and two tiers")
	}
}

// A given image must be in ECR and named by digest; its repository is
// what the execution role may pull from.
func TestParseECRImage(t *testing.T) {
	t.Parallel()
	img, err := settings.ParseECRImage("210987654321.dkr.ecr.eu-west-1.amazonaws.com/team/gpu-worker" + digest)
	require.NoError(t, err)
	require.Equal(t, "arn:aws:ecr:eu-west-1:210987654321:repository/team/gpu-worker", img.RepositoryARN())
	for _, bad := range []string{"", "inferstack-worker:cpu", "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:cpu",
		"123456789012.dkr.ecr.us-east-1.amazonaws.com/w:cpu" + digest, "docker.io/library/w" + digest,
		"123456789012.dkr.ecr.us-east-1.amazonaws.com/w@sha256:abc"} {
		_, err := settings.ParseECRImage(bad)
		require.Error(t, err, bad)
	}
}

// A long job's worker replaces its message with a fresh copy at SQS's
// 12-hour visibility ceiling: its role may send to its own queue, and to no
// other tier's.
func TestWorkersMayReplaceOnlyTheirOwnMessages(t *testing.T) {
	t.Parallel()
	d := run(t, config(t, "dev", nil))
	for tier, other := range map[string]string{"cpu": "gpu", "gpu": "cpu"} {
		task := document(t, d.named("inferstack-"+tier+"-task-policy"), "policy")
		own, others := str(d.named("inferstack-"+tier+"-queue").Outputs, "arn"), str(d.named("inferstack-"+other+"-queue").Outputs, "arn")
		require.True(t, task.Allows("sqs:SendMessage", own, nil), tier)
		require.False(t, task.Allows("sqs:SendMessage", others, nil), tier)
		require.False(t, task.Allows("sqs:SendMessage", str(d.named("inferstack-intake").Outputs, "arn"), nil), tier)
	}
}
