package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
)

// runCommand is `inferstack run`.
type runCommand struct {
	m     *Main
	flags *flag.FlagSet

	model, input, output, device, ortLib string
	inputFormat, outputFormat, keep      string
	feed                                 feedFlag
	keepColumns                          []string
	batchSize, chunkSamples              int64
	window, hop                          int64
	threads                              int
	jsonOut, quiet                       bool
}

// feedFlag is --feed INPUT=COL1,COL2,..., repeatable.
type feedFlag map[string][]string

func (f feedFlag) String() string { return fmt.Sprint(map[string][]string(f)) }

func (f feedFlag) Set(s string) error {
	input, cols, err := job.ParseFeed(s)
	if err != nil {
		return err
	}
	if _, dup := f[input]; dup {
		return fmt.Errorf("input %q fed twice", input)
	}
	f[input] = cols
	return nil
}

func newRunCommand(m *Main) *runCommand {
	c := &runCommand{m: m, flags: flag.NewFlagSet("run", flag.ContinueOnError), feed: feedFlag{}}
	fs := c.flags
	fs.SetOutput(m.Stderr)
	fs.StringVar(&c.model, "model", "", "ONNX model file (required)")
	fs.StringVar(&c.input, "input", "", "input file: a table (.parquet, .csv, .jsonl, .ndjson; .csv.gz, .jsonl.gz), .npy (C order), or raw little-endian float32 (required)")
	fs.StringVar(&c.output, "output", "", "output directory: predictions.parquet for a table (or one .npy per model output), then manifest.json (required)")
	fs.StringVar(&c.inputFormat, "input-format", "", "parquet, csv or jsonl, where the file name does not say")
	fs.Var(c.feed, "feed", "INPUT=COLUMN or INPUT=COL1,COL2,...: the table columns a model input reads (repeatable; default: the column of the input's name)")
	fs.StringVar(&c.keep, "keep", "", "table columns copied to the result beside the predictions, e.g. id,ts")
	fs.StringVar(&c.outputFormat, "output-format", "", "parquet (default for a table) or npy (one .npy per output, in row order)")
	fs.Int64Var(&c.batchSize, "batch-size", 0, "samples per inference call (default: searched on the job's first chunks, cached per model and machine)")
	fs.Int64Var(&c.chunkSamples, "chunk-samples", 0, "samples read per chunk, rounded up to whole batches (default: about 8 MiB of input)")
	fs.StringVar(&c.device, "device", "auto", "auto (CUDA if available, else CPU), cpu, or gpu (fail without CUDA)")
	fs.Int64Var(&c.window, "window", 0, "cut a signal [T] or [T,C] into windows of this many steps (needs --hop)")
	fs.Int64Var(&c.hop, "hop", 0, "steps between the starts of consecutive windows")
	fs.IntVar(&c.threads, "threads", 0, "ONNX Runtime intra-op threads (default: calibrated with the batch size)")
	fs.StringVar(&c.ortLib, "ort-lib", "", "path to libonnxruntime.so (default: $"+inference.LibEnv+", else the one make setup installs)")
	fs.BoolVar(&c.jsonOut, "json", false, "print the manifest as JSON on stdout instead of a summary")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress output")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: inferstack run --model M --input F --output DIR [flags]

Runs the model over every sample of the input: each row of a table
(Parquet, CSV, JSON Lines), or each sample of a .npy or raw file, whose first
axis is the sample axis (fixed model dims must match the file, dynamic ones
come from it). A table's columns feed the model's inputs by name, or as
--feed says; the result is predictions.parquet with the --keep columns beside
one column per output. Outputs are written as they are computed;
manifest.json is written last, so its presence means the outputs are
complete.

Flags:
`)
		fs.PrintDefaults()
	}
	return c
}

// Run parses args, runs the job and prints the summary or the manifest.
func (c *runCommand) Run(ctx context.Context, args []string) error {
	if err := c.flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return &usageError{msg: err.Error()}
	}
	device, err := c.validate()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if c.quiet || c.jsonOut {
		level = slog.LevelError
	}
	logger := slog.New(slog.NewTextHandler(c.m.Stderr, &slog.HandlerOptions{Level: level}))

	if _, err := inference.InitRuntime(c.ortLib); err != nil {
		return err
	}
	model, err := inference.LoadModel(c.model)
	if err != nil {
		return err
	}
	defer model.Close()
	f, err := os.Open(c.input)
	if err != nil {
		return fmt.Errorf("open input: %w", badInput(err))
	}
	defer f.Close() //nolint:errcheck // read-only: nothing to lose on close
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat input: %w", badInput(err))
	}
	if !info.Mode().IsRegular() {
		return badInput(fmt.Errorf("input %s is not a regular file", c.input))
	}

	job := inference.Pass{
		Model: model, Input: f, InputSize: info.Size(), InputName: c.input,
		Windowing: inference.Windowing{Window: c.window, Hop: c.hop},
		Device:    device, BatchSize: c.batchSize, Threads: c.threads, ChunkSamples: c.chunkSamples,
		Logger: logger,
	}
	var sink inference.Sink = inference.NewDirSink(c.output)
	if inference.IsTable(c.input, c.inputFormat) {
		src, err := inference.OpenTable(f, info.Size(), c.input, model, inference.TableOptions{Format: c.inputFormat, Feed: c.feed, Keep: c.keepColumns})
		if err != nil {
			return err
		}
		defer src.Close()
		job.Source = src
		if c.outputFormat != "npy" {
			sink = inference.NewParquetDirSink(c.output, src.KeptFields())
		}
	}
	progress := newProgress(c.m.Stderr, c.quiet || c.jsonOut)
	job.Progress = progress.Update
	manifest, err := inference.Run(ctx, job, sink)
	progress.Done()
	if err != nil {
		return err
	}
	if c.jsonOut {
		data, err := manifest.JSON()
		if err != nil {
			return err
		}
		_, err = c.m.Stdout.Write(data)
		return err
	}
	c.printSummary(manifest)
	return nil
}

func (c *runCommand) validate() (inference.Device, error) {
	if c.flags.NArg() > 0 {
		return "", &usageError{msg: fmt.Sprintf("unexpected argument %q (flags go before it? see inferstack help run)", c.flags.Arg(0))}
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"--model", c.model}, {"--input", c.input}, {"--output", c.output}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return "", &usageError{msg: "missing " + strings.Join(missing, ", ") + " (see inferstack help run)"}
	}
	device, err := inference.ParseDevice(c.device)
	if err != nil {
		return "", &usageError{msg: err.Error()}
	}
	table := inference.IsTable(c.input, c.inputFormat)
	switch {
	case c.inputFormat != "" && !table:
		return "", &usageError{msg: fmt.Sprintf("--input-format %q: want parquet, csv or jsonl", c.inputFormat)}
	case c.outputFormat != "" && c.outputFormat != "npy" && c.outputFormat != "parquet":
		return "", &usageError{msg: fmt.Sprintf("--output-format %q: want npy or parquet", c.outputFormat)}
	case !table && (len(c.feed) > 0 || c.keep != "" || c.outputFormat == "parquet"):
		return "", &usageError{msg: fmt.Sprintf("--feed, --keep and --output-format parquet read and write table columns; %s is not a table (.parquet, .csv, .jsonl)", c.input)}
	case c.keep != "" && c.outputFormat == "npy":
		return "", &usageError{msg: "--keep copies columns into predictions.parquet: drop --output-format npy"}
	case table && (c.window > 0 || c.hop > 0):
		return "", &usageError{msg: "--window and --hop cut a signal; a table's rows are its samples"}
	}
	if c.keep != "" {
		if c.keepColumns, err = job.ParseColumns(c.keep); err != nil {
			return "", &usageError{msg: "--keep: " + err.Error()}
		}
	}
	switch {
	case c.batchSize < 0, c.chunkSamples < 0, c.threads < 0:
		return "", &usageError{msg: "--batch-size, --chunk-samples and --threads must not be negative"}
	case (c.window > 0) != (c.hop > 0) || c.window < 0 || c.hop < 0:
		return "", &usageError{msg: "--window and --hop go together and must be positive"}
	}
	return device, nil
}

func (c *runCommand) printSummary(m *inference.Manifest) {
	w := c.m.Stdout
	fmt.Fprintf(w, "ran %s over %s: %d samples in %.2fs (%.0f samples/s)\n",
		filepath.Base(m.Model.Path), m.Input.Name, m.Samples, m.Durations.Total, m.SamplesPerSecond)
	source := m.BatchChoice.Source
	if m.BatchChoice.Partial {
		source += ", search still going: later runs go on with it"
	}
	fmt.Fprintf(w, "batch size %d, %d threads (%s), %d chunks of %d samples, device %s",
		m.BatchSize, m.Threads, source, m.Chunks, m.ChunkSamples, m.Device.Used)
	if m.Device.Fallback != "" {
		fmt.Fprintf(w, " (fell back from CUDA: %s)", m.Device.Fallback)
	}
	fmt.Fprintln(w)
	for _, o := range m.Outputs {
		if o.File == inference.PredictionsFile {
			fmt.Fprintf(w, "  %s  column %s: %s %v\n", filepath.Join(c.output, o.File), o.Name, o.DType, o.Shape)
			continue
		}
		fmt.Fprintf(w, "  %s  %s %v\n", filepath.Join(c.output, o.File), o.DType, o.Shape)
	}
	fmt.Fprintf(w, "  %s\n", filepath.Join(c.output, inference.ManifestFile))
}

// badInput marks a file-system error on the input as bad input.
func badInput(err error) error { return &inputError{err} }

type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() []error {
	return []error{inference.ErrBadInput, e.err}
}
