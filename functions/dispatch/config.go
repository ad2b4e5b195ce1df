// Package dispatch is the front door of the stack: a Lambda handler that
// validates intake messages and forwards each to the CPU or GPU tier's queue,
// or dead-letters it with the reason.
package dispatch

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/inferstack/inferstack/internal/job"
)

// Config is the function's settings, read once from its environment.
type Config struct {
	Bucket        string
	InputPrefix   string
	TierParameter string        // SSM parameter holding cpu, gpu or auto
	TierCacheTTL  time.Duration // how long a read of the parameter is trusted
	CPUQueueURL   string
	GPUQueueURL   string // empty: the gpu tier is disabled
	DeadLetterURL string // the intake queue's dead-letter queue
	AutoGPUMin    int64  // with tier auto, inputs of at least this many bytes go to the gpu tier
	AllowOverride bool   // may a message choose its tier?
}

// The environment variables Config is read from (the Pulumi program sets them).
const (
	EnvBucket        = "INFERSTACK_BUCKET"
	EnvInputPrefix   = "INFERSTACK_INPUT_PREFIX"
	EnvTierParameter = "INFERSTACK_TIER_PARAMETER"
	EnvTierCacheTTL  = "INFERSTACK_TIER_CACHE_TTL"
	EnvCPUQueueURL   = "INFERSTACK_CPU_QUEUE_URL"
	EnvGPUQueueURL   = "INFERSTACK_GPU_QUEUE_URL"
	EnvDeadLetterURL = "INFERSTACK_DEAD_LETTER_QUEUE_URL"
	EnvAutoGPUMin    = "INFERSTACK_AUTO_GPU_MIN_BYTES"
	EnvAllowOverride = "INFERSTACK_ALLOW_TIER_OVERRIDE"
)

// ConfigError names the setting that is wrong.
type ConfigError struct {
	Key string
	Err error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("config %s: %v", e.Key, e.Err) }
func (e *ConfigError) Unwrap() error { return e.Err }

var errRequired = errors.New("required")

// ConfigFromEnv reads and validates Config; getenv is os.Getenv outside tests.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Bucket:        getenv(EnvBucket),
		InputPrefix:   getenv(EnvInputPrefix),
		TierParameter: getenv(EnvTierParameter),
		TierCacheTTL:  30 * time.Second,
		CPUQueueURL:   getenv(EnvCPUQueueURL),
		GPUQueueURL:   getenv(EnvGPUQueueURL),
		DeadLetterURL: getenv(EnvDeadLetterURL),
		AutoGPUMin:    1 << 30,
	}
	for key, v := range map[string]string{EnvBucket: c.Bucket, EnvTierParameter: c.TierParameter, EnvCPUQueueURL: c.CPUQueueURL, EnvDeadLetterURL: c.DeadLetterURL} {
		if v == "" {
			return Config{}, &ConfigError{key, errRequired}
		}
	}
	if c.InputPrefix == "" {
		c.InputPrefix = "inputs/"
	}
	if err := job.CheckRelativeKey(c.InputPrefix); err != nil || c.InputPrefix[len(c.InputPrefix)-1] != '/' {
		return Config{}, &ConfigError{EnvInputPrefix, fmt.Errorf("%q must be a relative key prefix ending in '/'", c.InputPrefix)}
	}
	if v := getenv(EnvTierCacheTTL); v != "" {
		ttl, err := time.ParseDuration(v)
		if err != nil || ttl < 0 {
			return Config{}, &ConfigError{EnvTierCacheTTL, fmt.Errorf("%q is not a duration like 30s", v)}
		}
		c.TierCacheTTL = ttl
	}
	if v := getenv(EnvAutoGPUMin); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return Config{}, &ConfigError{EnvAutoGPUMin, fmt.Errorf("%q is not a byte count", v)}
		}
		c.AutoGPUMin = n
	}
	if v := getenv(EnvAllowOverride); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, &ConfigError{EnvAllowOverride, fmt.Errorf("%q is not true or false", v)}
		}
		c.AllowOverride = b
	}
	return c, nil
}

// queueURL is the queue of an enabled tier, "" for a disabled one.
func (c Config) queueURL(t job.Tier) string {
	switch t {
	case job.TierCPU:
		return c.CPUQueueURL
	case job.TierGPU:
		return c.GPUQueueURL
	}
	return ""
}
