package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// The rounds of BenchmarkCalibrationGainAsProcesses: every cell is screened
// over screenRounds; the fastest finalCells cells and the cell of the
// engine's choice run selectRounds more, which pick the best cell; then the
// engine's two sides and a control run evalRounds more, each run between two
// runs of the best cell, and only those are compared. The best cell is timed
// on rounds that did not pick it: the fastest of several medians picked and
// timed on the same rounds is the one that drew the luckiest rounds, and
// overstates the cell.
const (
	screenRounds = 2
	finalCells   = 3
	selectRounds = 5
	evalRounds   = 15
)

// BenchmarkCalibrationGainAsProcesses is issue #22's measure: the engine's
// own choice against the best fixed cell of a grid (batch sizes 8 to 4,096
// and every thread candidate), each side a whole `inferstack run` process,
// as a user runs it, over the same input. "first" calibrates into an empty
// cache each round (its search's cost included); "cached" reuses one cache,
// run beforehand until its search completed. Sides alternate round by
// round, and every run of a side comes between two runs of the best cell:
// the machine's speed drifts by tens of percent over seconds, for a process
// and its CPU time alike, so a run is compared with the best cell's runs
// just before and after it. A side's figure is the median over the
// evaluation rounds of the mean of those two over the side's wall time. The
// control is the best cell run again as a side of its own: its figure is
// what the machine's noise alone gives.
func BenchmarkCalibrationGainAsProcesses(b *testing.B) {
	for _, m := range calibrationJobs(b) {
		b.Run(m.name, func(b *testing.B) {
			type side struct {
				name  string
				args  []string
				fresh bool
			}
			var cells []side
			for _, threads := range calibration.ThreadCandidates(runtime.NumCPU()) {
				for batch := 8; batch <= 4096; batch *= 2 {
					cells = append(cells, side{name: fmt.Sprintf("t%d-b%d", threads, batch),
						args: []string{"--threads", fmt.Sprint(threads), "--batch-size", fmt.Sprint(batch)}})
				}
			}
			first, cached := side{name: "first", fresh: true}, side{name: "cached"}
			cache := b.TempDir()
			timed := func(s side) (time.Duration, *inference.Manifest) {
				dir := cache
				if s.fresh {
					dir = b.TempDir()
				}
				// Each run's outputs go as soon as its manifest is read: the
				// page cache writing back hundreds of runs' outputs would be
				// noise beside the runs after them.
				out, err := os.MkdirTemp("", "calibration-run-")
				require.NoError(b, err)
				defer os.RemoveAll(out) //nolint:errcheck // a temporary directory
				cmd := exec.Command(binary, append([]string{"run", "--model", m.model, "--input", m.input, "--output", out, "--device", "cpu", "--quiet"}, s.args...)...)
				cmd.Env = append(os.Environ(), "INFERSTACK_ORT_LIB="+inference.DefaultLibPath(), "INFERSTACK_CACHE="+dir)
				start := time.Now()
				output, err := cmd.CombinedOutput()
				took := time.Since(start)
				require.NoError(b, err, "%s", output)
				data, err := os.ReadFile(filepath.Join(out, inference.ManifestFile))
				require.NoError(b, err)
				var man inference.Manifest
				require.NoError(b, json.Unmarshal(data, &man))
				return took, &man
			}
			// rounds runs sides alternately, each starting with another
			// side, and returns each side's wall times by round.
			rounds := func(sides []side, n int, seen func(side, *inference.Manifest)) map[string][]time.Duration {
				times := map[string][]time.Duration{}
				for r := range n {
					for i := range sides {
						s := sides[(i+r)%len(sides)]
						d, man := timed(s)
						times[s.name] = append(times[s.name], d)
						if seen != nil {
							seen(s, man)
						}
					}
				}
				return times
			}
			median := func(d []time.Duration) time.Duration {
				d = slices.Clone(d)
				slices.Sort(d)
				return d[len(d)/2]
			}
			byMedian := func(sides []side, times map[string][]time.Duration) []side {
				sides = slices.Clone(sides)
				slices.SortStableFunc(sides, func(x, y side) int { return int(median(times[x.name]) - median(times[y.name])) })
				return sides
			}
			for b.Loop() {
				primeRuns := 0
				_, primed := timed(cached)
				for ; primed.BatchChoice.Partial; _, primed = timed(cached) {
					primeRuns++
					require.Less(b, primeRuns, 60, "the search never completes")
				}
				screen := rounds(cells, screenRounds, nil)
				ranked := byMedian(cells, screen)
				finalists := ranked[:finalCells]
				// The cell of the engine's choice is a finalist too, so that
				// the best cell is judged against it where the screen ranked
				// it lower by noise.
				if i := slices.IndexFunc(ranked, func(c side) bool {
					return c.name == fmt.Sprintf("t%d-b%d", primed.Threads, primed.BatchSize)
				}); i >= finalCells {
					finalists = append(finalists, ranked[i])
				}
				selection := rounds(finalists, selectRounds, nil)
				best := byMedian(finalists, selection)[0]
				control := best
				control.name = "control"
				chosen := map[string]*inference.Manifest{} // each engine side's first manifest
				eval := map[string][]time.Duration{}
				ratios := map[string][]float64{}
				sides := []side{first, cached, control}
				before, _ := timed(best)
				for r := range evalRounds {
					for i := range sides {
						s := sides[(i+r)%len(sides)]
						d, man := timed(s)
						after, _ := timed(best)
						if _, ok := chosen[s.name]; !ok {
							chosen[s.name] = man
						}
						eval[s.name] = append(eval[s.name], d)
						eval[best.name] = append(eval[best.name], after)
						ratios[s.name] = append(ratios[s.name], (before+after).Seconds()/2/d.Seconds())
						before = after
					}
				}
				// ratio is the median, over the evaluation rounds, of the best
				// cell's time beside the side's run over the side's.
				ratio := func(name string) float64 {
					r := slices.Clone(ratios[name])
					slices.Sort(r)
					return r[len(r)/2]
				}
				b.ReportMetric(ratio(first.name), "first/best-cell")
				b.ReportMetric(ratio(cached.name), "cached/best-cell")
				b.ReportMetric(ratio(control.name), "control/best-cell")
				b.ReportMetric(float64(primeRuns+1), "runs-to-complete")
				b.Logf("best cell %s at %.0f samples/s; the search completed in %d runs", best.name, float64(m.samples)/median(eval[best.name]).Seconds(), primeRuns+1)
				for _, name := range []string{first.name, cached.name} {
					man := chosen[name]
					b.Logf("  %s chose batch %d threads %d (%s, partial %v, calibrating %.3f s)", name, man.BatchSize, man.Threads, man.BatchChoice.Source, man.BatchChoice.Partial, man.Durations.Calibrate)
				}
				for _, name := range []string{first.name, cached.name, best.name, control.name} {
					b.Logf("  eval   %-9s %7.0f samples/s  %v  ratios %.3f", name, float64(m.samples)/median(eval[name]).Seconds(), eval[name], ratios[name])
				}
				for _, s := range byMedian(finalists, selection) {
					b.Logf("  select %-9s %7.0f samples/s  %v", s.name, float64(m.samples)/median(selection[s.name]).Seconds(), selection[s.name])
				}
				for _, s := range ranked {
					b.Logf("  screen %-9s %7.0f samples/s  %v", s.name, float64(m.samples)/median(screen[s.name]).Seconds(), screen[s.name])
				}
			}
		})
	}
}

type calibrationJob struct {
	name, model, input string
	samples            int64
}

// calibrationJobs are the three: the pretrained PaddleOCR text
// direction classifier on 2,048 crops, a ConvNet on 4,096 images and an MLP
// on 400,000 rows.
func calibrationJobs(b *testing.B) []calibrationJob {
	dir := b.TempDir()
	classifier := filepath.Join(inference.CacheDir(), "models", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
	if _, err := os.Stat(classifier); err != nil {
		b.Fatalf("the pretrained classifier is missing (%v): run `make setup`", err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(b, os.WriteFile(path, data, 0o644))
		return path
	}
	model := func(name string, build func() ([]byte, error)) string {
		data, err := build()
		require.NoError(b, err)
		return write(name, data)
	}
	input := func(name string, shape ...int64) string {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = float32((i*7919)%1000)/500 - 1
		}
		return write(name, append(npy.EncodeHeader(npy.Float32, shape), npy.FromFloat32(x)...))
	}
	return []calibrationJob{
		{"classifier-3x48x192", classifier, input("crops.npy", 2048, 3, 48, 192), 2048},
		{"convnet-3x64x64", model("conv.onnx", onnxmodel.NewConvNet(3, 32, 10, 4).Model), input("images.npy", 4096, 3, 64, 64), 4096},
		{"mlp-256", model("mlp.onnx", onnxmodel.NewMLP(256, 256, 10, 5).Model), input("rows.npy", 400_000, 256), 400_000},
	}
}
