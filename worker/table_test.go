package worker_test

// Table jobs: a Parquet or CSV input in S3, predictions.parquet (or .npy
// files) out, against moto and the real ONNX Runtime, compared byte for
// byte with `inferstack run`'s engine on the same file.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/predictions"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/runenv"
	"github.com/inferstack/inferstack/internal/testenv"
)

// tableRequest is the request of the table tests: the features list feeds
// the model's input x, the id is kept.
const tableRequest = `{"filename": %q, "feed": {"x": ["features"]}, "keep": ["id"]%s}`

// tableInput uploads n rows as inputs/name, a Parquet file written by
// arrow-go (Snappy, row groups of 500 rows): an int64 id and a
// list<float> of the model's 24 features, the row nullAt (if not
// negative) having a null list.
func (e *env) tableInput(name string, n, nullAt int) []byte {
	x := make([]float32, n*24)
	for i := range x {
		x[i] = float32((i*7919)%1000)/500 - 1
	}
	t := testenv.ListTable{Column: "features", X: x, K: 24, FirstID: 1_000_000, RowGroupRows: 500}
	if nullAt >= 0 {
		t.NullRows = []int{nullAt}
	}
	var buf bytes.Buffer
	require.NoError(e.t, t.WriteParquet(&buf))
	e.put("inputs/"+name, buf.Bytes())
	return buf.Bytes()
}

// keptIDs reads a result file's id column back with arrow-go.
func keptIDs(t testing.TB, data []byte) []int64 {
	tbl := testenv.ReadParquet(t, data)
	defer tbl.Release()
	require.Equal(t, "id", tbl.Schema().Field(0).Name)
	var ids []int64
	for _, c := range tbl.Column(0).Data().Chunks() {
		ids = append(ids, c.(*array.Int64).Int64Values()...)
	}
	return ids
}

func TestTableJobsMatchALocalRunByteForByte(t *testing.T) {
	for _, c := range []struct {
		name          string
		wide          int    // outputs of this many floats a row (0: the env's model)
		rowGroupBytes int64  // of the result (0: the writer's default)
		format        string // the request's output_format
		files         []string
		parts         int // of predictions.parquet: 0 is one PUT
	}{
		{name: "one_put", files: []string{"predictions.parquet"}},
		{name: "multipart_with_tails", wide: 1024, rowGroupBytes: 1 << 20, files: []string{"predictions.parquet"}, parts: 5},
		{name: "npy_outputs", format: job.OutputNpy, files: []string{"logits.npy", "probs.npy"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 30*time.Second)
			if c.wide > 0 {
				wide(e, c.wide)
			}
			e.cfg.ResultRowGroupBytes = c.rowGroupBytes
			input := e.tableInput("rows.parquet", 3000, -1)
			e.start(e.cfg, nil, nil, nil)
			extra, keep := "", []string{"id"}
			if c.format != "" {
				extra, keep = fmt.Sprintf(`, "output_format": %q`, c.format), nil
			}
			body := fmt.Sprintf(tableRequest, "rows.parquet", extra)
			if c.format == job.OutputNpy {
				body = `{"filename": "rows.parquet", "feed": {"x": ["features"]}, "output_format": "npy"}`
			}
			jobID := e.send(body)
			testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
			want := e.localRun("rows.parquet", input, &inference.TableOptions{Feed: map[string][]string{"x": {"features"}}, Keep: keep}, c.format)
			require.Len(t, want, len(c.files))
			m := e.requireResults(jobID, want)
			require.EqualValues(t, 3000, m.Samples)
			require.NotNil(t, m.Input.Table)
			require.Equal(t, "parquet", m.Input.Format)
			require.Equal(t, map[string][]string{"x": {"features"}}, m.Input.Table.Feed)
			for _, f := range c.files {
				require.True(t, strings.HasSuffix(f, ".npy") || m.Outputs[0].File == f)
			}
			if c.format == "" {
				data, _ := e.get("results/" + jobID + "/predictions.parquet")
				ids := keptIDs(t, data)
				require.Len(t, ids, 3000)
				require.EqualValues(t, 1_000_000, ids[0])
				require.EqualValues(t, 1_002_999, ids[2999])
				require.Equal(t, c.parts, e.parts("results/"+jobID+"/predictions.parquet"))
			}
			require.Empty(t, e.uploading(), "every upload completed")
		})
	}
}

// parquetCheckpoint is the part of a table job's checkpoint these tests
// look at.
type parquetCheckpoint struct {
	recorded
	Parquet *predictions.State `json:"parquet"`
}

func TestKillNineMidParquetJobResumesItsUpload(t *testing.T) {
	e := newEnv(t, 3*time.Second)
	wide(e, 1024)
	e.cfg.ChunkSamples, e.cfg.ResultRowGroupBytes = 32, 1<<20
	input := e.tableInput("rows.parquet", 3000, -1)
	first, logs := e.process(runenv.EnvResultRowGroupBytes + "=" + fmt.Sprint(e.cfg.ResultRowGroupBytes))
	jobID := e.send(fmt.Sprintf(tableRequest, "rows.parquet", ""))
	var before parquetCheckpoint
	testenv.Eventually(e.t, "a part of the result in the checkpoint", 60*time.Second, func() bool {
		data, ok := e.get(job.CheckpointKey(jobID))
		if !ok {
			return false
		}
		require.NoError(t, json.Unmarshal(data, &before))
		return len(before.Results) == 1 && len(before.Results[0].Parts) > 0 && before.Parquet != nil
	}, logs)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	_, done := e.manifest(jobID)
	require.False(t, done, "killed too late: the job had finished\n%s", logs)
	var cp parquetCheckpoint
	data, _ := e.get(job.CheckpointKey(jobID))
	require.NoError(t, json.Unmarshal(data, &cp))
	require.Positive(t, cp.Done, "the checkpoint resumes past the first chunk")

	counting := &countingS3{Objects: e.s3, parts: map[string][]int32{}}
	// A worker deployed with other row groups resumes with the job's own.
	resumer := e.cfg
	resumer.ResultRowGroupBytes = 0
	e.start(resumer, nil, counting, nil)
	testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	m := e.requireResults(jobID, e.localRun("rows.parquet", input,
		&inference.TableOptions{Feed: map[string][]string{"x": {"features"}}, Keep: []string{"id"}}, ""))
	require.Equal(t, cp.Done, m.ResumedAt, "resumed at the checkpoint's chunk, not from scratch")

	var after parquetCheckpoint
	data, _ = e.get(job.CheckpointKey(jobID))
	require.NoError(t, json.Unmarshal(data, &after))
	r := after.Results[0]
	require.True(t, r.Completed)
	require.Equal(t, cp.Results[0].UploadID, r.UploadID, "the same upload continued")
	require.Equal(t, cp.Results[0].Parts, r.Parts[:len(cp.Results[0].Parts)], "the recorded parts kept")
	counting.mu.Lock()
	for _, n := range counting.parts[r.UploadID] {
		require.Greater(t, n, int32(len(cp.Results[0].Parts)), "part %d was in S3 already", n)
	}
	counting.mu.Unlock()
	require.Empty(t, e.uploading())
}

func TestABadTableEndsAsPoisonWithTheRowAndColumn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	wide(e, 1024)
	e.cfg.ChunkSamples, e.cfg.ResultRowGroupBytes = 64, 1<<20
	e.tableInput("null.parquet", 3000, 2500)
	header := "id"
	for j := range 24 {
		header += fmt.Sprintf(",c%d", j)
	}
	csv := header + "\n"
	for i := range 40 {
		csv += fmt.Sprint(i)
		for j := range 24 {
			if i == 37 && j == 5 {
				csv += ",1.5x"
				continue
			}
			csv += fmt.Sprintf(",%d.25", (i+j)%7)
		}
		csv += "\n"
	}
	e.put("inputs/cells.csv", []byte(csv))
	cols := make([]string, 24)
	for j := range cols {
		cols[j] = fmt.Sprintf("%q", fmt.Sprintf("c%d", j))
	}
	e.start(e.cfg, nil, nil, nil)
	cases := map[string]struct{ body, reason string }{
		// The null is past the first parts: the job ends with its upload open.
		"null list": {fmt.Sprintf(tableRequest, "null.parquet", ""), `row 2500`},
		"bad cell":  {`{"filename": "cells.csv", "feed": {"x": [` + strings.Join(cols, ",") + `]}}`, `"1.5x"`},
		"no column": {`{"filename": "null.parquet", "feed": {"x": ["feature"]}}`, `"feature"`},
	}
	ids := map[string]string{}
	for name, c := range cases {
		ids[name] = e.send(c.body)
	}
	testenv.Eventually(e.t, "every message to end", 120*time.Second, func() bool { return e.drained(e.queue) })
	events := map[string]published{}
	for _, ev := range e.events() {
		require.NotContains(t, events, ev.JobID, "two events for %s", ev.JobID)
		events[ev.JobID] = ev
	}
	for name, c := range cases {
		ev, ok := events[ids[name]]
		require.True(t, ok, "no event for %s", name)
		require.Equal(t, job.EventFailed, ev.State, name)
		require.Contains(t, ev.Reason, c.reason, name)
		data, ok := e.get(job.ErrorKey(ids[name]))
		require.True(t, ok, "an error record for %s", name)
		var record job.ErrorRecord
		require.NoError(t, json.Unmarshal(data, &record))
		require.Equal(t, ev.Reason, record.Reason)
		_, ok = e.manifest(ids[name])
		require.False(t, ok, name)
		_, ok = e.get("results/" + ids[name] + "/predictions.parquet")
		require.False(t, ok, "nothing half-written for %s", name)
	}
	require.Contains(t, events[ids["null list"]].Reason, "features")
	require.Contains(t, events[ids["bad cell"]].Reason, "c5")
	visible, _ := e.counts(e.dlq)
	require.Equal(t, len(cases), visible, "each is dead-lettered")
	require.Empty(t, e.uploading(), "no upload left open")
}
