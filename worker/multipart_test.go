package worker_test

// Results as multipart uploads, against moto, which enforces S3's 5 MiB
// minimum for every part but the last: a model with wide outputs (4 KiB per
// sample per output) gives files of a few parts. These tests put tens of MB
// through moto, which slows it for everyone: they run one at a time, before
// the parallel tests, whose jobs are timed against moto's pace.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/internal/testenv"
)

// wide swaps the env's model for one with out float32s per sample in each
// of its two outputs.
func wide(e *env, out int) {
	e.mlp = onnxmodel.NewMLP(24, 32, out, 1)
	model, err := e.mlp.Model()
	require.NoError(e.t, err)
	require.NoError(e.t, os.WriteFile(e.modelPath, model, 0o644))
	e.put("models/mlp.onnx", model)
}

// recorded is the part of a checkpoint these tests look at.
type recorded struct {
	Done    int64 `json:"chunks_done"`
	Results []struct {
		Key      string `json:"key"`
		UploadID string `json:"upload_id"`
		Parts    []struct {
			Number int32    `json:"number"`
			Bytes  int64    `json:"bytes"`
			Chunks [2]int64 `json:"chunks"`
		} `json:"parts"`
		TailFrom  int64 `json:"tail_from"`
		Completed bool  `json:"completed"`
	} `json:"results"`
}

func (e *env) checkpoint(jobID string) recorded {
	var cp recorded
	if data, ok := e.get(job.CheckpointKey(jobID)); ok {
		require.NoError(e.t, json.Unmarshal(data, &cp))
	}
	return cp
}

// uploading lists the bucket's multipart uploads in progress, as its owner.
func (e *env) uploading() []s3types.MultipartUpload {
	out, err := e.s3.ListMultipartUploads(e.t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket)})
	require.NoError(e.t, err)
	return out.Uploads
}

// parts is how many parts an object was uploaded in (its ETag ends "-N"), 0 for a plain PUT.
func (e *env) parts(key string) int {
	out, err := e.s3.HeadObject(e.t.Context(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	require.NoError(e.t, err)
	var n int
	if _, tag, ok := strings.Cut(strings.Trim(aws.ToString(out.ETag), `"`), "-"); ok {
		fmt.Sscan(tag, &n)
	}
	return n
}

// tails sums the tail objects a job left under its checkpoint prefix.
func (e *env) tails(jobID string) (n int, bytes int64) {
	out, err := e.s3.ListObjectsV2(e.t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(job.CheckpointPrefix + jobID + "/tail-")})
	require.NoError(e.t, err)
	for _, o := range out.Contents {
		n, bytes = n+1, bytes+aws.ToInt64(o.Size)
	}
	return n, bytes
}

// countingS3 records the part numbers uploaded through it.
type countingS3 struct {
	s3io.Objects
	mu    sync.Mutex
	parts map[string][]int32 // by upload id
}

func (c *countingS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	out, err := c.Objects.UploadPart(ctx, in, opts...)
	if err == nil {
		c.mu.Lock()
		c.parts[aws.ToString(in.UploadId)] = append(c.parts[aws.ToString(in.UploadId)], aws.ToInt32(in.PartNumber))
		c.mu.Unlock()
	}
	return out, err
}

func TestMultipartResultsMatchALocalRunByteForByte(t *testing.T) {
	for _, c := range []struct {
		name    string
		chunk   int64
		parts   int  // of each 16 MB output: parts of 5 MiB or whole chunks
		tails   bool // chunks that do not fill a part leave tail objects
		samples int
	}{
		{name: "chunks_smaller_than_a_part", chunk: 256, parts: 3, tails: true, samples: 2800},
		{name: "a_part_per_chunk", chunk: 1536, parts: 2, tails: false, samples: 2800},
		{name: "one_chunk_of_one_part", chunk: 4096, parts: 1, tails: false, samples: 2800},
		{name: "smaller_than_a_part", chunk: 256, parts: 0, tails: true, samples: 1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 30*time.Second)
			wide(e, 1024)
			e.cfg.ChunkSamples = c.chunk
			input := e.input("wide.npy", c.samples)
			e.start(e.cfg, nil, nil, nil)
			jobID := e.send(`{"filename": "wide.npy"}`)
			testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
			m := e.requireResults(jobID, e.reference(input))
			require.Len(t, m.Outputs, 2)
			for _, o := range m.Outputs {
				require.Equal(t, c.parts, e.parts("results/"+jobID+"/"+o.File), o.File)
			}
			n, _ := e.tails(jobID)
			require.Equal(t, c.tails, n > 0, "%d tail objects", n)
			require.Empty(t, e.uploading(), "every upload completed")
		})
	}
}

// killMidUpload starts a real worker process on a job whose two outputs
// take several parts, and SIGKILLs it once each output has a part in the
// checkpoint: its uploads stay open, the job unfinished. Chunks are 128 KiB
// per output: a part every 40 chunks (of 94), and a checkpoint with a tail
// object for each chunk between.
func killMidUpload(t *testing.T, e *env) (input []byte, jobID string) {
	t.Helper()
	wide(e, 1024)
	e.cfg.ChunkSamples = 32
	input = e.input("wide.npy", 3000)
	first, logs := e.process()
	jobID = e.send(`{"filename": "wide.npy"}`)
	testenv.Eventually(e.t, "a part of each output in the checkpoint", 60*time.Second, func() bool {
		cp := e.checkpoint(jobID)
		return len(cp.Results) == 2 && len(cp.Results[0].Parts) > 0 && len(cp.Results[1].Parts) > 0
	})
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_, _ = first.Process.Wait()
	_, done := e.manifest(jobID)
	require.False(t, done, "killed too late: the job had finished\n%s", logs)
	return input, jobID
}

func TestKillNineMidUploadResumesTheSameUploads(t *testing.T) {
	e := newEnv(t, 3*time.Second)
	input, jobID := killMidUpload(t, e)

	before := e.checkpoint(jobID)
	ids := map[string]bool{}
	for _, u := range e.uploading() {
		ids[aws.ToString(u.UploadId)] = true
	}
	for _, r := range before.Results {
		require.True(t, ids[r.UploadID], "the killed worker's upload %s is still open", r.UploadID)
	}

	counting := &countingS3{Objects: e.s3, parts: map[string][]int32{}}
	e.start(e.cfg, nil, counting, nil)
	testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	m := e.requireResults(jobID, e.reference(input))
	require.GreaterOrEqual(t, m.ResumedAt, before.Done, "resumed from the checkpoint, not from scratch")

	after := e.checkpoint(jobID)
	counting.mu.Lock()
	defer counting.mu.Unlock()
	for i, r := range after.Results {
		require.True(t, r.Completed)
		require.Equal(t, before.Results[i].UploadID, r.UploadID, "the same upload continued")
		require.Equal(t, before.Results[i].Parts, r.Parts[:len(before.Results[i].Parts)], "the recorded parts kept")
		uploaded := counting.parts[r.UploadID]
		require.NotEmpty(t, uploaded)
		for _, n := range uploaded {
			require.Greater(t, n, int32(len(before.Results[i].Parts)), "part %d was in S3 already", n)
		}
		require.Equal(t, len(r.Parts), e.parts(r.Key), r.Key)
	}
	require.Empty(t, e.uploading())
}

// uploadsAsS3 answers a part or completion for an upload that does not
// exist as S3 does (404 NoSuchUpload) and moto does not (500: a KeyError).
type uploadsAsS3 struct {
	s3io.Objects
	s3 *s3.Client
}

func (u uploadsAsS3) exists(ctx context.Context, bucket, key, id *string) error {
	_, err := u.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: bucket, Key: key, UploadId: id})
	return err
}

func (u uploadsAsS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if err := u.exists(ctx, in.Bucket, in.Key, in.UploadId); err != nil {
		return nil, err
	}
	return u.Objects.UploadPart(ctx, in, opts...)
}

func (u uploadsAsS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if err := u.exists(ctx, in.Bucket, in.Key, in.UploadId); err != nil {
		return nil, err
	}
	return u.Objects.CompleteMultipartUpload(ctx, in, opts...)
}

func TestAnExpiredUploadRestartsTheJobFromScratch(t *testing.T) {
	e := newEnv(t, 3*time.Second)
	input, jobID := killMidUpload(t, e)

	// What the bucket's lifecycle rule does to an upload a day old.
	before := e.checkpoint(jobID)
	for _, r := range before.Results {
		_, err := e.s3.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{Bucket: aws.String(e.bucket), Key: aws.String(r.Key), UploadId: aws.String(r.UploadID)})
		require.NoError(t, err)
	}

	e.start(e.cfg, nil, uploadsAsS3{Objects: e.s3, s3: e.s3}, nil)
	testenv.Eventually(e.t, "the manifest", 120*time.Second, func() bool { _, ok := e.manifest(jobID); return ok })
	m := e.requireResults(jobID, e.reference(input))
	require.Zero(t, m.ResumedAt, "restarted from scratch")
	after := e.checkpoint(jobID)
	for i, r := range after.Results {
		require.True(t, r.Completed)
		require.NotEqual(t, before.Results[i].UploadID, r.UploadID, "a new upload")
	}
	require.Empty(t, e.uploading(), "nothing left open")
	testenv.Eventually(e.t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.True(t, e.drained(e.dlq))
}

// deniedTails answers AccessDenied to tail checkpoints once parts are in
// S3: a job that fails for good with multipart uploads open.
type deniedTails struct {
	s3io.Objects
	mu    sync.Mutex
	parts int
}

func (d *deniedTails) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	out, err := d.Objects.UploadPart(ctx, in, opts...)
	if err == nil {
		d.mu.Lock()
		d.parts++
		d.mu.Unlock()
	}
	return out, err
}

func (d *deniedTails) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	d.mu.Lock()
	deny := d.parts >= 2 && strings.Contains(aws.ToString(in.Key), "/tail-")
	d.mu.Unlock()
	if deny {
		return nil, &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
			Err:      &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"},
		}}
	}
	return d.Objects.PutObject(ctx, in, opts...)
}

func TestAJobThatFailsForGoodLeavesNoUploadOpen(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	wide(e, 1024)
	e.cfg.ChunkSamples = 32
	e.input("wide.npy", 3000)
	e.start(e.cfg, nil, &deniedTails{Objects: e.s3}, nil)
	jobID := e.send(`{"filename": "wide.npy"}`)
	testenv.Eventually(e.t, "the error record", 60*time.Second, func() bool { _, ok := e.get(job.ErrorKey(jobID)); return ok })
	testenv.Eventually(e.t, "the message to be dead-lettered", 30*time.Second, func() bool { return e.drained(e.queue) })
	cp := e.checkpoint(jobID)
	require.Empty(t, cp.Results, "the checkpoint is void")
	require.Empty(t, e.uploading(), "its uploads aborted")
	_, done := e.manifest(jobID)
	require.False(t, done)
}
