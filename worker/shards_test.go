package worker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
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

// columnValues reads every column of Parquet files, in order, as text.
func columnValues(t testing.TB, files ...[]byte) map[string][]string {
	values := map[string][]string{}
	for _, data := range files {
		tbl := testenv.ReadParquet(t, data)
		for i := range int(tbl.NumCols()) {
			name := tbl.Schema().Field(i).Name
			for _, c := range tbl.Column(i).Data().Chunks() {
				for r := range c.Len() {
					values[name] = append(values[name], c.ValueStr(r))
				}
			}
		}
		tbl.Release()
	}
	return values
}

// TestShardedTableJobWritesOrderedParts splits a Parquet table at its row
// groups: the result is a dataset of part files whose rows, in order, are
// those of one local run's predictions.parquet.
func TestShardedTableJobWritesOrderedParts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := e.tableInput("rows.parquet", 3000, -1)
	e.start(e.cfg, nil, nil, nil)
	jobID := e.send(fmt.Sprintf(tableRequest, "rows.parquet", `, "shards": 3`))
	testenv.Eventually(t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	m, _ := e.manifest(jobID)
	require.Equal(t, []string{"predictions/part-00000.parquet", "predictions/part-00001.parquet", "predictions/part-00002.parquet"}, m.Parts)
	require.Equal(t, "predictions/", m.Outputs[0].File)
	require.EqualValues(t, 3000, m.Samples)
	for i, s := range m.Shards {
		require.Zero(t, s.From%500, "shard %d starts at a row group", i)
	}
	var parts [][]byte
	for _, p := range m.Parts {
		data, ok := e.get("results/" + jobID + "/" + p)
		require.True(t, ok, p)
		parts = append(parts, data)
	}
	want := e.localRun("rows.parquet", input, &inference.TableOptions{Feed: map[string][]string{"x": {"features"}}, Keep: []string{"id"}}, "")
	require.Equal(t, columnValues(t, want[inference.PredictionsFile]), columnValues(t, parts...))
	require.Empty(t, e.uploading())
}

// TestAPoisonShardFailsTheJobOnce splits a CSV whose last shard holds a bad
// cell: one error record naming the shard, the row's place and the column,
// one failed event, one dead letter, and no upload left open.
func TestAPoisonShardFailsTheJobOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	x := make([]float32, 4000*24)
	for i := range x {
		x[i] = float32(i%97) / 8
	}
	var buf bytes.Buffer
	require.NoError(t, testenv.WriteFloatCSV(&buf, x, 24))
	lines := strings.SplitAfter(buf.String(), "\n")
	lines[3501] = strings.Replace(lines[3501], ",", ",1.5x", 1) // row 3500 (after the header): c1 is "1.5x..."
	e.put("inputs/cells.csv", []byte(strings.Join(lines, "")))
	cols := make([]string, 24)
	for j := range cols {
		cols[j] = fmt.Sprintf("%q", fmt.Sprintf("c%d", j))
	}
	for i := range 2 {
		cfg := e.cfg
		cfg.Name = fmt.Sprintf("worker-%d", i)
		e.start(cfg, nil, nil, nil)
	}
	jobID := e.send(`{"filename": "cells.csv", "feed": {"x": [` + strings.Join(cols, ",") + `]}, "output_format": "npy", "shards": 4}`)
	testenv.Eventually(t, "every message to end", 120*time.Second, func() bool { return e.drained(e.queue) })

	events := e.events()
	require.Len(t, events, 1, "one event for the job")
	require.Equal(t, job.EventFailed, events[0].State)
	require.Contains(t, events[0].Reason, "shard 3 of 4")
	require.Contains(t, events[0].Reason, `column "c1"`)
	require.Contains(t, events[0].Reason, "bytes ")
	data, ok := e.get(job.ErrorKey(jobID))
	require.True(t, ok)
	var record job.ErrorRecord
	require.NoError(t, json.Unmarshal(data, &record))
	require.Equal(t, events[0].Reason, record.Reason)
	var status job.Status
	data, _ = e.get(job.StatusKey(jobID))
	require.NoError(t, json.Unmarshal(data, &status))
	require.Equal(t, job.StateFailed, status.State)
	_, ok = e.manifest(jobID)
	require.False(t, ok)
	visible, _ := e.counts(e.dlq)
	require.Equal(t, 1, visible, "the poison shard is dead-lettered, the others are not")
	require.Empty(t, e.uploading(), "no upload left open")
}
