// Package manifest is the contract of a finished run: manifest.json, the
// last thing written beside a run's outputs, whose presence means they are
// complete. The engine writes it; the worker, the client and the tests read
// it with this package alone: no cgo, no ONNX Runtime.
package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// File is the manifest's name beside the outputs (a directory or a results
// prefix).
const File = "manifest.json"

// Manifest describes a finished run.
type Manifest struct {
	Inferstack       string       `json:"inferstack_version"`
	ORT              string       `json:"onnxruntime_version"`
	Input            Input        `json:"input"`
	Model            Model        `json:"model"`
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
	// Shards lists the shards of a split job, in order (absent when one
	// worker ran it). Its durations then add up the shards' (busy time on
	// all workers), and Total is the job's wall time.
	Shards []Shard `json:"shards,omitempty"`
	// Parts are the files of a result written as a dataset of ordered part
	// files (a split table job's predictions/part-NNNNN.parquet), which
	// DuckDB, Spark and pyarrow read as one table.
	Parts []string `json:"parts,omitempty"`
}

// Shard is one shard of a split job: its rows (or a text table's bytes),
// who ran it, and when.
type Shard struct {
	Index      int       `json:"index"`
	Unit       string    `json:"unit"`
	From       int64     `json:"from"`
	To         int64     `json:"to"`
	Samples    int64     `json:"samples"`
	Worker     string    `json:"worker,omitempty"`
	BatchSize  int64     `json:"batch_size"`
	Threads    int       `json:"threads"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Input names the input and how it was read.
type Input struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	ETag  string `json:"etag,omitempty"`
	Layout
	// Table says how a table's columns fed the model (absent for .npy and raw).
	Table *Table `json:"table,omitempty"`
}

// Table is how a table input fed the model.
type Table struct {
	// Columns are the columns read, in order: those fed, then those kept.
	Columns []string `json:"columns"`
	// Feed maps each model input to the columns it read.
	Feed map[string][]string `json:"feed"`
	// Conversions are the columns whose values changed type on the way.
	Conversions []Conversion `json:"conversions,omitempty"`
	// Kept are the columns copied to the result beside the predictions.
	Kept []string `json:"kept,omitempty"`
}

// Conversion is a column whose values changed type on their way to an input.
type Conversion struct {
	Input  string `json:"input"`
	Column string `json:"column"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Exact is false where values may round (float64 to float32).
	Exact bool `json:"exact"`
}

// Layout says how the input's samples were laid out: its format and stored
// element type, the file's shape, and each sample's shape. The first axis
// of the file is the sample axis (or the time axis when windowed).
type Layout struct {
	Format      string  `json:"format"` // npy or raw
	DType       string  `json:"dtype"`  // element type as stored, e.g. <f4
	FileShape   []int64 `json:"shape"`
	Samples     int64   `json:"samples"`
	SampleShape []int64 `json:"sample_shape"`
	Windowing
}

// Windowing cuts a long signal [T] or [T,C] into samples of Window time steps,
// one every Hop steps. The zero value means the file already holds samples.
type Windowing struct {
	Window int64 `json:"window,omitempty"`
	Hop    int64 `json:"hop,omitempty"`
}

// Tensor is a model input or output as the model declares it (-1 for a
// dynamic dimension).
type Tensor struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
}

// Model identifies a model and describes its inputs and outputs.
type Model struct {
	Path    string   `json:"path"`
	SHA256  string   `json:"sha256"`
	Bytes   int64    `json:"bytes"`
	Inputs  []Tensor `json:"inputs"`
	Outputs []Tensor `json:"outputs"`
}

// BatchChoice is the batch size and thread count a run used, and why.
type BatchChoice struct {
	BatchSize int64 `json:"batch_size"`
	Threads   int   `json:"threads"`
	// Source is flag, model (a fixed batch dim), calibrated (this run
	// measured), cached, default (the search has not measured yet: the
	// start batch at all cores) or small-input.
	Source string  `json:"source"`
	Trials []Trial `json:"trials,omitempty"`
	// Partial says the search has not reached the peak yet: the budget ended
	// it, and the next run of this model goes on from where it stopped.
	Partial bool `json:"partial,omitempty"`
}

// Trial is one setting the calibration measured.
type Trial struct {
	BatchSize     int64   `json:"batch_size"`
	Threads       int     `json:"threads"`
	SamplesPerSec float64 `json:"samples_per_sec"`
}

// Device selects the execution provider: auto, cpu or gpu.
type Device string

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
// set-up (sessions, probe) and then the pipeline, whose read, infer and
// write are each stage's busy time; they overlap, so they may add up to more
// than the pipeline took. Calibrate is what the search's chunks, run within
// the pipeline, took beyond the incumbent's rate (0 where they won). RuntimeLoad and ModelLoad come before
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
