package inference

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	ort "github.com/yalue/onnxruntime_go"
	"golang.org/x/sync/errgroup"

	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/inference/manifest"
	"github.com/inferstack/inferstack/inference/npy"
)

// Pass is one pass of a model over an input file: what Run runs (a
// worker's job runs one, as `inferstack run` does).
type Pass struct {
	Model *Model
	// Source is the input, opened; nil opens Input by its name's extension,
	// as a .npy file or raw float32.
	Source    Source
	Input     io.ReaderAt
	InputSize int64
	InputName string // a path or key; its extension picks the format
	Windowing Windowing
	Device    Device
	// BatchSize 0 lets the engine choose: the model's fixed batch dim, else a
	// search run on the job's first chunks (kept per model and hardware in
	// Calibrations).
	BatchSize int64
	// Threads 0 lets calibration choose (DefaultThreads with a fixed batch size).
	Threads      int
	ChunkSamples int64 // 0: about 8 MiB of input per chunk
	// StartChunk resumes a run: chunks before it are already in the sink
	// (which must have been given the same batch size, chunk size and threads).
	StartChunk int64
	// InputETag identifies the input's version in the manifest (S3's ETag).
	InputETag string
	// Range, where set, runs only these rows of a .npy or raw input: a
	// shard of it (a table's shard is its source's, TableOptions.Range).
	Range *Range
	// Progress, if set, is called after each chunk is written.
	Progress func(done, total int64)
	Logger   *slog.Logger
	// Calibrations keeps the searches for the batch size; nil keeps them in
	// a file under CacheDir.
	Calibrations CalibrationStore

	// calibrationShare, where set, replaces calibration.DefaultShare: tests
	// grant a search all the budget it needs, or none.
	calibrationShare *float64
}

// OutputSpec is one model output as the sink stores it: one row per sample.
type OutputSpec struct {
	Name        string  `json:"name"`
	DType       string  `json:"dtype"`
	SampleShape []int64 `json:"sample_shape"`

	dt npy.DType
}

// SampleBytes is the size of one sample's row of this output.
func (o OutputSpec) SampleBytes() int64 { return product(o.SampleShape) * int64(o.dt.Size) }

// Sink stores the outputs of a run. WriteChunk is called for consecutive
// chunks in order; Finish makes the result complete (its manifest is the last
// thing written); Abort removes whatever was written.
type Sink interface {
	Start(plan Plan, outputs []OutputSpec) error
	WriteChunk(start int64, outputs [][]byte) error
	Finish(m *Manifest) error
	Abort()
}

// RowsSink is a sink that stores a table job's kept columns beside the
// outputs: the pipeline calls WriteRows instead of WriteChunk, with the
// chunk's kept columns (nil when there are none), which it releases after.
type RowsSink interface {
	Sink
	WriteRows(start int64, outputs [][]byte, kept arrow.RecordBatch) error
}

// keptSource is a source that carries columns through to the result: Kept
// returns those of the rows its last Read read.
type keptSource interface {
	Kept() arrow.RecordBatch
}

// pipelineSlots is how many chunks are in flight: one being read, one in
// inference, one being written.
const pipelineSlots = 3

// Run streams the input through the model into sink and returns the manifest
// it finished the sink with. Memory is bounded by three chunks whatever the
// file size. On error the sink is aborted and nothing is presented as complete.
func Run(ctx context.Context, job Pass, sink Sink) (*Manifest, error) {
	started := time.Now()
	job = withDefaults(job)
	src, err := openSource(job)
	if err != nil {
		return nil, err
	}
	var d Durations
	cached := cachedCalibration(ctx, job, src)
	p, err := probe(job, src, cached, &d)
	if err != nil {
		return nil, err
	}
	choice, sess, tune := chooseBatch(job, src, p, cached)
	var plan Plan
	if tune != nil {
		plan = tune.plan(src, job.ChunkSamples)
	} else {
		plan = NewPlan(src.Samples(), choice.BatchSize, job.ChunkSamples, sampleBytes(src.Feeds()))
	}
	stats, err := stream(ctx, job, src, plan, chunkSetting{batch: plan.BatchSize, sess: sess}, p.outputs, sink, tune)
	if err != nil {
		return nil, err
	}
	if tune != nil {
		if choice, sess, err = tune.finish(ctx, &d); err != nil {
			sink.Abort()
			return nil, err
		}
		plan.BatchSize = choice.BatchSize
	}
	job.Logger.Info("batch size chosen", "batch_size", choice.BatchSize, "threads", sess.Threads, "source", choice.Source, "partial", choice.Partial)
	finished := time.Now()
	d.Total = finished.Sub(started).Seconds()
	d.Read, d.Infer, d.Write = stats.read.Seconds(), stats.infer.Seconds(), stats.write.Seconds()
	m := newManifest(job, src, plan, sess, choice, d, started, finished)
	if err := sink.Finish(m); err != nil {
		sink.Abort()
		return nil, err
	}
	return m, nil
}

// withDefaults fills in the job's optional fields.
func withDefaults(job Pass) Pass {
	if job.Logger == nil {
		job.Logger = slog.New(slog.DiscardHandler)
	}
	if job.Device == "" {
		job.Device = DeviceAuto
	}
	return job
}

// openSource is the job's input: its Source, else a layout over Input.
func openSource(job Pass) (Source, error) {
	if job.Source != nil {
		return job.Source, nil
	}
	if IsTable(job.InputName, "") {
		// Read as raw float32 it would give numbers, and wrong ones.
		return nil, withKind(ErrBadInput, "input %s is a table: it needs a table source (OpenTable), which this runtime does not open yet", job.InputName)
	}
	layout, err := NewLayout(job.Input, job.InputSize, job.InputName, job.Model.Inputs, job.Windowing)
	switch {
	case err != nil:
		return nil, err
	case job.Range == nil:
		return layout, nil
	}
	return Slice(layout, *job.Range)
}

// cachedCalibration is the job's kept search, nil where the job does not
// calibrate or none is kept (or it cannot be read: that only costs a search,
// so it is a warning). A kept state without a best setting is no search.
func cachedCalibration(ctx context.Context, job Pass, src Source) *calibration.State {
	if !needsCalibration(job, src) {
		return nil
	}
	state, err := calibrations(job).Load(ctx, calibrationKey(job, src))
	if err != nil {
		job.Logger.Warn("cannot read the calibration kept: searching afresh", "err", err)
		return nil
	}
	if state == nil || state.Best.Threads <= 0 || state.Best.BatchSize <= 0 {
		return nil
	}
	return state
}

// probed is what a run learns from its first samples: the outputs' shapes,
// and for the search, the session's first rate.
type probed struct {
	sess     *Session
	outputs  []OutputSpec
	warm     int64         // samples of the last probe run: that batch is warm
	warmTime time.Duration // how long they ran
}

// probe creates the run's session (at a cached search's thread count, which
// is then the one it keeps) and runs the first sample, or the model's fixed
// batch, zero-padded, to learn the outputs; d gets the fixed costs.
func probe(job Pass, src Source, cached *calibration.State, d *Durations) (probed, error) {
	feeds := src.Feeds()
	threads := job.Threads
	if cached != nil {
		threads = cached.Best.Threads
	}
	n := max(1, job.Model.BatchDim())
	head := feedBuffers(feeds, n)
	if err := src.Read(0, min(n, src.Samples()), head); err != nil {
		return probed{}, err
	}
	d.RuntimeLoad, d.ModelLoad = job.Model.takeLoadTimes()
	mark := time.Now()
	sess, err := job.Model.Session(job.Device, threads)
	if err != nil {
		return probed{}, err
	}
	d.Sessions = time.Since(mark).Seconds()
	if sess.Fallback != "" {
		job.Logger.Warn("cuda unavailable, running on cpu", "reason", sess.Fallback)
	}
	mark = time.Now()
	outputs, err := probeOutputs(sess, job.Model, feeds, head, n)
	if err != nil {
		return probed{}, err
	}
	p := probed{sess: sess, outputs: outputs, warm: n, warmTime: time.Since(mark)}
	d.Probe = p.warmTime.Seconds()
	if needsCalibration(job, src) && cached == nil && p.warmTime < calibration.MinStartRun {
		// A new search starts from a batch chosen by how long MidBatch
		// samples run: a model this light is timed at MidBatch, cheaply,
		// which also warms that setting up.
		n := min(calibration.MidBatch, src.Samples())
		batch := feedBuffers(feeds, n)
		if err := src.Read(0, n, batch); err != nil {
			return probed{}, err
		}
		mark = time.Now()
		if _, err := probeOutputs(sess, job.Model, feeds, batch, n); err != nil {
			return probed{}, err
		}
		p.warm, p.warmTime = n, time.Since(mark)
		d.Probe += p.warmTime.Seconds()
	}
	return p, nil
}

// chooseBatch picks the batch size and thread count: the model's, the
// caller's or a completed search's, with the session to run with; or, where
// the search goes on, the tuner that runs it beside the pipeline, starting
// from the search's best setting so far.
func chooseBatch(job Pass, src Source, p probed, cached *calibration.State) (BatchChoice, *Session, *tuner) {
	if !needsCalibration(job, src) {
		return fixedChoice(job, src, p.sess.Threads), p.sess, nil
	}
	if choice, ok := cachedChoice(cached, p.sess.Device); ok {
		return choice, p.sess, nil
	}
	t := newTuner(job, src, p.sess, cached, p.warm, p.warmTime)
	best := t.state.Best
	return BatchChoice{BatchSize: best.BatchSize, Threads: best.Threads}, p.sess, t
}

// stream runs the plan through the pipeline into sink at setting, or at the
// settings tune's search asks for, aborting the sink on error.
func stream(ctx context.Context, job Pass, src Source, plan Plan, setting chunkSetting, outputs []OutputSpec, sink Sink, tune *tuner) (stageTimes, error) {
	if job.StartChunk < 0 || job.StartChunk > plan.Chunks() {
		return stageTimes{}, fmt.Errorf("resume from chunk %d: the plan has %d chunks", job.StartChunk, plan.Chunks())
	}
	if err := sink.Start(plan, outputs); err != nil {
		return stageTimes{}, err
	}
	p := &pipeline{job: job, src: src, feeds: src.Feeds(), plan: plan, setting: setting, tune: tune, outputs: outputs, fixedBatch: job.Model.BatchDim() > 0}
	stats, err := p.run(ctx, sink)
	if err != nil {
		sink.Abort()
	}
	return stats, err
}

// newManifest is the record of a run that finished.
func newManifest(job Pass, src Source, plan Plan, sess *Session, choice BatchChoice, d Durations, started, finished time.Time) *Manifest {
	return &Manifest{
		Inferstack:       Version(),
		ORT:              runtimeVersion(),
		Input:            inputInfo(job, src),
		Model:            job.Model.ModelInfo,
		Samples:          src.Samples(),
		Chunks:           plan.Chunks(),
		ResumedAt:        job.StartChunk,
		ChunkSamples:     plan.ChunkSamples,
		BatchSize:        plan.BatchSize,
		Threads:          sess.Threads,
		BatchChoice:      choice,
		Device:           DeviceInfo{Requested: job.Device, Used: sess.Device, Fallback: sess.Fallback},
		Durations:        d,
		SamplesPerSecond: float64(src.Samples()) / finished.Sub(started).Seconds(),
		PeakRSSBytes:     peakRSS(),
		StartedAt:        started.UTC(),
		FinishedAt:       finished.UTC(),
	}
}

// inputInfo is how the manifest records the input.
func inputInfo(job Pass, src Source) InputInfo {
	in := InputInfo{Name: job.InputName, Bytes: job.InputSize, ETag: job.InputETag, Layout: src.Describe()}
	if t, ok := src.(interface{ Table() *manifest.Table }); ok {
		in.Table = t.Table()
	}
	return in
}

// probeOutputs runs the first n samples with ORT-allocated outputs to learn
// each output's per-sample shape (dynamic output dims depend on the input's dims).
func probeOutputs(sess *Session, model *Model, feeds []Feed, head [][]byte, n int64) ([]OutputSpec, error) {
	in, err := newInputTensors(feeds, n, head)
	if err != nil {
		return nil, err
	}
	defer destroyAll(in)
	values := make([]ort.Value, len(model.Outputs))
	defer func() {
		for _, v := range values {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	if err := sess.Run(in, values); err != nil {
		return nil, withKind(ErrBadInput, "run model on the first samples: %s", oneLine(err))
	}
	specs := make([]OutputSpec, len(values))
	for i, v := range values {
		shape := []int64(v.GetShape())
		if len(shape) == 0 || shape[0] != n {
			return nil, withKind(ErrBadModel, "output %q has shape %v for a batch of %d; inferstack needs outputs whose first axis is the batch",
				model.Outputs[i].Name, shape, n)
		}
		dt, _ := npy.DTypeOf(model.Outputs[i].DType)
		specs[i] = OutputSpec{Name: model.Outputs[i].Name, DType: model.Outputs[i].DType, SampleShape: shape[1:], dt: dt}
	}
	return specs, nil
}

// newInputTensors are a batch's input tensors over bufs, one per feed.
func newInputTensors(feeds []Feed, batch int64, bufs [][]byte) ([]ort.Value, error) {
	values := make([]ort.Value, len(feeds))
	for i, f := range feeds {
		shape := append(ort.Shape{batch}, f.SampleShape...)
		t, err := ort.NewCustomDataTensor(shape, bufs[i][:batch*f.SampleBytes()], ortType(f.DType))
		if err != nil {
			destroyAll(values)
			return nil, fmt.Errorf("input tensor %q %v: %w", f.Name, shape, err)
		}
		values[i] = t
	}
	return values, nil
}

func newOutputTensors(outputs []OutputSpec, batch int64, bufs [][]byte) ([]ort.Value, error) {
	values := make([]ort.Value, len(outputs))
	for i, o := range outputs {
		shape := append(ort.Shape{batch}, o.SampleShape...)
		t, err := ort.NewCustomDataTensor(shape, bufs[i][:batch*o.SampleBytes()], ortType(o.DType))
		if err != nil {
			destroyAll(values)
			return nil, fmt.Errorf("output tensor %q %v: %w", o.Name, shape, err)
		}
		values[i] = t
	}
	return values, nil
}

func destroyAll(values []ort.Value) {
	for _, v := range values {
		if v != nil {
			v.Destroy()
		}
	}
}

// slot is the memory of one chunk in flight, with tensor pairs over slices
// of it for each full batch, per batch size, created on first use: no
// allocation per batch.
type slot struct {
	start, end int64
	kept       arrow.RecordBatch // the chunk's kept columns, for a RowsSink
	in         [][]byte          // one buffer per feed
	out        [][]byte
	batches    map[int64]*batchTensors
}

// batchTensors are a slot's tensors at one batch size: one input and one
// output set per full batch of the chunk.
type batchTensors struct {
	in, out [][]ort.Value
}

func (s *slot) destroy() {
	for _, t := range s.batches {
		for i := range t.in {
			destroyAll(t.in[i])
			destroyAll(t.out[i])
		}
	}
}

type pipeline struct {
	job        Pass
	src        Source
	feeds      []Feed
	plan       Plan
	setting    chunkSetting // the chunks' setting, once any search has ended
	tune       *tuner       // the search the first chunks run, nil where none
	outputs    []OutputSpec
	fixedBatch bool // the model's batch dim is fixed: pad the last batch
}

type stageTimes struct{ read, infer, write time.Duration }

func (p *pipeline) newSlot() *slot {
	chunk := p.plan.ChunkSamples
	s := &slot{in: feedBuffers(p.feeds, chunk), out: make([][]byte, len(p.outputs)), batches: map[int64]*batchTensors{}}
	for i, o := range p.outputs {
		s.out[i] = make([]byte, chunk*o.SampleBytes())
	}
	return s
}

// tensors are the slot's tensors for batch size b, created on first use.
func (p *pipeline) tensors(s *slot, b int64) (*batchTensors, error) {
	if t, ok := s.batches[b]; ok {
		return t, nil
	}
	if p.plan.ChunkSamples%b != 0 {
		return nil, fmt.Errorf("batch size %d does not divide the plan's chunks of %d samples", b, p.plan.ChunkSamples)
	}
	t := &batchTensors{}
	s.batches[b] = t
	for first := int64(0); first+b <= p.plan.ChunkSamples; first += b {
		in, err := newInputTensors(p.feeds, b, feedViews(p.feeds, s.in, first))
		if err != nil {
			return nil, err
		}
		out, err := newOutputTensors(p.outputs, b, p.outputViews(s, first))
		if err != nil {
			destroyAll(in)
			return nil, err
		}
		t.in, t.out = append(t.in, in), append(t.out, out)
	}
	return t, nil
}

// outputViews are the slot's output buffers from sample first on.
func (p *pipeline) outputViews(s *slot, first int64) [][]byte {
	views := make([][]byte, len(p.outputs))
	for i, o := range p.outputs {
		views[i] = s.out[i][first*o.SampleBytes():]
	}
	return views
}

// nextSetting is the setting of the infer stage's next chunk, and whether
// the search measures it: the search's while it runs, then its best.
func (p *pipeline) nextSetting(ctx context.Context) (chunkSetting, bool, error) {
	if p.tune == nil {
		return p.setting, false, nil
	}
	select {
	case set := <-p.tune.bench.next:
		return set, true, nil
	case <-p.tune.done:
		set, err := p.tune.best()
		p.setting, p.tune = set, nil
		return set, false, err
	case <-ctx.Done():
		return chunkSetting{}, false, ctx.Err()
	}
}

// run reads, infers and writes in three goroutines so that the three overlap;
// chunks pass through them in order.
func (p *pipeline) run(ctx context.Context, sink Sink) (stageTimes, error) {
	var times stageTimes
	slots := make([]*slot, 0, pipelineSlots)
	defer func() {
		for _, s := range slots {
			s.destroy()
		}
	}()
	free := make(chan *slot, pipelineSlots)
	for range min(int64(pipelineSlots), p.plan.Chunks()-p.job.StartChunk) {
		s := p.newSlot()
		slots = append(slots, s)
		free <- s
	}
	toInfer := make(chan *slot, pipelineSlots)
	toWrite := make(chan *slot, pipelineSlots)
	g, ctx := errgroup.WithContext(ctx)
	if p.tune != nil {
		g.Go(p.tune.run)
	}

	g.Go(func() error {
		defer close(toInfer)
		for c := p.job.StartChunk; c < p.plan.Chunks(); c++ {
			var s *slot
			select {
			case s = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			t := time.Now()
			s.start, s.end = p.plan.Chunk(c)
			if err := p.src.Read(s.start, s.end, s.in); err != nil {
				return err
			}
			if k, ok := p.src.(keptSource); ok {
				s.kept = k.Kept()
			}
			times.read += time.Since(t)
			toInfer <- s
		}
		return nil
	})

	var bench *pipelineBench
	if p.tune != nil {
		bench = p.tune.bench
	}
	g.Go(func() error {
		// ONNX Runtime keeps state per thread for the thread that calls
		// Run, which also takes a share of the intra-op work: a goroutine
		// that moved between OS threads as it waits on the stages beside it
		// would have ORT start cold on each new one.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(toWrite)
		if bench != nil {
			defer close(bench.stopped)
		}
		for s := range toInfer {
			set, measured, err := p.nextSetting(ctx)
			if err != nil {
				return err
			}
			t := time.Now()
			if err := p.infer(ctx, s, set); err != nil {
				return err
			}
			took := time.Since(t)
			times.infer += took
			if measured {
				bench.measured <- calibration.Measurement{Samples: s.end - s.start, Took: took}
			}
			toWrite <- s
		}
		return nil
	})

	g.Go(func() error {
		for s := range toWrite {
			t := time.Now()
			n := s.end - s.start
			rows := make([][]byte, len(p.outputs))
			for i, o := range p.outputs {
				rows[i] = s.out[i][:n*o.SampleBytes()]
			}
			var err error
			if rs, ok := sink.(RowsSink); ok {
				err = rs.WriteRows(s.start, rows, s.kept)
			} else {
				err = sink.WriteChunk(s.start, rows)
			}
			if s.kept != nil {
				s.kept.Release()
				s.kept = nil
			}
			if err != nil {
				return err
			}
			times.write += time.Since(t)
			if p.job.Progress != nil {
				p.job.Progress(s.end, p.plan.Samples)
			}
			free <- s
		}
		return nil
	})
	err := g.Wait()
	return times, err
}

// infer runs every batch of the slot's chunk. Only the file's last batch can
// be short: it runs at its own size, or zero-padded when the model's batch dim
// is fixed.
func (p *pipeline) infer(ctx context.Context, s *slot, set chunkSetting) error {
	b := set.batch
	t, err := p.tensors(s, b)
	if err != nil {
		return err
	}
	for k, first := 0, s.start; first < s.end; k, first = k+1, first+b {
		if err := ctx.Err(); err != nil {
			return err
		}
		in, out := t.in[k], t.out[k]
		if n := s.end - first; n < b {
			if p.fixedBatch {
				for i, f := range p.feeds {
					off, size := (first-s.start)*f.SampleBytes(), f.SampleBytes()
					clear(s.in[i][off+n*size : off+b*size])
				}
			} else {
				tail, err := newInputTensors(p.feeds, n, feedViews(p.feeds, s.in, first-s.start))
				if err != nil {
					return err
				}
				defer destroyAll(tail)
				tailOut, err := newOutputTensors(p.outputs, n, p.outputViews(s, first-s.start))
				if err != nil {
					return err
				}
				defer destroyAll(tailOut)
				in, out = tail, tailOut
			}
		}
		if err := set.sess.Run(in, out); err != nil {
			return fmt.Errorf("run batch at sample %d: %s", first, oneLine(err))
		}
	}
	return nil
}
