package dispatch

import (
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
)

// tierQueueURL is the queue of an enabled tier, "" for a disabled one.
func tierQueueURL(c runenv.Dispatch, t job.Tier) string {
	switch t {
	case job.TierCPU:
		return c.CPUQueueURL
	case job.TierGPU:
		return c.GPUQueueURL
	}
	return ""
}
