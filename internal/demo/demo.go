// Package demo makes the quick-start job: a noisy signal with planted events,
// an ONNX window classifier that should find them, and a scorer that compares
// what the classifier found with what was planted.
package demo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// The demo's files inside its directory.
const (
	ModelFile  = "detector.onnx"
	SignalFile = "signal.npy"
	truthFile  = "planted.json"
)

// Setup sizes the demo: Windows windows of Window samples, Events of them
// holding a burst. Amplitudes vary so that the weakest bursts are hard to see.
type Setup struct {
	Window, Windows, Events int
	Seed                    uint64
}

// Default is what `make demo` runs: a 64 MiB signal of 16.8 M samples.
var Default = Setup{Window: 256, Windows: 65536, Events: 48, Seed: 7}

// Detector is the model the demo runs: a window is an event when its mean
// energy clearly exceeds the unit noise floor.
func (s Setup) Detector() onnxmodel.EnergyDetector {
	return onnxmodel.EnergyDetector{Window: s.Window, Threshold: 1.5, Scale: 12}
}

type truth struct {
	Window int   `json:"window"`
	Events []int `json:"event_windows"`
}

// Prepare writes the model, the signal and the list of planted events into dir.
func (s Setup) Prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	model, err := s.Detector().Model()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ModelFile), model, 0o644); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(s.Seed, s.Seed+1))
	events := r.Perm(s.Windows)[:s.Events]
	slices.Sort(events)
	signal := make([]float32, s.Window*s.Windows)
	for i := range signal {
		signal[i] = float32(r.NormFloat64())
	}
	for i, w := range events {
		// Amplitudes from 1.0 (energy 1.5: right at the threshold) to 3.0.
		amp := 1.0 + 2.0*float64(i)/float64(max(1, s.Events-1))
		freq := 0.05 + 0.2*r.Float64()
		for t := range s.Window {
			signal[w*s.Window+t] += float32(amp * math.Sin(2*math.Pi*freq*float64(t)))
		}
	}
	if err := writeNpy(filepath.Join(dir, SignalFile), signal); err != nil {
		return err
	}
	data, _ := json.Marshal(truth{Window: s.Window, Events: events})
	return os.WriteFile(filepath.Join(dir, truthFile), data, 0o644)
}

func writeNpy(path string, v []float32) error {
	header := npy.EncodeHeader(npy.Float32, []int64{int64(len(v))})
	return os.WriteFile(path, append(header, npy.FromFloat32(v)...), 0o644)
}

// Score is how the detector's output compares with the planted events.
type Score struct {
	Planted, Found, FalseAlarms int
	Missed                      []int // window indices of missed events
}

// Report reads the planted events from dir and the event probabilities
// (probs.npy, column 1) from outDir, and scores detections at p >= 0.5.
func Report(dir, outDir string) (Score, error) {
	data, err := os.ReadFile(filepath.Join(dir, truthFile))
	if err != nil {
		return Score{}, err
	}
	var t truth
	if err := json.Unmarshal(data, &t); err != nil {
		return Score{}, fmt.Errorf("read %s: %w", truthFile, err)
	}
	probs, err := readProbs(filepath.Join(outDir, "probs.npy"))
	if err != nil {
		return Score{}, err
	}
	planted := map[int]bool{}
	for _, w := range t.Events {
		planted[w] = true
	}
	s := Score{Planted: len(t.Events)}
	for w, p := range probs {
		switch hit := p >= 0.5; {
		case hit && planted[w]:
			s.Found++
		case hit:
			s.FalseAlarms++
		case planted[w]:
			s.Missed = append(s.Missed, w)
		}
	}
	return s, nil
}

// readProbs returns column 1 of an [N,2] float32 .npy file.
func readProbs(path string) ([]float32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h, err := npy.ReadHeader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if h.DType != npy.Float32 || len(h.Shape) != 2 || h.Shape[1] != 2 || h.DataOffset+h.DataBytes() != int64(len(data)) {
		return nil, errors.New("probs.npy: want a complete float32 [N,2] array")
	}
	all := make([]float32, h.NumElements())
	npy.ToFloat32(all, data[h.DataOffset:], h.DType)
	col := make([]float32, h.Shape[0])
	for i := range col {
		col[i] = all[2*i+1]
	}
	return col, nil
}
