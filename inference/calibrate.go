package inference

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferstack/inferstack/inference/manifest"
)

// BatchChoice records how the batch size and thread count were chosen.
type BatchChoice = manifest.BatchChoice

// Trial is one measured setting of a calibration.
type Trial = manifest.Trial

// The search's steps, in order. It starts at all cores (the default,
// measured fastest in the pipeline for every model of the benchmarks) and a
// mid batch, and first climbs the batch size, which matters most there
// (1.5x between batch 16 and 64 for an MLP, 10-15% for the convolutional
// models): down while a step loses no more than downLoss, then up from
// where down ended while a step gains upGain (so a step down that won on a
// slow incumbent is checked from above). It then compares every thread
// count at the batch it found, where the choice applies (an MLP's second
// thread loses 40% at 16 and gains 13% at 64); where another count wins,
// the batch climbs once more at that count. Until a step is taken, runs use
// the default.
const (
	stepDown    = "down"
	stepUp      = "up"
	stepThreads = "threads"
	stepDone    = ""
)

// calibration is one search's state, cached per model, input shape and
// machine (calibrationKey). A run spends at most its share of budget on it,
// banks what it does not spend and saves where it stopped, so a series of
// small jobs completes the search that no single one of them could afford.
type calibration struct {
	Device Device  `json:"device"` // where the trials ran
	Best   Trial   `json:"best"`
	Trials []Trial `json:"trials"`
	Step   string  `json:"step"`
	// Start is the batch the search started from (startBatch).
	Start int64 `json:"start"`
	// Compared says the threads have been compared.
	Compared bool `json:"compared,omitempty"`
	// Misses counts the steps up in a row that did not gain, Tried is the
	// last of them: a climb up looks one step past a miss before it ends
	// (an MLP gains 3% from 16 to 32 but 14% from 16 to 64).
	Misses int   `json:"misses,omitempty"`
	Tried  int64 `json:"tried,omitempty"`
	// Bank is the seconds earlier runs were granted but did not spend.
	Bank float64 `json:"bank_seconds,omitempty"`
}

// needsCalibration says whether the engine, not the model or the caller, sets
// the batch size: a small input runs as one batch, calibrating would cost
// more than the whole job.
func needsCalibration(job Job, src Source) bool {
	return job.Model.BatchDim() <= 0 && job.BatchSize == 0 && src.Samples() > smallInput
}

const smallInput = 32

// fixedChoice is the batch choice of a run that does not calibrate.
func fixedChoice(job Job, src Source, threads int) BatchChoice {
	switch {
	case job.Model.BatchDim() > 0:
		return BatchChoice{BatchSize: job.Model.BatchDim(), Threads: threads, Source: "model"}
	case job.BatchSize > 0:
		return BatchChoice{BatchSize: job.BatchSize, Threads: threads, Source: "flag"}
	}
	return BatchChoice{BatchSize: src.Samples(), Threads: threads, Source: "small-input"}
}

// threadCandidates are the intra-op thread counts calibration compares on a
// machine with cpus cores: one, half, all but one (which leaves a core to the
// reader and writer) and all.
func threadCandidates(cpus int) []int {
	c := []int{1, max(1, cpus/2), max(1, cpus-1), max(1, cpus)}
	slices.Sort(c)
	return slices.Compact(c)
}

// Calibration may spend calibrationShare of the job's estimated time (from
// the best rate measured so far) plus what earlier runs banked, so that it
// pays for itself on small jobs as well as on large ones. No step is exempt,
// not even the thread comparison: a first run that compared threads anyway
// paid a second session and the slower thread count's runs, 7% of a 1.5 s
// job, where the default it would have kept (all cores) was the best. Most
// steps find nothing (5 of the classifier's 6), so a step pays off over the
// runs after it: at a 3% share a first run of the classifier spent 46 ms on
// a step that lost, and measured 0.92 of the best fixed setting.
var calibrationShare = 0.02 // a variable so a test can grant a full budget

// maxGrant caps what one run may spend on the search and what small jobs
// save up, so no job stalls for long on it.
const maxGrant = 10 * time.Second

// midBatch is where the search starts: large enough that the per-call
// overhead does not dominate, small enough to stay cheap. A
// model so light that a batch of 16 runs in under minStartRun starts at a
// batch that takes that long (startBatch): an MLP of the benchmarks, 40%
// slower on 2 threads than on 1 at batch 16, is 13% faster on 2 at 64, and
// its best batch is 64 or more.
const (
	midBatch    = 16
	minStartRun = time.Millisecond
)

// startBatch is the batch the search starts from, from the probe's time for
// its first n samples (a cold run: it errs towards smaller batches), at most
// limit.
func startBatch(n int64, probe time.Duration, limit int64) int64 {
	b := int64(midBatch)
	for b < limit && time.Duration(int64(probe)*b/max(n, 1)) < minStartRun {
		b *= 2
	}
	return min(b, limit)
}

// The largest batch calibration tries, which bounds how much of the input it
// reads: at most maxCalibrationSamples, and on a CPU no more than a default
// chunk (targetChunkBytes) of input, since a batch that outgrows the chunk
// grows every chunk in flight with it and on a CPU larger batches stop
// paying well before that: the MLP of the benchmarks runs 1.35x faster at
// 1,024 than at 64 in the pipeline, and falls back at 2,048; the
// classifier's 110 KB crops, 1.5-2x faster at 32 than at 128 alone, stop at
// 64. A GPU needs larger batches to fill its cores (224x224 images reach
// 128 within gpuCalibrationBytes; not measured here, no GPU).
const (
	maxCalibrationSamples = 4096
	gpuCalibrationBytes   = 128 << 20
)

// maxBatch is the largest batch calibration tries on src and device: a
// power of two.
func maxBatch(src Source, device Device) int64 {
	budget := int64(targetChunkBytes)
	if device == DeviceGPU {
		budget = gpuCalibrationBytes
	}
	limit := min(src.Samples(), maxCalibrationSamples, max(1, budget/max(1, sampleBytes(src.Feeds()))))
	b := int64(1)
	for b*2 <= limit {
		b *= 2
	}
	return b
}

// A step to a larger batch must gain upGain to be taken; a step to a
// smaller one is taken unless it loses more than downLoss. Calibration times
// the model alone, and in the pipeline, where the reader and writer share
// the cores and caches, larger batches give back what they gain alone: a
// ConvNet of the benchmarks runs within 5% from batch 16 to 256 alone, but
// 7-8% faster at 4 than at 64 in the pipeline. So within the noise the
// smaller batch wins, and it holds less memory too; for the same reason the
// climb tries down first.
const (
	upGain   = 1.05
	downLoss = 0.99
)

// calibrationRounds is how many timed measurements each setting gets, after
// a warm-up; the settings compared alternate round by round, and each is
// scored by its fastest, in this comparison or an earlier one: a
// neighbour's burst only ever slows a run down (a classifier's incumbent
// once timed 40% slow beside a step, which then won by noise alone).
const calibrationRounds = 2

// calibrator times settings on the input's first samples.
type calibrator struct {
	ctx     context.Context
	job     Job
	src     Source
	outputs []OutputSpec
	state   *calibration

	head       [][]byte // the first headN samples of each feed, read on demand
	headN      int64
	candidates []int         // the thread counts compared
	sessions   []*Session    // one per candidate, created when first needed
	sessTime   time.Duration // creating sessions, reported apart from the search
	setups     map[int64]*batchSetup
	warm       map[setting]bool // settings that have run once: no warm-up run needed
}

// cachedChoice is the choice of a completed search that ran on device.
func cachedChoice(state *calibration, device Device) (BatchChoice, bool) {
	if state == nil || state.Step != stepDone || state.Device != device {
		return BatchChoice{}, false
	}
	return BatchChoice{BatchSize: state.Best.BatchSize, Threads: state.Best.Threads, Source: "cached", Trials: state.Trials}, true
}

// calibrate runs the search from the cached state (nil: a new search) with
// sess, the session the run already has, among its candidates; its probe
// ran the first warm samples in probe. It returns the choice, the session
// for it and the time spent creating sessions.
func calibrate(ctx context.Context, job Job, src Source, outputs []OutputSpec, sess *Session, state *calibration, warm int64, probe time.Duration) (BatchChoice, *Session, time.Duration, error) {
	c := &calibrator{ctx: ctx, job: job, src: src, outputs: outputs, state: state,
		warm: map[setting]bool{{sess, warm}: true}}
	defer c.close()
	c.candidates = []int{sess.Threads}
	if job.Threads == 0 {
		c.candidates = threadCandidates(usableCPUs())
	}
	c.sessions = make([]*Session, len(c.candidates))
	if i := slices.Index(c.candidates, sess.Threads); i >= 0 {
		c.sessions[i] = sess
	}
	changed := false
	if c.state == nil || c.state.Device != sess.Device || c.state.Start == 0 {
		// A new search starts from the default: the start batch at the
		// run's session, at the probe's rate (a cold run: it errs slow,
		// which errs towards a larger grant, and towards larger step costs).
		start := startBatch(warm, probe, maxBatch(src, sess.Device))
		rate := float64(warm) / max(probe, time.Microsecond).Seconds()
		c.state = &calibration{Device: sess.Device, Step: stepDown, Start: start, Best: Trial{BatchSize: start, Threads: sess.Threads, SamplesPerSec: rate}}
		changed = true
	}
	measured, stepped, err := c.search()
	if err != nil {
		return BatchChoice{}, nil, c.sessTime, err
	}
	best := c.state.Best
	choice := BatchChoice{BatchSize: best.BatchSize, Threads: best.Threads, Source: "cached", Trials: c.state.Trials, Partial: c.state.Step != stepDone}
	switch {
	case measured:
		choice.Source = "calibrated"
	case len(c.state.Trials) == 0:
		choice.Source = "default"
	}
	if changed || stepped {
		saveCalibration(calibrationKey(job, src), c.state, job)
	}
	chosen, err := c.session(best.Threads)
	return choice, chosen, c.sessTime, err
}

// session returns the candidate session with threads, creating it on first use.
func (c *calibrator) session(threads int) (*Session, error) {
	i := slices.Index(c.candidates, threads)
	if i < 0 {
		return nil, fmt.Errorf("calibration: %d threads is not a candidate", threads)
	}
	if c.sessions[i] == nil {
		start := time.Now()
		s, err := c.job.Model.Session(c.job.Device, threads)
		c.sessTime += time.Since(start)
		if err != nil {
			return nil, err
		}
		c.sessions[i] = s
	}
	return c.sessions[i], nil
}

// search takes steps while the budget allows. It reports whether it
// measured anything and whether the state changed (and needs saving).
func (c *calibrator) search() (measured, changed bool, err error) {
	s := c.state
	// The grant follows the estimate, which the first measurement corrects
	// (the probe's cold rate errs slow).
	grant := func() float64 {
		return min(calibrationShare*c.estimate().Seconds()+s.Bank, maxGrant.Seconds())
	}
	var spent time.Duration
	for s.Step != stepDone {
		next, cost := c.nextStep()
		if next == 0 {
			c.advance()
			changed = true
			continue
		}
		if (spent + cost).Seconds() > grant() {
			break
		}
		start := time.Now()
		if err := c.takeStep(next); err != nil {
			return measured, changed, err
		}
		spent += time.Since(start)
		measured, changed = true, true
	}
	bank := 0.0
	if s.Step != stepDone {
		bank = max(0, min(grant()-spent.Seconds(), maxGrant.Seconds()))
	}
	if bank != s.Bank {
		s.Bank, changed = bank, true
	}
	return measured, changed, nil
}

// estimate is the job's time at the best rate measured so far.
func (c *calibrator) estimate() time.Duration {
	return time.Duration(float64(c.src.Samples()) / max(c.state.Best.SamplesPerSec, 1) * float64(time.Second))
}

// nextStep is the batch size the current step tries (0: none left in its
// direction) and what the step costs at the best rate.
func (c *calibrator) nextStep() (int64, time.Duration) {
	s := c.state
	b := s.Best.BatchSize
	// A setting costs a warm-up run (where it is new) and a measurement of
	// at least minTimed per round; a step is charged what it costs when it
	// moves the incumbent, calibrationRounds and the round that confirms it,
	// so that a run spends no more than its grant.
	run := func(batch int64) time.Duration {
		return time.Duration(float64(batch) / max(s.Best.SamplesPerSec, 1) * float64(time.Second))
	}
	measured := func(batch int64) time.Duration { return (calibrationRounds + 1) * max(run(batch), minTimed) }
	switch s.Step {
	case stepUp, stepDown:
		from := b
		if s.Misses > 0 {
			from = s.Tried
		}
		next := from * 2
		if s.Step == stepDown {
			next = from / 2
		}
		if next < 1 || next > maxBatch(c.src, s.Device) {
			return 0, 0
		}
		return next, run(next) + measured(next) + measured(b)
	case stepThreads:
		if len(c.candidates) == 1 {
			return 0, 0
		}
		var cost time.Duration
		for _, t := range c.candidates {
			cost += c.job.Model.sessionCost(c.job.Device, t) + run(b) + measured(b)
		}
		return b, cost
	}
	return 0, 0
}

// takeStep measures the step to batch next and moves the state on.
func (c *calibrator) takeStep(next int64) error {
	s := c.state
	if s.Step == stepThreads {
		threads := s.Best.Threads
		if err := c.compareThreads(next); err != nil {
			return err
		}
		s.Compared = true
		s.Step = stepDone
		if s.Best.Threads != threads {
			// Climb once more, at the thread count that won.
			s.Step = stepDown
		}
		return nil
	}
	sess, err := c.session(s.Best.Threads)
	if err != nil {
		return err
	}
	// The incumbent is timed again beside the step, under the same load.
	need := upGain
	if next < s.Best.BatchSize {
		need = downLoss
	}
	rates, err := c.compare([]setting{{sess, s.Best.BatchSize}, {sess, next}}, func(r []float64) bool { return r[1] < need*r[0] })
	if err != nil {
		return err
	}
	c.record(Trial{BatchSize: s.Best.BatchSize, Threads: sess.Threads, SamplesPerSec: rates[0]})
	c.record(Trial{BatchSize: next, Threads: sess.Threads, SamplesPerSec: rates[1]})
	if rates[1] >= need*rates[0] {
		s.Best = Trial{BatchSize: next, Threads: sess.Threads, SamplesPerSec: rates[1]}
		s.Misses, s.Tried = 0, 0
		return nil
	}
	s.Best.SamplesPerSec = rates[0]
	s.Misses, s.Tried = s.Misses+1, next
	if s.Step == stepDown || s.Misses > maxMisses {
		c.advance()
	}
	return nil
}

// maxMisses is how many steps past the incumbent a climb up looks.
const maxMisses = 1

// advance moves the state past a climb's direction that ended (or found no
// batch size left to try): down is followed by up, since the MLP of the
// benchmarks twice left 128 for 64 on an incumbent that timed 0.6-0.7 of its
// rate, three rounds notwithstanding, where it runs 1.4x faster at 1,024;
// a climb is followed by the thread comparison unless that is done.
func (c *calibrator) advance() {
	s := c.state
	s.Misses, s.Tried = 0, 0
	switch {
	case s.Step == stepDown:
		s.Step = stepUp
	case s.Compared || len(c.candidates) == 1:
		s.Step = stepDone
	default:
		s.Step = stepThreads
	}
}

// compareThreads times every thread candidate at batch b and makes the
// fastest the best.
func (c *calibrator) compareThreads(b int64) error {
	s := c.state
	// The incumbent's thread count first.
	others := slices.DeleteFunc(slices.Clone(c.candidates), func(t int) bool { return t == s.Best.Threads })
	threads := append([]int{s.Best.Threads}, others...)
	settings := make([]setting, len(threads))
	for i, t := range threads {
		sess, err := c.session(t)
		if err != nil {
			return err
		}
		settings[i] = setting{sess, b}
	}
	rates, err := c.compare(settings, func(r []float64) bool { return slices.Max(r) == r[0] })
	if err != nil {
		return err
	}
	best := Trial{}
	for i, st := range settings {
		t := Trial{BatchSize: b, Threads: st.sess.Threads, SamplesPerSec: rates[i]}
		c.record(t)
		if t.SamplesPerSec > best.SamplesPerSec {
			best = t
		}
	}
	s.Best = best
	return nil
}

// batchSetup holds pre-created tensors for one batch size, shared by every
// session: tensors are not tied to a session.
type batchSetup struct {
	in  []ort.Value
	out []ort.Value
}

func (c *calibrator) setup(b int64) (*batchSetup, error) {
	if s, ok := c.setups[b]; ok {
		return s, nil
	}
	if b > c.headN {
		// Only what the batch sizes tried need is read: 16 samples for the
		// thread comparison, not the largest batch the search might reach.
		head := feedBuffers(c.src.Feeds(), b)
		if err := c.src.Read(0, b, head); err != nil {
			return nil, err
		}
		c.head, c.headN = head, b
	}
	in, err := newInputTensors(c.src.Feeds(), b, c.head)
	if err != nil {
		return nil, err
	}
	bufs := make([][]byte, len(c.outputs))
	for i, o := range c.outputs {
		bufs[i] = make([]byte, b*o.SampleBytes())
	}
	out, err := newOutputTensors(c.outputs, b, bufs)
	if err != nil {
		destroyAll(in)
		return nil, err
	}
	if c.setups == nil {
		c.setups = map[int64]*batchSetup{}
	}
	s := &batchSetup{in: in, out: out}
	c.setups[b] = s
	return s, nil
}

func (c *calibrator) close() {
	for _, s := range c.setups {
		destroyAll(s.in)
		destroyAll(s.out)
	}
}

// setting is one (session, batch size) pair under comparison.
type setting struct {
	sess *Session
	b    int64
}

// minTimed is the least time one timed measurement of a setting lasts: a
// fast model's batch runs in microseconds, below what a shared machine's
// scheduler lets one time, so the batch is run again until this much time
// has passed (a slow model's single run is longer and runs once).
const minTimed = 2 * time.Millisecond

// compare warms each new setting up once, then times calibrationRounds
// measurements of each (each at least minTimed long), alternating settings
// round by round, and returns each setting's samples per second from its
// fastest measurement. settings[0] is the incumbent: where holds says it
// lost, a round more confirms the move (a step that finds nothing, as most
// do, costs two rounds; a move costs three). The MLP of the benchmarks once
// left batch 128 for 64 on two measurements of 128 that ran at 0.36 of its
// rate in every other run.
func (c *calibrator) compare(settings []setting, holds func(rates []float64) bool) ([]float64, error) {
	rates := make([]float64, len(settings))
	for round := -1; round < calibrationRounds; round++ {
		if err := c.round(settings, round, rates); err != nil {
			return nil, err
		}
	}
	if !holds(rates) {
		if err := c.round(settings, calibrationRounds, rates); err != nil {
			return nil, err
		}
	}
	return rates, nil
}

// round times each setting once, starting with a different one each round
// so that none is always the one timed right after a warm-up or a session's
// creation; round -1 warms up the settings that have not run yet (first
// runs at a shape allocate).
func (c *calibrator) round(settings []setting, round int, rates []float64) error {
	for k := range settings {
		i := (k + max(round, 0)) % len(settings)
		s := settings[i]
		if round < 0 && c.warm[s] {
			continue
		}
		if err := c.ctx.Err(); err != nil {
			return err
		}
		setup, err := c.setup(s.b)
		if err != nil {
			return err
		}
		start := time.Now()
		runs := 0
		for runs == 0 || (round >= 0 && time.Since(start) < minTimed) {
			if err := s.sess.Run(setup.in, setup.out); err != nil {
				return fmt.Errorf("calibration run at batch %d: %s", s.b, oneLine(err))
			}
			runs++
		}
		if round >= 0 {
			rates[i] = max(rates[i], rateOf(c.state.Trials, s.b, s.sess.Threads), float64(int64(runs)*s.b)/max(time.Since(start), time.Microsecond).Seconds())
		}
		c.warm[s] = true
	}
	return nil
}

// record adds a measured setting to the trials, or updates the setting's
// trial: each setting is listed once, at its fastest.
func (c *calibrator) record(t Trial) {
	if i := trialIndex(c.state.Trials, t.BatchSize, t.Threads); i >= 0 {
		c.state.Trials[i].SamplesPerSec = max(c.state.Trials[i].SamplesPerSec, t.SamplesPerSec)
		return
	}
	c.state.Trials = append(c.state.Trials, t)
}

// rateOf is the rate trials record for batch and threads, 0 if none.
func rateOf(trials []Trial, batch int64, threads int) float64 {
	if i := trialIndex(trials, batch, threads); i >= 0 {
		return trials[i].SamplesPerSec
	}
	return 0
}

func trialIndex(trials []Trial, batch int64, threads int) int {
	return slices.IndexFunc(trials, func(t Trial) bool { return t.BatchSize == batch && t.Threads == threads })
}

// searchVersion names the search's rules: a search cached under other rules
// (version 1 never tried batches above 256) starts again.
const searchVersion = 2

// calibrationKey names what a calibration depends on: the model, the sample
// shape, the device asked for, the thread setting, the machine and the
// search's rules.
func calibrationKey(job Job, src Source) string {
	host, _ := os.Hostname()
	h := sha256.New()
	fmt.Fprintf(h, "%s|%v|%s|%d|%d|%s|%s|%d", job.Model.SHA256, src.Feeds(), job.Device, job.Threads, runtime.NumCPU(), host, runtimeVersion(), searchVersion)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func calibrationFile() string { return filepath.Join(CacheDir(), "calibration.json") }

// loadCalibration returns the cached search for key, nil if there is none.
func loadCalibration(key string) *calibration {
	cache := loadCalibrations()
	if c, ok := cache[key]; ok && c.Best.Threads > 0 && c.Best.BatchSize > 0 {
		return &c
	}
	return nil
}

func loadCalibrations() map[string]calibration {
	cache := map[string]calibration{}
	if data, err := os.ReadFile(calibrationFile()); err == nil {
		_ = json.Unmarshal(data, &cache) // a corrupt cache only costs a recalibration
	}
	return cache
}

// saveCalibration writes the cache atomically; failing to cache is not an error.
func saveCalibration(key string, state *calibration, job Job) {
	cache := loadCalibrations()
	cache[key] = *state
	data, _ := json.MarshalIndent(cache, "", "  ")
	// Not synced: a cache lost in a crash costs one recalibration, while an
	// fsync costs milliseconds on every calibrating run.
	if err := replaceFile(calibrationFile(), data, false); err != nil && job.Logger != nil {
		job.Logger.Warn("cannot cache calibration", "err", err)
	}
}
