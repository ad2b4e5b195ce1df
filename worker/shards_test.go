package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/internal/testenv"
	"github.com/inferstack/inferstack/worker"
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
	body := e.badCSV()
	for i := range 2 {
		cfg := e.cfg
		cfg.Name = fmt.Sprintf("worker-%d", i)
		e.start(cfg, nil, nil, nil)
	}
	jobID := e.send(body)
	e.requireFailedOnce(jobID)
}

// badCSV uploads a CSV of 4,000 rows whose row 3,500 has a bad cell in
// column c1, and returns the request that splits it in 4 (the last shard
// holds the bad cell).
func (e *env) badCSV() string {
	x := make([]float32, 4000*24)
	for i := range x {
		x[i] = float32(i%97) / 8
	}
	var buf bytes.Buffer
	require.NoError(e.t, testenv.WriteFloatCSV(&buf, x, 24))
	lines := strings.SplitAfter(buf.String(), "\n")
	lines[3501] = strings.Replace(lines[3501], ",", ",1.5x", 1) // row 3500 (after the header): c1 is "1.5x..."
	e.put("inputs/cells.csv", []byte(strings.Join(lines, "")))
	cols := make([]string, 24)
	for j := range cols {
		cols[j] = fmt.Sprintf("%q", fmt.Sprintf("c%d", j))
	}
	return `{"filename": "cells.csv", "feed": {"x": [` + strings.Join(cols, ",") + `]}, "output_format": "npy", "shards": 4}`
}

// requireFailedOnce checks that jobID (badCSV's) failed once: one event and
// one error record naming the shard, the bytes and the column, a failed
// status, no result, one dead letter, no upload left open.
func (e *env) requireFailedOnce(jobID string) {
	t := e.t
	testenv.Eventually(t, "every message to end", 120*time.Second, func() bool { return e.drained(e.queue) })
	events := e.events()
	require.Len(t, events, 1, "one event for the job")
	require.Equal(t, job.EventFailed, events[0].State)
	require.True(t, strings.HasPrefix(events[0].Reason, "shard 3 of 4: "), events[0].Reason)
	require.Equal(t, 1, strings.Count(events[0].Reason, "shard 3 of 4"), events[0].Reason)
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

// shardCheckpoint finds a running shard of jobID whose checkpoint has at
// least chunks chunks done, and returns its results' prefix, its plan and
// its index.
func (e *env) shardCheckpoint(jobID string, chunks int64) (prefix, plan string, index int, ok bool) {
	out, err := e.s3.ListObjectsV2(e.t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(job.CheckpointPrefix + jobID + "/")})
	require.NoError(e.t, err)
	for _, o := range out.Contents {
		key := aws.ToString(o.Key)
		if !strings.Contains(key, "/shard-") || !strings.HasSuffix(key, "/checkpoint.json") {
			continue
		}
		scope := strings.TrimSuffix(strings.TrimPrefix(key, job.CheckpointPrefix), "/checkpoint.json")
		if e.checkpointDone(scope) >= chunks {
			_, err := fmt.Sscanf(path.Base(scope), "shard-%d", &index)
			require.NoError(e.t, err)
			return job.CheckpointPrefix + scope + "/", path.Base(path.Dir(scope)), index, true
		}
	}
	return "", "", 0, false
}

// TestKillNineMidShardStillFinishesTheJob kills the real worker binary in
// the middle of a shard: another worker resumes that shard from its
// checkpoint, and the job ends byte-identical, announced once.
func TestKillNineMidShardStillFinishesTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Second)
	input := slowJob(e)
	first, logs := e.process()
	jobID := e.send(`{"filename": "long.npy", "shards": 2}`)
	var shard string
	testenv.Eventually(t, "three checkpointed chunks in a shard", 60*time.Second, func() bool {
		var ok bool
		shard, _, _, ok = e.shardCheckpoint(jobID, 3)
		return ok
	}, logs)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	_, done := e.manifest(jobID)
	require.False(t, done, "killed too late: the job had finished\n%s", logs)

	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	e.requireResults(jobID, e.reference(input))
	data, ok := e.get(shard + inference.ManifestFile)
	require.True(t, ok, "the killed shard's manifest")
	var m inference.Manifest
	require.NoError(t, json.Unmarshal(data, &m))
	require.GreaterOrEqual(t, m.ResumedAt, int64(3), "the shard resumed from its checkpoint, not from scratch")
	testenv.Eventually(t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.True(t, e.drained(e.dlq))
	events := e.events()
	require.Len(t, events, 1)
	require.Equal(t, job.EventFinished, events[0].State)
}

// oneShardQueue hands its worker the job's message (index 0) or its shard
// alone: another's message goes back to the queue at once, and the worker
// waits until its owner has it (else its quick turns could hold the
// message each time the owner's long poll looks).
type oneShardQueue struct {
	worker.Queue
	index int
	taken *takenShards
}

// takenShards says which messages their owners have received: each shard
// by its index, the job's own message as -1.
type takenShards struct {
	mu    sync.Mutex
	marks map[int]chan struct{}
}

func (t *takenShards) mark(message int) chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.marks == nil {
		t.marks = map[int]chan struct{}{}
	}
	if t.marks[message] == nil {
		t.marks[message] = make(chan struct{})
	}
	return t.marks[message]
}

func (q oneShardQueue) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := q.Queue.ReceiveMessage(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	var mine []sqstypes.Message
	var waits []chan struct{}
	for _, m := range out.Messages {
		owner, mark := 0, -1 // the job's own message is worker 0's
		if req, err := job.Parse([]byte(aws.ToString(m.Body))); err == nil && req.Shard != nil {
			owner, mark = req.Shard.Index, req.Shard.Index
		}
		if owner == q.index {
			mine = append(mine, m)
			if taken := q.taken.mark(mark); !isClosed(taken) {
				close(taken)
			}
			continue
		}
		if _, err := q.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: in.QueueUrl, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
			return nil, err
		}
		waits = append(waits, q.taken.mark(mark))
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
		}
	}
	out.Messages = mine
	return out, nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// claimBarrier holds each shard's look at whether every shard is done (the
// listing after its manifest) until want of them have come, so that they
// all find every shard done and race to claim the assembly.
type claimBarrier struct {
	s3io.Objects
	mu      sync.Mutex
	arrived int
	want    int
	all     chan struct{}
	claims  atomic.Int32 // conditional creates of assembly.json
	uploads atomic.Int32 // multipart uploads begun under results/
}

func (b *claimBarrier) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	b.mu.Lock()
	if b.arrived++; b.arrived == b.want {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-time.After(60 * time.Second):
	}
	return b.Objects.ListObjectsV2(ctx, in, opts...)
}

func (b *claimBarrier) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if strings.HasSuffix(aws.ToString(in.Key), "/assembly.json") && in.IfNoneMatch != nil {
		b.claims.Add(1)
	}
	return b.Objects.PutObject(ctx, in, opts...)
}

func (b *claimBarrier) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	if strings.HasPrefix(aws.ToString(in.Key), job.ResultsPrefix) {
		b.uploads.Add(1)
	}
	return b.Objects.CreateMultipartUpload(ctx, in, opts...)
}

// TestTwoShardsFinishingTogetherAssembleOnce runs two shards on two workers
// and holds each, its results written, until both are: both find every
// shard done and claim the assembly; one claim wins, the job is assembled
// once, and announced once.
func TestTwoShardsFinishingTogetherAssembleOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := e.input("pair.npy", 2000)
	barrier := &claimBarrier{Objects: e.s3, want: 2, all: make(chan struct{})}
	taken := &takenShards{}
	for i := range 2 {
		cfg := e.cfg
		cfg.Name = fmt.Sprintf("worker-%d", i)
		e.start(cfg, oneShardQueue{Queue: e.sqs, index: i, taken: taken}, barrier, nil)
	}
	jobID := e.send(`{"filename": "pair.npy", "shards": 2}`)
	testenv.Eventually(t, "the manifest", 90*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	testenv.Eventually(t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.EqualValues(t, 2, barrier.claims.Load(), "both shards claimed the assembly")
	m := e.requireResults(jobID, e.reference(input))
	require.Len(t, m.Shards, 2)
	require.EqualValues(t, len(m.Outputs), barrier.uploads.Load(), "one assembly: one upload per output")
	events := e.events()
	require.Len(t, events, 1)
	require.Equal(t, job.EventFinished, events[0].State)
	require.Empty(t, e.uploading())
}

// copyCounter counts the server-side part copies of assemblies.
type copyCounter struct {
	s3io.Objects
	copies atomic.Int32
}

func (c *copyCounter) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	c.copies.Add(1)
	return c.Objects.UploadPartCopy(ctx, in, opts...)
}

// TestLargeShardsAreCopiedServerSide assembles shards whose results are
// larger than S3's part minimum: they go in as server-side copies (moto
// refuses parts under 5 MiB but the last), the header and each shard's
// first bytes joined into the first part, and the file is the bytes of one
// local run.
func TestLargeShardsAreCopiedServerSide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	wide(e, 1024) // 4 KiB of output a sample: 6,000 samples in 2 shards of 12 MiB
	input := e.input("wide.npy", 6000)
	counter := &copyCounter{Objects: e.s3}
	e.start(e.cfg, nil, counter, nil)
	jobID := e.send(`{"filename": "wide.npy", "shards": 2}`)
	testenv.Eventually(t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	m := e.requireResults(jobID, e.reference(input))
	require.Len(t, m.Shards, 2)
	// Part 1: the header and 5 MiB less it of shard 0, joined; the rest of
	// shard 0 and all of shard 1 are at least 5 MiB each: copied.
	require.EqualValues(t, 2*len(m.Outputs), counter.copies.Load())
	require.Equal(t, 3, e.parts("results/"+jobID+"/"+m.Outputs[0].File))
	require.Empty(t, e.uploading())
}

// TestShardsStopWhenAnotherFailsTheJob records the job's failure by the
// queued shard while the other runs (as the queued one's worker would,
// then killed before it dead-lettered it): the running shard stops at a
// chunk boundary, aborts its uploads and is not dead-lettered; the failed
// shard's message ends the job as its failure, once; no result appears.
func TestShardsStopWhenAnotherFailsTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	wide(e, 1024)
	e.cfg.ChunkSamples = 32
	e.input("wide.npy", 6000)
	e.start(e.cfg, nil, nil, nil)
	jobID := e.send(`{"filename": "wide.npy", "shards": 2}`)
	var plan string
	var running int
	testenv.Eventually(t, "a shard's upload under way", 60*time.Second, func() bool {
		var ok bool
		_, plan, running, ok = e.shardCheckpoint(jobID, 3)
		return ok && len(e.uploading()) > 0
	})
	// The other shard failed the job, and was dead-lettered: its message,
	// still queued here, ends as its own failure when received.
	other := 1 - running
	e.put(job.PlanPrefix(jobID, plan)+"failed.json", []byte(fmt.Sprintf(`{"shard": %d, "reason": "shard %d of 2: failed elsewhere"}`, other, other)))
	testenv.Eventually(t, "both shards to end", 60*time.Second, func() bool { return e.drained(e.queue) })
	require.Empty(t, e.uploading(), "the running shard aborted its uploads")
	visible, _ := e.counts(e.dlq)
	require.Equal(t, 1, visible, "only the failed shard is dead-lettered, not the one it stopped")
	_, ok := e.manifest(jobID)
	require.False(t, ok)
	events := e.events()
	require.Len(t, events, 1)
	require.Equal(t, fmt.Sprintf("shard %d of 2: failed elsewhere", other), events[0].Reason)
	data, ok := e.get(job.ShardStatusKey(jobID, plan, running))
	require.True(t, ok)
	var s job.ShardStatus
	require.NoError(t, json.Unmarshal(data, &s))
	require.Equal(t, job.StateFailed, s.State)
	require.Less(t, s.SamplesDone, s.SamplesTotal, "stopped before its end")
}

// badRequest is S3's answer to a request it refuses for good (400): not
// throttling, not a denial, so the worker retries the job later.
func badRequest(operation string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: operation, Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
		Err:      &smithy.GenericAPIError{Code: "InvalidRequest", Message: "injected"},
	}}
}

// failFirstCompletion fails the first completion of an upload under
// results/ (the assembly's) as S3 would a bad request: the assembly stops
// half done, its upload open.
type failFirstCompletion struct {
	s3io.Objects
	failed  atomic.Bool
	uploads atomic.Int32
}

func (f *failFirstCompletion) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	if strings.HasPrefix(aws.ToString(in.Key), job.ResultsPrefix) {
		f.uploads.Add(1)
	}
	return f.Objects.CreateMultipartUpload(ctx, in, opts...)
}

func (f *failFirstCompletion) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if strings.HasPrefix(aws.ToString(in.Key), job.ResultsPrefix) && f.failed.CompareAndSwap(false, true) {
		return nil, badRequest("CompleteMultipartUpload")
	}
	return f.Objects.CompleteMultipartUpload(ctx, in, opts...)
}

// TestAnAssemblyStoppedHalfwayIsFinishedByARedelivery stops the assembly
// after its first upload began: the assembling shard's redelivery finds its
// own claim, aborts the upload the claim records and assembles again; the
// result is the bytes of one local run, announced once, nothing left open.
func TestAnAssemblyStoppedHalfwayIsFinishedByARedelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	input := e.input("pair.npy", 2000)
	faulty := &failFirstCompletion{Objects: e.s3}
	e.start(e.cfg, nil, faulty, nil)
	jobID := e.send(`{"filename": "pair.npy", "shards": 2}`)
	testenv.Eventually(t, "the manifest", 90*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	require.True(t, faulty.failed.Load(), "the first assembly failed")
	m := e.requireResults(jobID, e.reference(input))
	require.EqualValues(t, 1+len(m.Outputs), faulty.uploads.Load(), "the first output's upload, stopped, then every output's")
	testenv.Eventually(t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.Empty(t, e.uploading(), "the stopped assembly's upload was aborted")
	require.True(t, e.drained(e.dlq))
	events := e.events()
	require.Len(t, events, 1)
	require.Equal(t, job.EventFinished, events[0].State)
}

// failFirstRecord fails the first write of an error record.
type failFirstRecord struct {
	s3io.Objects
	failed atomic.Bool
}

func (f *failFirstRecord) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if strings.HasPrefix(aws.ToString(in.Key), job.ErrorsPrefix) && f.failed.CompareAndSwap(false, true) {
		return nil, badRequest("PutObject")
	}
	return f.Objects.PutObject(ctx, in, opts...)
}

// TestAShardThatFailedTheJobEndsItOnItsRedelivery fails the error record of
// the shard that failed the job: its message is left for redelivery, which
// finds the failure it recorded and ends the job as it would have, once.
func TestAShardThatFailedTheJobEndsItOnItsRedelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Second)
	body := e.badCSV()
	faulty := &failFirstRecord{Objects: e.s3}
	e.start(e.cfg, nil, faulty, nil)
	jobID := e.send(body)
	e.requireFailedOnce(jobID)
	require.True(t, faulty.failed.Load(), "the first error record failed")
}

// TestShardedCSVMatchesALocalRunByteForByte splits a CSV at line starts
// into shards that count their own rows: the .npy results, whose header
// needs the whole count, are those of one local run.
func TestShardedCSVMatchesALocalRunByteForByte(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	x := make([]float32, 3000*24)
	for i := range x {
		x[i] = float32((i*7919)%1000)/500 - 1
	}
	var buf bytes.Buffer
	require.NoError(t, testenv.WriteFloatCSV(&buf, x, 24))
	e.put("inputs/rows.csv", buf.Bytes())
	cols := make([]string, 24)
	for j := range cols {
		cols[j] = fmt.Sprintf("c%d", j)
	}
	feed, _ := json.Marshal(map[string][]string{"x": cols})
	e.start(e.cfg, nil, nil, nil)
	jobID := e.send(`{"filename": "rows.csv", "feed": ` + string(feed) + `, "output_format": "npy", "shards": 3}`)
	testenv.Eventually(t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	m := e.requireResults(jobID, e.localRun("rows.csv", buf.Bytes(), &inference.TableOptions{Feed: map[string][]string{"x": cols}}, job.OutputNpy))
	require.EqualValues(t, 3000, m.Samples)
	require.Len(t, m.Shards, 3)
	var rows int64
	for _, s := range m.Shards {
		require.Equal(t, inference.RangeBytes, s.Unit)
		rows += s.Samples
	}
	require.EqualValues(t, 3000, rows)
}

// TestAKillBetweenTheAssemblyAndTheEventStillAnnouncesTheJob kills the
// assembling worker while its finished event is on its way (SNS, behind a
// proxy, accepts the Publish and never answers): the assembling shard's
// redelivery finds the job's manifest and announces the job, once, in the
// job's status.
func TestAKillBetweenTheAssemblyAndTheEventStillAnnouncesTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Second)
	e.input("pair.npy", 2000)
	jobID := e.killWhileAnnouncing(`{"filename": "pair.npy", "shards": 2}`)

	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(t, "the redelivery to end", 30*time.Second, func() bool { return e.drained(e.queue) })
	events := e.events()
	require.Len(t, events, 1, "exactly the missing event")
	require.Equal(t, job.EventFinished, events[0].State)
	require.EqualValues(t, 2000, events[0].Samples)
	require.True(t, e.announced(jobID), "the job's status, not a shard's, says it was announced")
}
