package worker

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/configerr"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/s3io"
)

// Config is the worker's settings: what its deployment sets (runenv.Worker,
// the task definition's environment) plus tuning with defaults.
type Config struct {
	runenv.Worker
	// BatchSize and ChunkSamples pin the engine (0: its defaults); threads
	// come from the deployment (runenv.Worker.Threads), fixed so resumed
	// jobs stay byte-identical.
	BatchSize    int64
	ChunkSamples int64
	// ResultRowGroupBytes sizes a table result's row groups (0: the
	// predictions writer's default); a resumed job keeps its own.
	ResultRowGroupBytes int64
	// Name identifies this process in logs and job status (host-pid).
	Name        string
	ECSAgentURI string // set by ECS; enables scale-in protection
	// StatusEvery bounds how often a running job's status object is rewritten.
	StatusEvery time.Duration
	// PollWait is the long-poll wait (SQS allows up to 20 s); a soft stop
	// waits for the poll in progress.
	PollWait time.Duration
	// ReadPartBytes and ReadConcurrency shape the input's read-ahead: ranged
	// GETs of ReadPartBytes, ReadConcurrency of them at once and no more
	// buffered, so it holds at most their product (0: the defaults).
	ReadPartBytes   int64
	ReadConcurrency int
	// VisibilityCeiling is how long after its ReceiveMessage request a
	// message's visibility can be extended (0: SQS's limit). Before it, a
	// running job hands over to a fresh copy of its message (heartbeat.go).
	VisibilityCeiling time.Duration
}

// The SQS Developer Guide, "Amazon SQS visibility timeout": "The maximum
// visibility timeout is 12 hours from the time that Amazon SQS receives the
// ReceiveMessage request. Extending the visibility timeout does not reset
// the 12-hour maximum."
const sqsVisibilityCeiling = runenv.MaxVisibility

// ceiling is the VisibilityCeiling in force.
func (c Config) ceiling() time.Duration {
	if c.VisibilityCeiling > 0 {
		return c.VisibilityCeiling
	}
	return sqsVisibilityCeiling
}

// Bounds of the read-ahead settings: parts from 64 KiB (below that a GET is
// all round trip) to 1 GiB, and at most 64 GETs at once.
const (
	minReadPartBytes   = 64 << 10
	maxReadPartBytes   = 1 << 30
	maxReadConcurrency = 64
)

// ParseConfig reads and validates Config from the environment getenv reads.
func ParseConfig(getenv func(string) string) (Config, error) {
	deployed, err := runenv.ParseWorker(getenv)
	if err != nil {
		return Config{}, err
	}
	if _, err := inference.ParseDevice(deployed.Device); err != nil {
		return Config{}, &configerr.Error{Key: runenv.EnvDevice, Err: err}
	}
	host, _ := os.Hostname()
	c := Config{
		Worker:      deployed,
		Name:        fmt.Sprintf("%s-%d", host, os.Getpid()),
		ECSAgentURI: getenv("ECS_AGENT_URI"), StatusEvery: 2 * time.Second, PollWait: 20 * time.Second,
		ReadPartBytes: s3io.DefaultReadPartBytes, ReadConcurrency: s3io.DefaultReadConcurrency,
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{runenv.EnvStatusEvery, &c.StatusEvery}, {runenv.EnvPollWait, &c.PollWait}} {
		if v := getenv(d.key); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil || parsed < 0 {
				return Config{}, &configerr.Error{Key: d.key, Err: fmt.Errorf("%q: want a duration", v)}
			}
			*d.dst = parsed
		}
	}
	if c.PollWait > 20*time.Second {
		return Config{}, &configerr.Error{Key: runenv.EnvPollWait, Err: fmt.Errorf("SQS long polls wait at most 20s")}
	}
	for _, n := range []struct {
		key string
		dst *int64
	}{{runenv.EnvBatchSize, &c.BatchSize}, {runenv.EnvChunkSamples, &c.ChunkSamples}, {runenv.EnvResultRowGroupBytes, &c.ResultRowGroupBytes}} {
		if v := getenv(n.key); v != "" {
			parsed, err := strconv.ParseInt(v, 10, 64)
			if err != nil || parsed < 1 {
				return Config{}, &configerr.Error{Key: n.key, Err: fmt.Errorf("%q: want a positive integer", v)}
			}
			*n.dst = parsed
		}
	}
	if v := getenv(runenv.EnvReadPartBytes); v != "" {
		parsed, err := strconv.ParseInt(v, 10, 64)
		if err != nil || parsed < minReadPartBytes || parsed > maxReadPartBytes {
			return Config{}, &configerr.Error{Key: runenv.EnvReadPartBytes,
				Err: fmt.Errorf("%q: want a number of bytes from %d to %d", v, minReadPartBytes, maxReadPartBytes)}
		}
		c.ReadPartBytes = parsed
	}
	if v := getenv(runenv.EnvReadConcurrency); v != "" {
		parsed, err := strconv.Atoi(v)
		if err != nil || parsed < 1 || parsed > maxReadConcurrency {
			return Config{}, &configerr.Error{Key: runenv.EnvReadConcurrency,
				Err: fmt.Errorf("%q: want an integer from 1 to %d", v, maxReadConcurrency)}
		}
		c.ReadConcurrency = parsed
	}
	return c, nil
}
