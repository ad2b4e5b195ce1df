package worker

import (
	"encoding/json"
	"time"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
)

// emit writes one embedded-metric-format line: CloudWatch Logs extracts the
// metrics from it (namespace Inferstack, by tier) whatever sent it, the ECS
// awslogs driver included (CloudWatch user guide, "Using the PutLogEvents API
// to send manually-created embedded metric format logs": the json/emf header
// is optional).
func (w *Worker) emit(jobID string, m *inference.Manifest, took time.Duration) {
	fallbacks := 0
	if m.Device.Fallback != "" {
		fallbacks = 1
	}
	w.writeEMF(map[string]any{"job_id": jobID, "Jobs": 1, "Samples": m.Samples, "JobSeconds": took.Seconds(),
		"SamplesPerSecond": m.SamplesPerSecond, "CPUFallbacks": fallbacks, "device": string(m.Device.Used)},
		[]metric{{"Jobs", "Count"}, {"Samples", "Count"}, {"JobSeconds", "Seconds"}, {"SamplesPerSecond", "Count/Second"}, {"CPUFallbacks", "Count"}})
}

func (w *Worker) emitFailure() {
	w.writeEMF(map[string]any{"FailedJobs": 1}, []metric{{"FailedJobs", "Count"}})
}

type metric struct{ Name, Unit string }

func (w *Worker) writeEMF(fields map[string]any, metrics []metric) {
	defs := make([]map[string]string, len(metrics))
	for i, m := range metrics {
		defs[i] = map[string]string{"Name": m.Name, "Unit": m.Unit}
	}
	fields["Tier"] = w.cfg.Tier
	fields["_aws"] = map[string]any{
		"Timestamp": time.Now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace": job.MetricsNamespace, "Dimensions": [][]string{{"Tier"}}, "Metrics": defs,
		}},
	}
	data, _ := json.Marshal(fields)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.metrics.Write(append(data, '\n'))
}
