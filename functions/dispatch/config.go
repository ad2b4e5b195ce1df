package dispatch

import (
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
)

// Config is the function's settings, read once from the environment its
// deployment sets (package runenv holds the contract).
type Config = runenv.Dispatch

// ConfigFromEnv reads and validates Config; getenv is os.Getenv outside tests.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	return runenv.ParseDispatch(getenv)
}

// tierQueueURL is the queue of an enabled tier, "" for a disabled one.
func tierQueueURL(c Config, t job.Tier) string {
	switch t {
	case job.TierCPU:
		return c.CPUQueueURL
	case job.TierGPU:
		return c.GPUQueueURL
	}
	return ""
}
