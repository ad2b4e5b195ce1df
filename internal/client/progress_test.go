package client

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/internal/job"
)

func TestJobProgress(t *testing.T) {
	t.Parallel()
	split := func(state job.State, done, total int64, shardsDone int) job.Status {
		return job.Status{State: state, SamplesDone: done, SamplesTotal: total, Shards: &job.ShardsProgress{Plan: "p", Total: 4, Done: shardsDone}}
	}
	shard := func(state job.State, done, total int64) job.ShardStatus {
		return job.ShardStatus{State: state, SamplesDone: done, SamplesTotal: total}
	}
	for _, tc := range []struct {
		name   string
		status job.Status
		shards []job.ShardStatus
		want   Progress
	}{
		{name: "one worker: its status", status: job.Status{State: job.StateRunning, SamplesDone: 10, SamplesTotal: 100},
			want: Progress{SamplesDone: 10, SamplesTotal: 100}},
		{name: "split, no shard started", status: split(job.StateRunning, 0, 3000, 0),
			want: Progress{SamplesTotal: 3000, Shards: 4}},
		{name: "split, running: the shards' sum against the plan's total", status: split(job.StateRunning, 0, 3000, 0),
			shards: []job.ShardStatus{shard(job.StateDone, 768, 768), shard(job.StateRunning, 100, 768), shard(job.StateRunning, 0, 704)},
			want:   Progress{SamplesDone: 868, SamplesTotal: 3000, Shards: 4, ShardsDone: 1}},
		{name: "split text table: total unknown until every shard counted", status: split(job.StateRunning, 0, 0, 0),
			shards: []job.ShardStatus{shard(job.StateDone, 10, 10), shard(job.StateRunning, 5, 12)},
			want:   Progress{SamplesDone: 15, Shards: 4, ShardsDone: 1}},
		{name: "split text table: every shard counted", status: split(job.StateRunning, 0, 0, 0),
			shards: []job.ShardStatus{shard(job.StateDone, 10, 10), shard(job.StateDone, 12, 12), shard(job.StateRunning, 5, 9), shard(job.StateRunning, 0, 11)},
			want:   Progress{SamplesDone: 27, SamplesTotal: 42, Shards: 4, ShardsDone: 2}},
		{name: "split and assembled: the job's status", status: split(job.StateDone, 3000, 3000, 4),
			shards: []job.ShardStatus{shard(job.StateDone, 1, 1)},
			want:   Progress{SamplesDone: 3000, SamplesTotal: 3000, Shards: 4, ShardsDone: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, JobProgress(tc.status, tc.shards))
		})
	}
}

func TestOutputFiles(t *testing.T) {
	t.Parallel()
	npy := manifest.Manifest{Outputs: []manifest.OutputFile{{Name: "logits", File: "logits.npy"}, {Name: "probs", File: "probs.npy"}}}
	require.Equal(t, []string{"logits.npy", "probs.npy"}, outputFiles(npy))
	table := manifest.Manifest{Outputs: []manifest.OutputFile{{Name: "logits", File: "predictions.parquet"}, {Name: "probs", File: "predictions.parquet"}}}
	require.Equal(t, []string{"predictions.parquet"}, outputFiles(table), "columns of one file")
	dataset := manifest.Manifest{Outputs: []manifest.OutputFile{{Name: "logits", File: "predictions/"}, {Name: "probs", File: "predictions/"}},
		Parts: []string{"predictions/part-00000.parquet", "predictions/part-00001.parquet"}}
	require.Equal(t, []string{"predictions/part-00000.parquet", "predictions/part-00001.parquet"}, outputFiles(dataset), "a dataset's parts, in order")
}
