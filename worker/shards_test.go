package worker_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/testenv"
)

// TestShardedJobMatchesALocalRunByteForByte splits a job into 4 shards run
// by 2 workers: the assembled outputs are the bytes one local run writes,
// the manifest lists the shards, one event announces the job, and the
// shards' own results are gone.
func TestShardedJobMatchesALocalRunByteForByte(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := e.input("big.npy", 3000)
	for i := range 2 {
		cfg := e.cfg
		cfg.Name = fmt.Sprintf("worker-%d", i)
		e.start(cfg, nil, nil, nil)
	}
	jobID := e.send(`{"filename": "big.npy", "shards": 4}`)

	testenv.Eventually(t, "the manifest", 60*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	testenv.Eventually(t, "the queue to drain", 20*time.Second, func() bool { return e.drained(e.queue) })
	m := e.requireResults(jobID, e.reference(input))
	require.EqualValues(t, 3000, m.Samples)
	require.Len(t, m.Shards, 4)
	next := int64(0)
	for i, s := range m.Shards {
		require.Equal(t, i, s.Index)
		require.Equal(t, next, s.From, "shards cover every sample once")
		require.Zero(t, s.From%e.cfg.BatchSize, "shards start at whole batches")
		require.Equal(t, s.To-s.From, s.Samples)
		require.Contains(t, []string{"worker-0", "worker-1"}, s.Worker)
		next = s.To
	}
	require.EqualValues(t, 3000, next)
	require.Equal(t, []int64{3000, 5}, m.Outputs[0].Shape)

	var status job.Status
	data, ok := e.get(job.StatusKey(jobID))
	require.True(t, ok)
	require.NoError(t, json.Unmarshal(data, &status))
	require.Equal(t, job.StateDone, status.State)
	require.Equal(t, &job.ShardsProgress{Plan: status.Shards.Plan, Total: 4, Done: 4}, status.Shards)
	require.EqualValues(t, 3000, status.SamplesDone)
	for i := range 4 {
		var shard job.ShardStatus
		data, ok := e.get(job.ShardStatusKey(jobID, status.Shards.Plan, i))
		require.True(t, ok, "shard %d's status", i)
		require.NoError(t, json.Unmarshal(data, &shard))
		require.Equal(t, job.StateDone, shard.State)
		_, kept := e.get(job.ShardResultsPrefix(jobID, status.Shards.Plan, i) + m.Outputs[0].File)
		require.False(t, kept, "shard %d's result is deleted once assembled", i)
	}

	events := e.events()
	require.Len(t, events, 1, "one event for the job, none per shard")
	require.Equal(t, job.EventFinished, events[0].State)
	require.EqualValues(t, 3000, events[0].Samples)
	require.True(t, e.drained(e.dlq))
}
