package worker_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/npy"
)

// BenchmarkJobOverhead: the worker's cost per job against moto with no
// inference to speak of (64 samples through a small MLP): receive, status,
// checkpoint, results, manifest, delete.
func BenchmarkJobOverhead(b *testing.B) {
	e := newEnv(b, 30*time.Second)
	e.input("tiny.npy", 64)
	stop := e.start(e.cfg, nil, nil, nil)
	defer stop()
	n := 0
	for b.Loop() {
		id := e.send(fmt.Sprintf(`{"filename": "tiny.npy", "job_id": "overhead-%d"}`, n))
		n++
		for {
			if _, ok := e.manifest(id); ok && e.drained(e.queue) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(n), "ms/job")
}

// classifierEnv is a worker environment whose S3 is served from memory
// (memS3), holding PaddleOCR's classifier as models/cls.onnx and n crops as
// inputs/crops.npy; it returns the input's bytes too.
func classifierEnv(b *testing.B, n int64) (*env, []byte) {
	e := newEnv(b, 30*time.Second)
	useMemS3(b, e)
	_, err := e.s3.CreateBucket(b.Context(), &s3.CreateBucketInput{Bucket: aws.String(e.bucket)})
	require.NoError(b, err)

	cache, err := os.UserCacheDir()
	require.NoError(b, err)
	model, err := os.ReadFile(filepath.Join(cache, "inferstack", "models", "ch_ppocr_mobile_v2.0_cls_infer.onnx"))
	require.NoError(b, err, "run make setup")
	e.put("models/cls.onnx", model)
	e.modelPath = filepath.Join(b.TempDir(), "cls.onnx")
	require.NoError(b, os.WriteFile(e.modelPath, model, 0o644))
	v := make([]float32, n*3*48*192)
	for i := range v {
		v[i] = float32(i%251) / 251
	}
	input := append(npy.EncodeHeader(npy.Float32, []int64{n, 3, 48, 192}), npy.FromFloat32(v)...)
	e.put("inputs/crops.npy", input)
	e.cfg.ModelKey, e.cfg.BatchSize, e.cfg.ChunkSamples = "models/cls.onnx", 16, 0 // default chunks and read-ahead
	return e, input
}

// BenchmarkWorkerVsRun: the same 1,024 crops (113 MB) through PaddleOCR's
// classifier, as a worker job and as a local inferstack run, with the same
// batch size (16) and threads (1), the default chunks (8 MiB) and the
// worker's default read-ahead. worker/run
// compares wall times (the results upload after the manifest's clock stops
// is excluded); worker/run-excl-transfer compares the inference stages'
// busy times, i.e. the engine inside the worker with S3 transfer excluded.
//
// S3 is served from memory (memS3): moto and gofakes3 spend tens of
// milliseconds of CPU per ranged GET on the same two cores as inference
// (gofakes3 checksums the whole object for each), so they would measure
// themselves. SQS stays on moto.
func BenchmarkWorkerVsRun(b *testing.B) {
	const n = 1024
	e, input := classifierEnv(b, n)
	stop := e.start(e.cfg, nil, e.s3, nil)
	defer stop()
	path := filepath.Join(b.TempDir(), "crops.npy")
	require.NoError(b, os.WriteFile(path, input, 0o644))
	local, err := inference.LoadModel(e.modelPath)
	require.NoError(b, err)
	defer local.Close()
	var workerTotal, runTotal, workerInfer, runInfer float64
	i := 0
	for b.Loop() {
		id := e.send(fmt.Sprintf(`{"filename": "crops.npy", "job_id": "crops-%d"}`, i))
		i++
		e.waitFor("the manifest", 300*time.Second, func() bool { _, ok := e.manifest(id); return ok })
		m, _ := e.manifest(id)
		f, err := os.Open(path)
		require.NoError(b, err)
		lm, err := inference.Run(b.Context(), inference.Job{Model: local, Input: f, InputSize: int64(len(input)), InputName: path,
			Device: inference.DeviceCPU, BatchSize: 16, Threads: e.cfg.Threads}, inference.NewDirSink(b.TempDir()))
		require.NoError(b, err)
		f.Close()
		workerTotal += m.Durations.Total
		runTotal += lm.Durations.Total
		workerInfer += m.Durations.Infer
		runInfer += lm.Durations.Infer
	}
	b.ReportMetric(float64(n*i)/workerTotal, "worker-samples/s")
	b.ReportMetric(float64(n*i)/runTotal, "run-samples/s")
	b.ReportMetric(runTotal/workerTotal, "worker/run")
	// Excluding transfer: the inference stage's busy time in each, with the
	// worker's S3 reads and checkpoint uploads running beside it.
	b.ReportMetric(runInfer/workerInfer, "worker/run-excl-transfer")
}

// BenchmarkWorkerThreads: the worker's default thread count (all cores)
// against all cores but one, the default before, on the same 1,024 crops
// through PaddleOCR's classifier at batch 16, with the worker's own S3 reads
// and multipart uploads sharing the cores. Workers at each setting take
// jobs in alternation; each side is scored by its median engine time.
func BenchmarkWorkerThreads(b *testing.B) {
	const n, rounds = 1024, 5
	e, _ := classifierEnv(b, n) // batch 16, default chunks
	settings := slices.Compact([]int{max(1, runtime.NumCPU()-1), runtime.NumCPU()})
	job := 0
	for b.Loop() {
		times := map[int][]float64{}
		for range rounds {
			for _, threads := range settings {
				cfg := e.cfg
				cfg.Threads = threads
				stop := e.start(cfg, nil, e.s3, nil)
				id := e.send(fmt.Sprintf(`{"filename": "crops.npy", "job_id": "threads-%d"}`, job))
				job++
				e.waitFor("the manifest", 300*time.Second, func() bool { _, ok := e.manifest(id); return ok })
				stop()
				m, _ := e.manifest(id)
				require.Equal(b, threads, m.Threads)
				times[threads] = append(times[threads], m.Durations.Total)
			}
		}
		for _, threads := range settings {
			slices.Sort(times[threads])
			b.ReportMetric(float64(n)/times[threads][rounds/2], fmt.Sprintf("t%d-samples/s", threads))
			b.Logf("%d threads: engine seconds %v", threads, times[threads])
		}
		if len(settings) == 2 {
			b.ReportMetric(times[settings[0]][rounds/2]/times[settings[1]][rounds/2], "all-cores/all-but-one")
		}
	}
}
