// Package worker runs inference jobs from a tier's SQS queue: it streams each
// input from S3 through the engine, checkpoints every chunk so a redelivered
// job resumes, writes results and the manifest last, and only then deletes
// the message. Poison is dead-lettered at once with an error record.
package worker

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/inferstack/inferstack/inference"
)

// Config is the worker's settings, from the environment the task definition sets.
type Config struct {
	QueueURL      string
	DeadLetterURL string
	Bucket        string
	ModelKey      string // default model, under models/
	Tier          string
	Device        inference.Device
	// Visibility is what the heartbeat extends a job's message to; it ticks
	// every third of it.
	Visibility time.Duration
	// MaxReceives matches the queue's redrive policy: the last delivery of a
	// failing job is dead-lettered by the worker, with an error record.
	MaxReceives int
	// StopTimeout is how long a job may go on after SIGTERM (below ECS's).
	StopTimeout time.Duration
	// BatchSize, ChunkSamples and Threads pin the engine (0: its defaults;
	// threads default to DefaultThreads so resumed jobs stay byte-identical).
	BatchSize    int64
	ChunkSamples int64
	Threads      int
	WorkerID     string
	ECSAgentURI  string // set by ECS; enables scale-in protection
	// StatusEvery bounds how often a running job's status object is rewritten.
	StatusEvery time.Duration
	// PollWait is the long-poll wait (SQS allows up to 20 s); a soft stop
	// waits for the poll in progress.
	PollWait time.Duration
}

// The environment variables Config is read from.
const (
	EnvQueueURL      = "INFERSTACK_QUEUE_URL"
	EnvDeadLetterURL = "INFERSTACK_DEAD_LETTER_QUEUE_URL"
	EnvBucket        = "INFERSTACK_BUCKET"
	EnvModelKey      = "INFERSTACK_MODEL_KEY"
	EnvTier          = "INFERSTACK_TIER"
	EnvDevice        = "INFERSTACK_DEVICE"
	EnvVisibility    = "INFERSTACK_VISIBILITY_TIMEOUT"
	EnvMaxReceives   = "INFERSTACK_MAX_RECEIVES"
	EnvStopTimeout   = "INFERSTACK_STOP_TIMEOUT"
	EnvBatchSize     = "INFERSTACK_BATCH_SIZE"
	EnvChunkSamples  = "INFERSTACK_CHUNK_SAMPLES"
	EnvThreads       = "INFERSTACK_THREADS"
	EnvStatusEvery   = "INFERSTACK_STATUS_EVERY"
	EnvPollWait      = "INFERSTACK_POLL_WAIT"
)

// ConfigError names the variable that is wrong.
type ConfigError struct {
	Key string
	Err error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("%s: %v", e.Key, e.Err) }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigFromEnv reads and validates Config.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	host, _ := os.Hostname()
	c := Config{
		QueueURL: getenv(EnvQueueURL), DeadLetterURL: getenv(EnvDeadLetterURL), Bucket: getenv(EnvBucket),
		ModelKey: getenv(EnvModelKey), Tier: getenv(EnvTier),
		Device: inference.DeviceAuto, Visibility: 5 * time.Minute, MaxReceives: 5, StopTimeout: 100 * time.Second,
		Threads: inference.DefaultThreads(), WorkerID: fmt.Sprintf("%s-%d", host, os.Getpid()),
		ECSAgentURI: getenv("ECS_AGENT_URI"), StatusEvery: 2 * time.Second, PollWait: 20 * time.Second,
	}
	for key, v := range map[string]string{EnvQueueURL: c.QueueURL, EnvDeadLetterURL: c.DeadLetterURL, EnvBucket: c.Bucket, EnvModelKey: c.ModelKey} {
		if v == "" {
			return Config{}, &ConfigError{key, fmt.Errorf("required")}
		}
	}
	if c.Tier == "" {
		c.Tier = "cpu"
	}
	if v := getenv(EnvDevice); v != "" {
		d, err := inference.ParseDevice(v)
		if err != nil {
			return Config{}, &ConfigError{EnvDevice, err}
		}
		c.Device = d
	}
	durations := []struct {
		key string
		dst *time.Duration
		min time.Duration
	}{{EnvVisibility, &c.Visibility, 3 * time.Second}, {EnvStopTimeout, &c.StopTimeout, 0}, {EnvStatusEvery, &c.StatusEvery, 0}, {EnvPollWait, &c.PollWait, 0}}
	for _, d := range durations {
		if v := getenv(d.key); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil || parsed < d.min {
				return Config{}, &ConfigError{d.key, fmt.Errorf("%q: want a duration of at least %s", v, d.min)}
			}
			*d.dst = parsed
		}
	}
	if c.PollWait > 20*time.Second {
		return Config{}, &ConfigError{EnvPollWait, fmt.Errorf("SQS long polls wait at most 20s")}
	}
	if c.Visibility > 12*time.Hour {
		return Config{}, &ConfigError{EnvVisibility, fmt.Errorf("SQS allows at most 12h")}
	}
	ints := []struct {
		key string
		dst *int64
	}{{EnvBatchSize, &c.BatchSize}, {EnvChunkSamples, &c.ChunkSamples}}
	for _, n := range ints {
		if v := getenv(n.key); v != "" {
			parsed, err := strconv.ParseInt(v, 10, 64)
			if err != nil || parsed < 1 {
				return Config{}, &ConfigError{n.key, fmt.Errorf("%q: want a positive integer", v)}
			}
			*n.dst = parsed
		}
	}
	for _, n := range []struct {
		key string
		dst *int
	}{{EnvMaxReceives, &c.MaxReceives}, {EnvThreads, &c.Threads}} {
		if v := getenv(n.key); v != "" {
			parsed, err := strconv.Atoi(v)
			if err != nil || parsed < 1 {
				return Config{}, &ConfigError{n.key, fmt.Errorf("%q: want a positive integer", v)}
			}
			*n.dst = parsed
		}
	}
	return c, nil
}
