package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/internal/client"
	"github.com/inferstack/inferstack/internal/job"
)

// `inferstack status`: one worker's job prints as it always has; a split
// job prints its shards done and its samples overall.
func TestJobStatusLine(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	running := job.Status{JobID: "j1", State: job.StateRunning, Tier: "cpu", Worker: "w1", SamplesDone: 10, SamplesTotal: 100, UpdatedAt: at}
	done := job.Status{JobID: "j2", State: job.StateDone, Tier: "cpu", Worker: "w2", Results: "results/j2/", SamplesDone: 3000, SamplesTotal: 3000,
		Shards: &job.ShardsProgress{Plan: "p", Total: 4, Done: 4}, UpdatedAt: at}
	failed := job.Status{JobID: "j3", State: job.StateFailed, Tier: "gpu", Worker: "w3", Reason: "shard 2: truncated input",
		Shards: &job.ShardsProgress{Plan: "p", Total: 8}, UpdatedAt: at}
	for _, tc := range []struct {
		name   string
		status job.Status
		p      client.Progress
		want   string
	}{
		{"one worker, unchanged", running, client.Progress{SamplesDone: 10, SamplesTotal: 100},
			"j1: running on cpu (w1), 10/100 samples, updated 2026-12-07T10:00:00Z"},
		{"split, running", running, client.Progress{SamplesDone: 1234567, SamplesTotal: 2000000, Shards: 8, ShardsDone: 3},
			"j1: running on cpu (w1), shards 3/8 done, 1,234,567 of 2,000,000 samples, updated 2026-12-07T10:00:00Z"},
		{"split text table, total unknown", running, client.Progress{SamplesDone: 999, Shards: 8, ShardsDone: 1},
			"j1: running on cpu (w1), shards 1/8 done, 999 samples, updated 2026-12-07T10:00:00Z"},
		{"split, done", done, client.JobProgress(done, nil),
			"j2: done on cpu (w2), shards 4/4 done, 3,000 of 3,000 samples, updated 2026-12-07T10:00:00Z; results in s3://b/results/j2/"},
		{"split, failed", failed, client.Progress{SamplesDone: 5, SamplesTotal: 80, Shards: 8, ShardsDone: 2},
			"j3: failed on gpu (w3), shards 2/8 done, 5 of 80 samples, updated 2026-12-07T10:00:00Z: shard 2: truncated input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, jobStatusLine("b", tc.status, tc.p))
		})
	}
}

func TestThousands(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 123456: "123,456", 1234567: "1,234,567", -1234: "-1,234"} {
		require.Equal(t, want, thousands(n), "%d", n)
	}
}

// The live progress of `submit --wait` says the same as status.
func TestProgressShowsShards(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := newProgress(&b, false)
	p.UpdateJob(client.Progress{SamplesDone: 500, SamplesTotal: 2000, Shards: 4, ShardsDone: 1})
	p.UpdateJob(client.Progress{SamplesDone: 2000, SamplesTotal: 2000, Shards: 4, ShardsDone: 4})
	require.Contains(t, b.String(), "progress:  25% shards 1/4 done, 500 of 2,000 samples")
	require.Contains(t, b.String(), "progress: 100% shards 4/4 done, 2,000 of 2,000 samples")

	b.Reset()
	p = newProgress(&b, false)
	p.UpdateJob(client.Progress{SamplesDone: 100, SamplesTotal: 100})
	require.Contains(t, b.String(), "progress: 100% 100/100 samples", "one worker's job: as before")

	b.Reset()
	p = newProgress(&b, false)
	p.UpdateJob(client.Progress{SamplesDone: 7, Shards: 4})
	require.Empty(t, b.String(), "no total yet: no bar")
}

// `inferstack results` prints each file it downloaded: a split table job's
// part files, then the dataset's columns; .npy outputs as before.
func TestResultLines(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("out", "r")
	npy := manifest.Manifest{Outputs: []manifest.OutputFile{{Name: "probs", File: "probs.npy", DType: "<f4", Shape: []int64{3000, 5}}}}
	require.Equal(t, []string{filepath.Join(dir, "probs.npy") + "  <f4 [3000 5]"}, resultLines(dir, npy))

	table := manifest.Manifest{Outputs: []manifest.OutputFile{{Name: "probs", File: "predictions.parquet", DType: "float32", Shape: []int64{1000, 5}}}}
	require.Equal(t, []string{filepath.Join(dir, "predictions.parquet") + "  column probs: float32 [1000 5]"}, resultLines(dir, table))

	dataset := manifest.Manifest{
		Outputs: []manifest.OutputFile{{Name: "logits", File: "predictions/", DType: "float32", Shape: []int64{1000, 5}},
			{Name: "probs", File: "predictions/", DType: "float32", Shape: []int64{1000, 5}}},
		Parts: []string{"predictions/part-00000.parquet", "predictions/part-00001.parquet"},
	}
	require.Equal(t, []string{
		filepath.Join(dir, "predictions", "part-00000.parquet"),
		filepath.Join(dir, "predictions", "part-00001.parquet"),
		filepath.Join(dir, "predictions") + string(filepath.Separator) + "  column logits: float32 [1000 5]",
		filepath.Join(dir, "predictions") + string(filepath.Separator) + "  column probs: float32 [1000 5]",
	}, resultLines(dir, dataset))
}

// --shards takes 1 to job.MaxShards; anything else is a usage error naming
// the flag, before anything is uploaded.
func TestSubmitShardsFlag(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"", "1", "4", fmt.Sprint(job.MaxShards)} {
		_, err := parseShards(v)
		require.NoError(t, err, "%q", v)
	}
	n, err := parseShards("4")
	require.NoError(t, err)
	require.Equal(t, 4, n)
	_, _, input := fixture(t)
	for _, v := range []string{"0", "-1", fmt.Sprint(job.MaxShards + 1), "four", "2.5"} {
		r := run(t, nil, "submit", input, "--shards", v, "--bucket", "b", "--intake-queue-url", "http://127.0.0.1:9/q")
		require.Equal(t, exitUsage, r.code, "--shards %s: %s", v, r.stderr)
		require.Contains(t, r.stderr, fmt.Sprintf("--shards %q: want 1 to %d", v, job.MaxShards))
	}
	r := run(t, nil, "submit", "--help")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stderr+r.stdout, "-shards N")
}
