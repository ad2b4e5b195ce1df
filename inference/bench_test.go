package inference

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
		require.NoError(b, sess.Run(ins[i], outs[i]))
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
	job := Job{Model: model, BatchSize: batch, Threads: threads}
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

// BenchmarkCalibrationGain: the engine's own choice (batch size and threads)
// against a fixed batch of 64 on the pretrained model. The first default run
// calibrates (its cost is reported); later ones use the cache.
func BenchmarkCalibrationGain(b *testing.B) {
	const n = 4096
	model, input := pretrainedInput(b, n)
	b.Setenv("INFERSTACK_CACHE", b.TempDir())
	for b.Loop() {
		first, _ := mustRun(b, Job{Model: model}, input)
		b.ReportMetric(first.Durations.Calibrate, "calibration-s")
		b.ReportMetric(float64(first.BatchSize), "chosen-batch")
		b.ReportMetric(float64(first.Threads), "chosen-threads")
		var own, fixed []time.Duration
		for range benchRounds {
			m, _ := mustRun(b, Job{Model: model}, input)
			own = append(own, time.Duration(m.Durations.Total*float64(time.Second)))
			m, _ = mustRun(b, Job{Model: model, BatchSize: 64}, input)
			fixed = append(fixed, time.Duration(m.Durations.Total*float64(time.Second)))
		}
		b.ReportMetric(float64(n)/median(own).Seconds(), "default-samples/s")
		b.ReportMetric(float64(n)/median(fixed).Seconds(), "batch64-samples/s")
		b.ReportMetric(median(fixed).Seconds()/median(own).Seconds(), "gain")
		b.ReportMetric(float64(n)/first.Durations.Total/(float64(n)/median(fixed).Seconds()), "gain-incl-calibration")
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
			layout, err := NewLayout(f, info.Size(), path, model, Windowing{})
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
func BenchmarkPeakRSS(b *testing.B) {
	const in, samples = 256, 1 << 20 // 1 KiB per sample, 1 GiB in all
	dir := b.TempDir()
	bin := filepath.Join(dir, "inferstack")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/inferstack").CombinedOutput()
	require.NoError(b, err, "%s", out)
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
