package dispatch

import "github.com/inferstack/inferstack/internal/job"

// ChooseTier resolves where a job runs. setting is the active tier (the SSM
// parameter, or the message's allowed override); size is the input's size in
// bytes, consulted only for auto. A disabled gpu tier is never chosen: its
// work goes to the cpu tier, which ONNX Runtime serves just as correctly.
func ChooseTier(setting job.Tier, size, autoGPUMin int64, gpuEnabled bool) (tier job.Tier, why string) {
	tier, why = setting, "tier setting"
	if setting == job.TierAuto {
		tier, why = job.TierCPU, "auto: input below the gpu threshold"
		if size >= autoGPUMin {
			tier, why = job.TierGPU, "auto: input at or above the gpu threshold"
		}
	}
	if tier == job.TierGPU && !gpuEnabled {
		tier, why = job.TierCPU, "gpu tier disabled"
	}
	return tier, why
}

// SQS batch limits: 10 entries, and (counting bodies and attributes) 256 KiB
// in all, the lowest MaximumMessageSize a queue may be configured with by default.
const (
	maxBatchEntries = 10
	maxBatchBytes   = 256 << 10
)

// splitBatches cuts entries of the given sizes into consecutive ranges
// [start,end) that each fit one SendMessageBatch call.
func splitBatches(sizes []int) [][2]int {
	var out [][2]int
	start, bytes := 0, 0
	for i, size := range sizes {
		if i > start && (i-start == maxBatchEntries || bytes+size > maxBatchBytes) {
			out = append(out, [2]int{start, i})
			start, bytes = i, 0
		}
		bytes += size
	}
	if start < len(sizes) {
		out = append(out, [2]int{start, len(sizes)})
	}
	return out
}
