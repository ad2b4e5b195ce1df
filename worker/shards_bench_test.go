package worker_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/runenv"
)

// BenchmarkShardsOnTwoWorkers is issue #21's measure: one input split into
// 4 shards on 2 workers (the real binary, each on a core of its own) at 1
// thread each, against the same input unsplit on 1 worker at 1 thread, side by side against moto (S3 and SQS:
// the assembly's UploadPartCopy needs a real multipart server). Each round
// runs both jobs, in alternating order; x_speedup is the ratio of the
// median wall times, each from the send of the job's message to its
// manifest's finished_at (a split job's includes the split, the shards'
// queue waits and the assembly). Both workers stay up throughout with the
// model loaded (a warm-up round, not timed): one message is one job, so
// the unsplit job runs on one of them while the other waits on SQS. Every
// round's results must be byte-identical.
//
// The model is heavy for its input and output (an MLP 64-16384-8: 1.2 M
// multiply-adds for 256 bytes in and 32 bytes out a sample), so inference,
// not moto, takes the time; the input (64 MiB, 262,144 samples) is large
// enough that the split's fixed costs are a small part of it. x_ceiling is
// what this machine allows, in the same rounds: the engine alone over the
// whole input, against two engines at once over half each, no S3, no SQS.
// moto-cpu-* is the CPU the emulator took during each job, from the same
// two cores (S3 and SQS take none of a task's on AWS). The manifest is
// polled once a second, the status every 2 s, for the same reason.
func BenchmarkShardsOnTwoWorkers(b *testing.B) {
	const samples, in, hidden, out = 262144, 64, 16384, 8
	e := newEnv(b, 60*time.Second)
	e.mlp = onnxmodel.NewMLP(in, hidden, out, 7)
	model, err := e.mlp.Model()
	require.NoError(b, err)
	require.NoError(b, os.WriteFile(e.modelPath, model, 0o644))
	e.put("models/mlp.onnx", model)
	x := make([]float32, samples*in)
	for i := range x {
		x[i] = float32((i*7919)%1000)/500 - 1
	}
	input := append(npy.EncodeHeader(npy.Float32, []int64{samples, in}), npy.FromFloat32(x)...)
	e.put("inputs/heavy.npy", input)
	e.cfg.BatchSize, e.cfg.ChunkSamples, e.cfg.Threads, e.cfg.StatusEvery = 256, 16384, 1, 2*time.Second // 16 chunks; 4 shards of 65,536 samples
	// Each worker is the real binary on a core of its own, as an ECS task
	// with one vCPU has one; moto, standing in for services that take none
	// of a task's CPU, runs at the lowest priority.
	taskset, err := exec.LookPath("taskset")
	require.NoError(b, err, "this benchmark pins each worker to a core with taskset(1): apt-get install util-linux")
	for i := range 2 {
		e.launch(exec.Command(taskset, "-c", fmt.Sprint(i), binary, "worker"), runenv.EnvStatusEvery+"=2s")
	}
	restore, err := moto.Deprioritize()
	require.NoError(b, err)
	b.Cleanup(restore)

	n := 0
	// job runs one job to its manifest and returns it with its wall time
	// and the CPU time moto spent meanwhile.
	job := func(shards int) (*inference.Manifest, string, float64, float64) {
		id := fmt.Sprintf("heavy-%d-s%d", n, shards)
		n++
		body := fmt.Sprintf(`{"filename": "heavy.npy", "job_id": %q}`, id)
		if shards > 1 {
			body = fmt.Sprintf(`{"filename": "heavy.npy", "job_id": %q, "shards": %d}`, id, shards)
		}
		sent := time.Now()
		before, err := moto.CPUTime()
		require.NoError(b, err)
		e.send(body)
		// Polled once a second, not as testenv.Eventually polls: moto's
		// CPU is the machine's, and the wall time comes from the manifest.
		for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(time.Second) {
			if _, ok := e.manifest(id); ok {
				break
			}
			require.True(b, time.Now().Before(deadline), "no manifest for %s", id)
		}
		after, err := moto.CPUTime()
		require.NoError(b, err)
		m, _ := e.manifest(id)
		return m, id, m.FinishedAt.Sub(sent).Seconds(), (after - before).Seconds()
	}
	// outputs reads a job's result files.
	outputs := func(id string, m *inference.Manifest) map[string][]byte {
		files := map[string][]byte{}
		for _, o := range m.Outputs {
			data, ok := e.get("results/" + id + "/" + o.File)
			require.True(b, ok, o.File)
			files[o.File] = data
		}
		return files
	}
	ceiling := newEngineCeiling(b, e, input, samples)
	// Warm-up: both workers load the model and create their sessions.
	job(4)
	job(1)

	var whole, split, alone, pair, wholeInfer, splitInfer, wholeMoto, splitMoto []float64
	round := 0
	for b.Loop() {
		var one, four map[string][]byte
		for _, shards := range [][]int{{1, 4}, {4, 1}}[round%2] {
			m, id, seconds, motoCPU := job(shards)
			if shards == 1 {
				require.Empty(b, m.Shards)
				whole, wholeInfer, wholeMoto, one = append(whole, seconds), append(wholeInfer, m.Durations.Infer), append(wholeMoto, motoCPU), outputs(id, m)
				continue
			}
			require.Len(b, m.Shards, 4)
			split, splitInfer, splitMoto, four = append(split, seconds), append(splitInfer, m.Durations.Infer), append(splitMoto, motoCPU), outputs(id, m)
			b.Logf("round %d: unsplit %.2f s (infer %.2f s, moto's cpu %.2f s); split %.2f s (infer %.2f s on both, moto's cpu %.2f s); %s", round,
				whole[len(whole)-1], wholeInfer[len(wholeInfer)-1], wholeMoto[len(wholeMoto)-1], seconds, m.Durations.Infer, motoCPU, shardTimes(m, seconds))
		}
		require.Len(b, four, len(one))
		for name, data := range one {
			require.True(b, bytes.Equal(data, four[name]), "%s: the split job's differs from the unsplit job's", name)
		}
		a, p := ceiling()
		alone, pair = append(alone, a), append(pair, p)
		b.Logf("round %d: engine alone %.2f s, two engines on halves %.2f s", round, a, p)
		round++
	}
	b.ReportMetric(median(whole), "unsplit-s")
	b.ReportMetric(median(split), "split-s")
	b.ReportMetric(median(whole)/median(split), "x_speedup")
	b.ReportMetric(median(splitInfer)/median(wholeInfer), "infer-busy-split/unsplit")
	b.ReportMetric(median(alone)/median(pair), "x_ceiling")
	b.ReportMetric(median(wholeMoto), "moto-cpu-unsplit-s")
	b.ReportMetric(median(splitMoto), "moto-cpu-split-s")
}

// newEngineCeiling returns a function that times the engine, with e's
// pinned settings and no S3, over the whole input alone, then over each
// half at once in two sessions: how much faster two cores make the
// inference itself on this machine, at this moment.
func newEngineCeiling(b *testing.B, e *env, input []byte, samples int64) func() (alone, pair float64) {
	dir := b.TempDir()
	path := filepath.Join(dir, "heavy.npy")
	require.NoError(b, os.WriteFile(path, input, 0o644))
	var models [2]*inference.Model
	for i := range models {
		m, err := inference.LoadModel(e.modelPath)
		require.NoError(b, err)
		b.Cleanup(m.Close)
		models[i] = m
	}
	run := func(m *inference.Model, rows *inference.Range) {
		f, err := os.Open(path)
		require.NoError(b, err)
		defer f.Close()
		_, err = inference.Run(b.Context(), inference.Pass{Model: m, Input: f, InputSize: int64(len(input)), InputName: path, Range: rows,
			Device: inference.DeviceCPU, BatchSize: e.cfg.BatchSize, ChunkSamples: e.cfg.ChunkSamples, Threads: e.cfg.Threads}, inference.NewDirSink(b.TempDir()))
		require.NoError(b, err)
	}
	halves := []inference.Range{{Unit: inference.RangeRows, From: 0, To: samples / 2}, {Unit: inference.RangeRows, From: samples / 2, To: samples}}
	run(models[0], nil) // sessions warm
	run(models[1], nil)
	return func() (float64, float64) {
		start := time.Now()
		run(models[0], nil)
		alone := time.Since(start).Seconds()
		start = time.Now()
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { run(models[i], &halves[i]) })
		}
		wg.Wait()
		return alone, time.Since(start).Seconds()
	}
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

// shardTimes says where a split job's wall time went: the split (from the
// send to the first shard's start), each shard's worker and engine span
// from then, and the assembly after the last shard.
func shardTimes(m *inference.Manifest, wall float64) string {
	last := m.StartedAt
	s := ""
	for _, sh := range m.Shards {
		s += fmt.Sprintf("shard %d on %s %.2f-%.2f s; ", sh.Index, sh.Worker, sh.StartedAt.Sub(m.StartedAt).Seconds(), sh.FinishedAt.Sub(m.StartedAt).Seconds())
		if sh.FinishedAt.After(last) {
			last = sh.FinishedAt
		}
	}
	return fmt.Sprintf("split %.2f s; %sassembly %.2f s", wall-m.FinishedAt.Sub(m.StartedAt).Seconds(), s, m.FinishedAt.Sub(last).Seconds())
}
