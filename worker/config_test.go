package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/configerr"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/s3io"
)

func TestReadAheadSettingsFromEnv(t *testing.T) {
	t.Parallel()
	base := runenv.Worker{Region: "us-east-1", Tier: "cpu", Device: "cpu", QueueURL: "q", DeadLetterURL: "d", Bucket: "b",
		ModelKey: "models/m.onnx", Visibility: time.Minute, MaxReceives: 5, StopTimeout: time.Minute,
		EventsTopicARN: "arn:aws:sns:us-east-1:123456789012:events", Threads: 1}.Env()
	for _, c := range []struct {
		set         map[string]string
		part        int64
		concurrency int
		badKey      string
	}{
		{set: nil, part: s3io.DefaultReadPartBytes, concurrency: s3io.DefaultReadConcurrency},
		{set: map[string]string{runenv.EnvReadPartBytes: "16777216", runenv.EnvReadConcurrency: "16"}, part: 16 << 20, concurrency: 16},
		{set: map[string]string{runenv.EnvReadPartBytes: "65536", runenv.EnvReadConcurrency: "1"}, part: 64 << 10, concurrency: 1},
		{set: map[string]string{runenv.EnvReadPartBytes: "8MiB"}, badKey: runenv.EnvReadPartBytes},
		{set: map[string]string{runenv.EnvReadPartBytes: "1000"}, badKey: runenv.EnvReadPartBytes},
		{set: map[string]string{runenv.EnvReadPartBytes: "2147483648"}, badKey: runenv.EnvReadPartBytes},
		{set: map[string]string{runenv.EnvReadConcurrency: "0"}, badKey: runenv.EnvReadConcurrency},
		{set: map[string]string{runenv.EnvReadConcurrency: "65"}, badKey: runenv.EnvReadConcurrency},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range c.set {
			env[k] = v
		}
		cfg, err := ParseConfig(func(k string) string { return env[k] })
		if c.badKey != "" {
			var ce *configerr.Error
			require.ErrorAs(t, err, &ce, "%v", c.set)
			require.Equal(t, c.badKey, ce.Key)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, c.part, cfg.ReadPartBytes)
		require.Equal(t, c.concurrency, cfg.ReadConcurrency)
	}
}
