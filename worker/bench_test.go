package worker_test

import (
	"bytes"
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
	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/testenv"
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
		testenv.Eventually(e.t, "the manifest", 300*time.Second, func() bool { _, ok := e.manifest(id); return ok })
		m, _ := e.manifest(id)
		f, err := os.Open(path)
		require.NoError(b, err)
		lm, err := inference.Run(b.Context(), inference.Pass{Model: local, Input: f, InputSize: int64(len(input)), InputName: path,
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
				testenv.Eventually(e.t, "the manifest", 300*time.Second, func() bool { _, ok := e.manifest(id); return ok })
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

// BenchmarkTableWorkerVsRun: the same 50,000 rows (an int64 id and a
// list<float> of 256, Snappy, 51 MB) through the MLP 256-256-10 of the
// engine's table benchmark, as a worker job (S3 from memory, as above)
// and as a local inferstack run, at batch 1,024 and the worker's threads,
// both writing predictions.parquet with the id kept. A light model, so
// the worker's reads and uploads weigh as much as they ever do.
func BenchmarkTableWorkerVsRun(b *testing.B) {
	const rows, k = 50_000, 256
	e := newEnv(b, 30*time.Second)
	useMemS3(b, e)
	_, err := e.s3.CreateBucket(b.Context(), &s3.CreateBucketInput{Bucket: aws.String(e.bucket)})
	require.NoError(b, err)
	e.mlp = onnxmodel.NewMLP(k, 256, 10, 5)
	model, err := e.mlp.Model()
	require.NoError(b, err)
	require.NoError(b, os.WriteFile(e.modelPath, model, 0o644))
	e.put("models/mlp.onnx", model)
	input := listTable(b, rows, k)
	e.put("inputs/rows.parquet", input)
	e.cfg.BatchSize, e.cfg.ChunkSamples = 1024, 0
	stop := e.start(e.cfg, nil, e.s3, nil)
	defer stop()
	path := filepath.Join(b.TempDir(), "rows.parquet")
	require.NoError(b, os.WriteFile(path, input, 0o644))
	local, err := inference.LoadModel(e.modelPath)
	require.NoError(b, err)
	defer local.Close()
	opts := inference.TableOptions{Feed: map[string][]string{"x": {"features"}}, Keep: []string{"id"}}
	var workerTotal, runTotal float64
	i := 0
	for b.Loop() {
		id := e.send(fmt.Sprintf(`{"filename": "rows.parquet", "job_id": "rows-%d", "feed": {"x": ["features"]}, "keep": ["id"]}`, i))
		i++
		testenv.Eventually(e.t, "the manifest", 300*time.Second, func() bool { _, ok := e.manifest(id); return ok })
		m, _ := e.manifest(id)
		f, err := os.Open(path)
		require.NoError(b, err)
		src, err := inference.OpenTable(f, int64(len(input)), path, local, opts)
		require.NoError(b, err)
		lm, err := inference.Run(b.Context(), inference.Pass{Model: local, Source: src, InputSize: int64(len(input)), InputName: path,
			Device: inference.DeviceCPU, BatchSize: 1024, Threads: e.cfg.Threads}, inference.NewParquetDirSink(b.TempDir(), src.KeptFields()))
		require.NoError(b, err)
		src.Close()
		f.Close()
		workerTotal += m.Durations.Total
		runTotal += lm.Durations.Total
	}
	b.ReportMetric(float64(rows*i)/workerTotal, "worker-samples/s")
	b.ReportMetric(float64(rows*i)/runTotal, "run-samples/s")
	b.ReportMetric(runTotal/workerTotal, "worker/run")
}

// listTable is rows of an int64 id and a list<float> of k, as Parquet
// (Snappy, row groups of 16,384 rows, written by arrow-go).
func listTable(b *testing.B, rows, k int) []byte {
	x := make([]float32, rows*k)
	for i := range x {
		x[i] = float32(i%1000)/500 - 1
	}
	var buf bytes.Buffer
	require.NoError(b, testenv.ListTable{Column: "features", X: x, K: k}.WriteParquet(&buf))
	return buf.Bytes()
}
