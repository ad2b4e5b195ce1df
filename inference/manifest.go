package inference

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"time"
)

// Manifest describes a finished run. It is written last: its presence means
// the outputs beside it are complete.
type Manifest struct {
	Inferstack       string       `json:"inferstack_version"`
	ORT              string       `json:"onnxruntime_version"`
	Input            InputInfo    `json:"input"`
	Model            ModelInfo    `json:"model"`
	Samples          int64        `json:"samples"`
	Chunks           int64        `json:"chunks"`
	ResumedAt        int64        `json:"resumed_at_chunk,omitempty"`
	ChunkSamples     int64        `json:"chunk_samples"`
	BatchSize        int64        `json:"batch_size"`
	Threads          int          `json:"threads"`
	BatchChoice      BatchChoice  `json:"batch_choice"`
	Device           DeviceInfo   `json:"device"`
	Outputs          []OutputFile `json:"outputs"`
	Durations        Durations    `json:"durations_seconds"`
	SamplesPerSecond float64      `json:"samples_per_second"`
	// PeakRSSBytes is the process's peak resident memory when the run ended
	// (0 where the OS does not say).
	PeakRSSBytes int64     `json:"peak_rss_bytes"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
}

// InputInfo names the input and how it was read.
type InputInfo struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	ETag  string `json:"etag,omitempty"`
	Layout
}

// DeviceInfo says what was asked for, what ran, and why they differ.
type DeviceInfo struct {
	Requested Device `json:"requested"`
	Used      Device `json:"used"`
	Fallback  string `json:"fallback_reason,omitempty"`
}

// OutputFile is one stored model output.
type OutputFile struct {
	Name  string  `json:"name"`
	File  string  `json:"file"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
}

// Durations are wall-clock seconds. Total is the run from its start: the
// set-up (sessions, probe, calibrate) and then the pipeline, whose read,
// infer and write are each stage's busy time; they overlap, so they may add
// up to more than the pipeline took. RuntimeLoad and ModelLoad come before
// total and are paid once: the first run of a process (of a model) reports
// them, later runs 0, so that a worker's manifests add up to what it spent.
type Durations struct {
	Total       float64 `json:"total"`
	RuntimeLoad float64 `json:"runtime_load"`
	ModelLoad   float64 `json:"model_load"`
	Sessions    float64 `json:"sessions"`
	Probe       float64 `json:"probe"`
	Calibrate   float64 `json:"calibrate"`
	Read        float64 `json:"read"`
	Infer       float64 `json:"infer"`
	Write       float64 `json:"write"`
}

// version is set at link time (-X github.com/inferstack/inferstack/inference.version=...).
var version string

// Version is the link-time version, else the module version or VCS revision
// Go recorded in the binary, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

// JSON is the manifest as indented JSON, with dtypes like "<f4" left readable.
func (m *Manifest) JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return buf.Bytes(), nil
}
