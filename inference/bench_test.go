package inference

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// The benchmarks measure ratios side by side in one process, alternating the
// two sides round by round, because absolute figures on shared 2-core
// machines swing by tens of percent. Run them with `make bench`.

const benchRounds = 5

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// pretrainedInput writes n random 3x48x192 crops, the classifier's usual input.
func pretrainedInput(b *testing.B, n int) (*Model, string) {
	model, err := LoadModel(pretrainedModel(b))
	require.NoError(b, err)
	return model, writeNpy(b, b.TempDir(), "crops.npy", []int64{int64(n), 3, 48, 192}, randomFloats(n*3*48*192, 20))
}

// bareLoop is the floor the engine is held to: ORT Run over in-memory samples
// on pre-created tensors, nothing read and nothing written.
func bareLoop(b *testing.B, sess *Session, model *Model, samples []byte, n, batch int64, sampleShape []int64) time.Duration {
	sampleBytes := product(sampleShape) * 4
	var ins []*ort.CustomDataTensor
	var outs [][]ort.Value
	for first := int64(0); first < n; first += batch {
		size := min(batch, n-first)
		in, err := ort.NewCustomDataTensor(append(ort.Shape{size}, sampleShape...), samples[first*sampleBytes:(first+size)*sampleBytes], ort.TensorElementDataTypeFloat)
		require.NoError(b, err)
		out, err := newOutputTensors([]OutputSpec{{Name: model.Outputs[0].Name, DType: "float32", SampleShape: []int64{2}, dt: npy.Float32}}, size, [][]byte{make([]byte, size*8)})
		require.NoError(b, err)
		ins, outs = append(ins, in), append(outs, out)
	}
	defer func() {
		for i := range ins {
			ins[i].Destroy()
			destroyAll(outs[i])
		}
	}()
	start := time.Now()
	for i := range ins {
		require.NoError(b, sess.Run([]ort.Value{ins[i]}, outs[i]))
	}
	return time.Since(start)
}

// BenchmarkEngineVsBareORT: the whole engine (read the file, infer, write
// the outputs) against bareLoop on the same model, batch size, threads and data.
func BenchmarkEngineVsBareORT(b *testing.B) {
	const n, batch = 512, 16
	model, input := pretrainedInput(b, n)
	data, err := os.ReadFile(input)
	require.NoError(b, err)
	samples := data[128:]
	threads := DefaultThreads()
	sess, err := model.NewSession(DeviceCPU, threads)
	require.NoError(b, err)
	defer sess.Close()
	job := Pass{Model: model, BatchSize: batch, Threads: threads}
	for b.Loop() {
		var engine, bare []time.Duration
		for range benchRounds {
			start := time.Now()
			mustRun(b, job, input)
			engine = append(engine, time.Since(start))
			bare = append(bare, bareLoop(b, sess, model, samples, n, batch, []int64{3, 48, 192}))
		}
		b.ReportMetric(float64(n)/median(engine).Seconds(), "engine-samples/s")
		b.ReportMetric(float64(n)/median(bare).Seconds(), "bare-samples/s")
		b.ReportMetric(median(bare).Seconds()/median(engine).Seconds(), "engine/bare")
	}
}

// calibrationModel is one model of BenchmarkCalibrationGain with an input for it.
type calibrationModel struct {
	name, path, input string
	n                 int
}

// calibrationModels are models of different character: PaddleOCR's classifier
// (convolutions on 3x48x192 crops), a random ConvNet at another input size
// (3x64x64, heavier convolutions) and an MLP (tiny per-sample compute, I/O-heavy).
func calibrationModels(b *testing.B) []calibrationModel {
	dir := b.TempDir()
	conv, err := onnxmodel.NewConvNet(3, 32, 10, 4).Model()
	require.NoError(b, err)
	mlp, err := onnxmodel.NewMLP(256, 256, 10, 5).Model()
	require.NoError(b, err)
	// The job (2,048 crops, 1.5 s on 2 cores) and its peers;
	// INFERSTACK_BENCH_JOB_SCALE=N makes every job N times longer, to see
	// how the first run's calibration cost amortizes.
	scale := 1
	if v, err := strconv.Atoi(os.Getenv("INFERSTACK_BENCH_JOB_SCALE")); err == nil && v > 0 {
		scale = v
	}
	nClassifier, nConv, nMLP := 2048*scale, 4096*scale, 400_000*scale
	return []calibrationModel{
		{"classifier-3x48x192", pretrainedModel(b), writeNpy(b, dir, "crops.npy", []int64{int64(nClassifier), 3, 48, 192}, randomFloats(nClassifier*3*48*192, 20)), nClassifier},
		{"convnet-3x64x64", writeFile(b, dir, "conv.onnx", conv), writeNpy(b, dir, "images.npy", []int64{int64(nConv), 3, 64, 64}, randomFloats(nConv*3*64*64, 22)), nConv},
		{"mlp-256", writeFile(b, dir, "mlp.onnx", mlp), writeNpy(b, dir, "rows.npy", []int64{int64(nMLP), 256}, randomFloats(nMLP*256, 23)), nMLP},
	}
}

// BenchmarkCalibrationGain: the engine's own choice against every cell of a
// grid of fixed settings ({1, all cores} threads x {1, 4, 16, 64} batch) and
// against --batch-size 64 at the old default threads (cores-1), all in one
// run with the sides alternating round by round. Every side loads the model
// afresh, as a new `inferstack run` process would (the runtime itself loads
// once per process, so its cost is not in these figures). "first" calibrates
// into an empty cache each round (its cost included); "cached" reuses one.
func BenchmarkCalibrationGain(b *testing.B) {
	const rounds = 7
	b.Setenv("INFERSTACK_CACHE", b.TempDir())
	for _, cm := range calibrationModels(b) {
		b.Run(cm.name, func(b *testing.B) {
			type side struct {
				name  string
				job   Pass
				fresh bool // calibrate into an empty cache
			}
			sides := []side{{name: "first", fresh: true}, {name: "cached"}}
			cells := map[string]bool{}
			for _, threads := range slices.Compact([]int{1, runtime.NumCPU()}) {
				for _, batch := range []int64{1, 4, 16, 64} {
					name := fmt.Sprintf("t%d-b%d", threads, batch)
					cells[name] = true
					sides = append(sides, side{name: name, job: Pass{BatchSize: batch, Threads: threads}})
				}
			}
			oldThreads := max(1, runtime.NumCPU()-1) // the default before calibration compared threads
			old := fmt.Sprintf("t%d-b64", oldThreads)
			if !cells[old] {
				sides = append(sides, side{name: old, job: Pass{BatchSize: 64, Threads: oldThreads}})
			}
			cached := b.TempDir()
			timed := func(s side) (time.Duration, *Manifest) {
				dir := cached
				if s.fresh {
					dir = b.TempDir()
				}
				require.NoError(b, os.Setenv("INFERSTACK_CACHE", dir))
				start := time.Now()
				model, err := LoadModel(cm.path)
				require.NoError(b, err)
				job := s.job
				job.Model = model
				m, _ := mustRun(b, job, cm.input)
				model.Close()
				return time.Since(start), m
			}
			for b.Loop() {
				// "cached" runs once the search has completed: small jobs
				// complete it over several runs, each spending its share.
				var primed *Manifest
				primeRuns := 0
				for primed == nil || primed.BatchChoice.Partial {
					_, primed = timed(side{name: "cached"})
					primeRuns++
					require.Less(b, primeRuns, 100, "calibration never completes")
				}
				b.ReportMetric(float64(primeRuns), "runs-to-complete")
				times := map[string][]time.Duration{}
				var firsts []*Manifest
				for r := range rounds {
					for i := range sides {
						s := sides[(i+r)%len(sides)] // rotate who goes first
						d, m := timed(s)
						times[s.name] = append(times[s.name], d)
						if s.fresh {
							firsts = append(firsts, m)
						}
					}
				}
				rate := func(name string) float64 { return float64(cm.n) / median(times[name]).Seconds() }
				bestCell, best := "", 0.0
				for _, s := range sides[2:] {
					if cells[s.name] && rate(s.name) > best {
						bestCell, best = s.name, rate(s.name)
					}
					b.ReportMetric(rate(s.name), s.name+"-samples/s")
				}
				var cal []float64
				for _, m := range firsts {
					cal = append(cal, m.Durations.Calibrate)
				}
				slices.Sort(cal)
				b.ReportMetric(rate("first"), "first-samples/s")
				b.ReportMetric(rate("cached"), "cached-samples/s")
				b.ReportMetric(cal[len(cal)/2], "calibration-s")
				b.ReportMetric(float64(primed.BatchSize), "chosen-batch")
				b.ReportMetric(float64(primed.Threads), "chosen-threads")
				b.ReportMetric(rate("first")/best, "first/best-cell")
				b.ReportMetric(rate("cached")/best, "cached/best-cell")
				b.ReportMetric(rate("cached")/rate(old), "cached/old-b64")
				b.ReportMetric(rate("first")/rate(old), "first/old-b64")
				b.Logf("search completed in %d runs: batch %d threads %d, trials %+v", primeRuns, primed.BatchSize, primed.Threads, primed.BatchChoice.Trials)
				b.Logf("best cell %s; old default %s; first-run choices:", bestCell, old)
				for _, m := range firsts {
					b.Logf("  batch %d threads %d partial %v calibrate %.3fs trials %+v", m.BatchSize, m.Threads, m.BatchChoice.Partial, m.Durations.Calibrate, m.BatchChoice.Trials)
				}
				for _, s := range sides {
					b.Logf("  %-8s median %6.0f samples/s  runs %v", s.name, rate(s.name), times[s.name])
				}
			}
		})
	}
}

// BenchmarkFixedCosts: what every `inferstack run` pays before its first
// batch, per model: loading the model file, creating a session (at one
// thread and at all cores) and probing the outputs on one sample.
func BenchmarkFixedCosts(b *testing.B) {
	for _, cm := range calibrationModels(b) {
		b.Run(cm.name, func(b *testing.B) {
			f, err := os.Open(cm.input)
			require.NoError(b, err)
			defer f.Close()
			info, err := f.Stat()
			require.NoError(b, err)
			var load, sess1, sessAll, probe []time.Duration
			for b.Loop() {
				start := time.Now()
				model, err := LoadModel(cm.path)
				require.NoError(b, err)
				load = append(load, time.Since(start))
				layout, err := NewLayout(f, info.Size(), cm.input, model.Inputs, Windowing{})
				require.NoError(b, err)
				head := feedBuffers(layout.Feeds(), 1)
				require.NoError(b, layout.Read(0, 1, head))
				start = time.Now()
				s, err := model.NewSession(DeviceCPU, 1)
				require.NoError(b, err)
				sess1 = append(sess1, time.Since(start))
				start = time.Now()
				_, err = probeOutputs(s, model, layout.Feeds(), head, 1)
				require.NoError(b, err)
				probe = append(probe, time.Since(start))
				start = time.Now()
				all, err := model.NewSession(DeviceCPU, runtime.NumCPU())
				require.NoError(b, err)
				sessAll = append(sessAll, time.Since(start))
				s.Close()
				all.Close()
			}
			b.ReportMetric(median(load).Seconds()*1e3, "load-ms")
			b.ReportMetric(median(sess1).Seconds()*1e3, "session-1thread-ms")
			b.ReportMetric(median(sessAll).Seconds()*1e3, "session-allcores-ms")
			b.ReportMetric(median(probe).Seconds()*1e3, "probe-ms")
		})
	}
}

// BenchmarkDecode: turning .npy bytes in the page cache into model-ready
// float32 chunks, as the engine's reader does.
func BenchmarkDecode(b *testing.B) {
	const rows, cols = 1 << 14, 256 // 16 MiB of float32
	dir := b.TempDir()
	for _, dt := range []npy.DType{npy.Float32, {Kind: 'f', Size: 8}, {Kind: 'i', Size: 2}} {
		b.Run(dt.String(), func(b *testing.B) {
			path := writeFile(b, dir, dt.String()[1:]+".npy", npy.EncodeHeader(dt, []int64{rows, cols}), make([]byte, rows*cols*dt.Size))
			f, err := os.Open(path)
			require.NoError(b, err)
			defer f.Close()
			info, _ := f.Stat()
			model := TensorInfo{Name: "x", DType: "float32", Shape: []int64{-1, cols}}
			layout, err := NewLayout(f, info.Size(), path, []TensorInfo{model}, Windowing{})
			require.NoError(b, err)
			const chunk = 8192
			dst := make([]byte, chunk*cols*4)
			buf := &readBuffers{}
			b.SetBytes(rows * cols * int64(dt.Size))
			for b.Loop() {
				for start := int64(0); start < rows; start += chunk {
					require.NoError(b, layout.read(f, start, start+chunk, dst, buf))
				}
			}
		})
	}
}

// BenchmarkPeakRSS runs the real inferstack binary over a 1 GiB input and
// reports the kernel's peak resident set size of that process.
// buildCLI builds the real inferstack binary into dir: peak RSS is the
// process's own.
func buildCLI(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "inferstack")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/inferstack").CombinedOutput()
	require.NoError(b, err, "%s", out)
	return bin
}

func BenchmarkPeakRSS(b *testing.B) {
	const in, samples = 256, 1 << 20 // 1 KiB per sample, 1 GiB in all
	dir := b.TempDir()
	bin := buildCLI(b, dir)
	data, err := onnxmodel.NewMLP(in, 32, 5, 3).Model()
	require.NoError(b, err)
	model := writeFile(b, dir, "mlp.onnx", data)

	input := filepath.Join(dir, "big.npy")
	f, err := os.Create(input)
	require.NoError(b, err)
	_, err = f.Write(npy.EncodeHeader(npy.Float32, []int64{samples, in}))
	require.NoError(b, err)
	block := npy.FromFloat32(randomFloats(4096*in, 21))
	for range samples / 4096 {
		_, err = f.Write(block)
		require.NoError(b, err)
	}
	require.NoError(b, f.Close())

	for b.Loop() {
		cmd := exec.Command(bin, "run", "--model", model, "--input", input, "--output", filepath.Join(dir, "out"), "--device", "cpu", "--json")
		out, err := cmd.Output()
		require.NoError(b, err)
		var m Manifest
		require.NoError(b, json.Unmarshal(out, &m))
		require.EqualValues(b, samples, m.Samples)
		b.ReportMetric(float64(m.PeakRSSBytes)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(samples*in*4)/(1<<30), "input-GiB")
		b.ReportMetric(m.SamplesPerSecond*in*4/(1<<30), "GiB/s")
	}
}
