package deploy

import (
	"encoding/json"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/policy"
)

// MetricsNamespace is where the worker's embedded-metric-format logs land.
const MetricsNamespace = job.MetricsNamespace

// dashboardBody lays out queue depths, dead letters, tasks, instances,
// throughput and CPU fallbacks for the Core and its tiers.
func dashboardBody(c *Core, tiers []*ComputeTier) pulumi.StringOutput {
	inputs := []any{c.Intake.Name, c.IntakeDLQ.Name, c.Intake.Arn}
	for _, t := range tiers {
		inputs = append(inputs, t.Queue.Name, t.DeadLetter.Name, t.Service.Name, t.Group.Name, t.Cluster.Name)
	}
	return pulumi.All(inputs...).ApplyT(func(v []any) string {
		s := func(i int) string { return v[i].(string) }
		region := policy.ARNField(s(2), 3)
		depth := [][]any{{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", s(0), map[string]string{"label": "intake"}}}
		dead := [][]any{{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", s(1), map[string]string{"label": "intake DLQ"}}}
		var tasks, instances [][]any
		for i, t := range tiers {
			o := 3 + 5*i
			depth = append(depth,
				[]any{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", s(o), map[string]string{"label": t.Tier + " waiting"}},
				[]any{"AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", s(o), map[string]string{"label": t.Tier + " in flight"}})
			dead = append(dead, []any{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", s(o + 1), map[string]string{"label": t.Tier + " DLQ"}})
			tasks = append(tasks, []any{"ECS/ContainerInsights", "RunningTaskCount", "ClusterName", s(o + 4), "ServiceName", s(o + 2), map[string]string{"label": t.Tier}})
			instances = append(instances, []any{"AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", s(o + 3), map[string]string{"label": t.Tier}})
		}
		widget := func(title string, metrics [][]any, stat string) map[string]any {
			return map[string]any{"type": "metric", "width": 12, "height": 6, "properties": map[string]any{
				"title": title, "region": region, "stat": stat, "period": 60, "view": "timeSeries", "metrics": metrics,
			}}
		}
		body := map[string]any{"widgets": []any{
			widget("Queue depth", depth, "Maximum"),
			widget("Dead letters", dead, "Maximum"),
			widget("Running tasks", tasks, "Maximum"),
			widget("Instances", instances, "Maximum"),
			widget("Throughput (samples)", [][]any{{MetricsNamespace, "Samples", "Tier", string(job.TierCPU)}, {MetricsNamespace, "Samples", "Tier", string(job.TierGPU)}}, "Sum"),
			widget("CPU fallbacks on GPU nodes", [][]any{{MetricsNamespace, "CPUFallbacks", "Tier", string(job.TierGPU)}}, "Sum"),
		}}
		data, _ := json.Marshal(body)
		return string(data)
	}).(pulumi.StringOutput)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
