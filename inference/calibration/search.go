package calibration

import (
	"errors"
	"slices"
	"time"

	"github.com/inferstack/inferstack/inference/manifest"
)

// DefaultShare is the share of a job's estimated time (at the best rate
// measured so far) that a run may lose to the search, besides what earlier
// runs banked. The search runs the job's own chunks, so what it spends is
// only what its trials lose against the incumbent, and the sessions it
// creates: a step that wins pays for itself.
const DefaultShare = 0.02

// MaxGrant caps what one run may spend on the search and what small jobs
// save up, so that no job stalls for long on it.
const MaxGrant = 10 * time.Second

// A step to a larger batch is taken unless it loses more than 3%: scored by
// its fastest measurement, a setting is timed as if nothing disturbed it,
// which hides what a larger batch gains on a shared machine (fewer barriers
// for a preempted thread to hold up; docs/benchmarks.md). A step to a
// smaller batch must gain 2%.
const (
	upGain   = 0.97
	downGain = 1.02
)

// maxMisses is how many steps past the incumbent a climb up looks, where
// the miss is within the noise (not a clear miss).
const maxMisses = 1

// rounds is how many measurements each setting gets in a comparison (one
// more where it is new to the run, since its first chunk runs cold): the
// settings compared alternate measurement by measurement, and each is
// scored by its fastest, in this comparison or an earlier one, since a
// neighbour's burst only ever slows a chunk down.
const rounds = 2

// minMeasure is the least inference time one measurement of a setting
// lasts: a light model's chunk runs in milliseconds, within what a shared
// machine's scheduler takes away at random, so a measurement runs chunks
// until this much has passed.
const minMeasure = 25 * time.Millisecond

// assumedLoss is how much longer than the incumbent's a chunk at a setting
// not yet measured is expected to take, for the budget; once measured, its
// rate says. A step starts only where the grant covers its chunks at their
// expected loss.
const assumedLoss = 0.2

// clearMiss ends a setting's measurements after its first two where the
// faster of them runs below this share of the incumbent's rate, and
// clearWin ends a comparison there where a setting runs at this multiple of
// it: more rounds would not change the outcome, only cost the job (a step
// away from a poor start, as most first steps up of a light model are).
const (
	clearMiss = 0.8
	clearWin  = 1.1
)

// ErrStopped is what a Bench returns once the job has no chunk left to run:
// the search stops where it is, as when its grant runs out.
var ErrStopped = errors.New("calibration: the job has no chunk left to measure")

// errGrant stops a step whose next chunk the grant does not cover.
var errGrant = errors.New("calibration: the grant is spent")

// Setting is one thread count and batch size the search times.
type Setting struct {
	Threads int
	Batch   int64
}

// Measurement is one timed run of a setting: a chunk of the job.
type Measurement struct {
	Samples int64
	Took    time.Duration
}

// Rate is the measurement's samples per second.
func (m Measurement) Rate() float64 {
	return float64(m.Samples) / max(m.Took, time.Microsecond).Seconds()
}

// Bench runs the job's chunks at the settings the search asks for: the part
// of a search that touches ONNX Runtime and the pipeline.
type Bench interface {
	// OpenSession makes the session with threads ready, creating it on
	// first use; it returns what that took (nothing for one already open).
	OpenSession(threads int) (time.Duration, error)
	// SessionCost is what OpenSession(threads) is expected to take.
	SessionCost(threads int) time.Duration
	// Run runs the job's next chunk at s (its session open) and times it;
	// ErrStopped where no chunk is left.
	Run(s Setting) (Measurement, error)
}

// Search is what one run's part of a search works with.
type Search struct {
	Samples    int64   // in the job: the grant is Share of their estimated time
	Share      float64 // DefaultShare, unless a caller grants more or none
	Chunk      int64   // samples in a chunk of the job
	MaxBatch   int64   // the largest batch tried
	Candidates []int   // the thread counts compared
}

// Outcome is what a run's part of the search did.
type Outcome struct {
	Measured bool          // it timed some setting
	Changed  bool          // the state changed and needs saving
	Spent    time.Duration // lost against the incumbent, sessions included (negative where trials won)
}

// Run takes state's steps while the run's grant allows, timing each on
// bench, and stops where the job runs out of chunks.
func (s Search) Run(state *State, bench Bench) (Outcome, error) {
	r := newSearcher(s, state, bench)
	var out Outcome
	if !state.Done() && r.grant() > 0 {
		// The incumbent's first measurement costs nothing and corrects the
		// estimate (and with it the grant): a new search has only its
		// probe's rate, a cold one.
		err := r.measureIncumbent()
		out.Measured, out.Changed = r.measuredAny, r.measuredAny
		if err != nil && !errors.Is(err, ErrStopped) {
			return out, err
		}
	}
	for !state.Done() && !r.stopped {
		next, admission := r.nextStep()
		if next == 0 {
			r.advance()
			out.Changed = true
			continue
		}
		if r.spent+admission > r.grant() {
			break
		}
		err := r.takeStep(next)
		if r.measuredAny {
			out.Measured, out.Changed = true, true
		}
		if errors.Is(err, ErrStopped) {
			r.stopped = true
		}
		if errors.Is(err, errGrant) || r.stopped {
			break
		}
		if err != nil {
			out.Spent = r.spent
			return out, err
		}
	}
	bank := 0.0
	if !state.Done() {
		bank = max(0, min(r.grant()-r.spent, MaxGrant).Seconds())
	}
	if bank != state.Bank {
		state.Bank, out.Changed = bank, true
	}
	out.Spent = r.spent
	return out, nil
}

// searcher is one run of Search on a state.
type searcher struct {
	Search
	state       *State
	bench       Bench
	spent       time.Duration
	ran         map[Setting]bool    // settings that ran a chunk in this run
	slowest     map[Setting]float64 // each setting's slowest rate in this run
	latest      map[Setting]float64 // each setting's rate in its latest measurement
	measuredAny bool
	stopped     bool // the job has no chunk left
}

func newSearcher(s Search, state *State, bench Bench) *searcher {
	return &searcher{Search: s, state: state, bench: bench, ran: map[Setting]bool{},
		slowest: map[Setting]float64{}, latest: map[Setting]float64{}}
}

// measureIncumbent measures the best setting so far, as long as any other
// measurement, and makes its rate the best's where faster. The run's first
// chunk is not measured: it runs cold, and as the reference that the steps
// beside it are charged against, it would charge them too little.
func (r *searcher) measureIncumbent() error {
	best := Setting{r.state.Best.Threads, r.state.Best.BatchSize}
	if err := r.openSession(best.Threads); err != nil {
		return err
	}
	var m Measurement
	_, err := r.bench.Run(best)
	if err == nil {
		m, err = r.measure(best, false, 0)
	}
	if errors.Is(err, ErrStopped) {
		r.stopped = true
	}
	if m.Samples > 0 {
		r.state.Best.SamplesPerSec = max(r.state.Best.SamplesPerSec, r.note(best, m))
	}
	return err
}

// note records a measurement of s in this run and returns its rate.
func (r *searcher) note(s Setting, m Measurement) float64 {
	rate := m.Rate()
	r.latest[s] = rate
	if v, ok := r.slowest[s]; !ok || rate < v {
		r.slowest[s] = rate
	}
	r.ran[s], r.measuredAny = true, true
	return rate
}

// grant is what the run may spend: Share of the job's estimated time at the
// best rate so far (which the measurements correct), plus the bank.
func (r *searcher) grant() time.Duration {
	return min(time.Duration(r.Share*float64(r.estimate()))+time.Duration(r.state.Bank*float64(time.Second)), MaxGrant)
}

// estimate is the job's time at the best rate measured so far.
func (r *searcher) estimate() time.Duration { return r.timeOf(r.Samples, r.state.Best.SamplesPerSec) }

// timeOf is how long n samples take at rate.
func (r *searcher) timeOf(n int64, rate float64) time.Duration {
	return time.Duration(float64(n) / max(rate, 1) * float64(time.Second))
}

// nextStep is the batch size the current step tries (0: none left in its
// direction) and what the grant must cover to start it: the chunks of each
// setting it adds at their expected loss, and the sessions it creates.
func (r *searcher) nextStep() (int64, time.Duration) {
	s := r.state
	b := s.Best.BatchSize
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
		if next < 1 || next > r.MaxBatch {
			return 0, 0
		}
		cost := r.trialCost(Setting{s.Best.Threads, next})
		if below := r.below(); below > 0 {
			// The grant need cover only the costlier neighbour: where both
			// lose, the start is the best already, and the grant stops the
			// comparison as its chunks are charged.
			cost = max(cost, r.trialCost(Setting{s.Best.Threads, below}))
		}
		return next, cost
	case stepThreads:
		if len(r.Candidates) == 1 {
			return 0, 0
		}
		var cost time.Duration
		for _, t := range r.Candidates {
			if t != s.Best.Threads {
				cost += r.bench.SessionCost(t) + r.trialCost(Setting{t, b})
			}
		}
		return b, cost
	}
	return 0, 0
}

// below is the batch the step also times beside the one above (0: none):
// the first step of a climb up looks both ways, since the start is a guess
// and a run too short to afford a climb in each direction would otherwise
// only ever climb up from it. It does so only where the job holds such a
// step's measurements, since a step the job stops starts again in the next
// run.
func (r *searcher) below() int64 {
	s := r.state
	if s.Step != stepUp || s.Moved || s.Misses > 0 || s.LookedDown || s.Best.BatchSize < 2 {
		return 0
	}
	if r.measurements() < stepMeasurements(3) {
		return 0
	}
	return s.Best.BatchSize / 2
}

// stepMeasurements is the most measurements a step of n settings takes: one
// of each new setting, then rounds and a confirming round of all of them.
func stepMeasurements(n int) int64 { return int64(n - 1 + (rounds+1)*n) }

// measurements is how many measurements the whole job holds, at the best
// rate so far.
func (r *searcher) measurements() int64 {
	if r.Chunk <= 0 {
		return 0
	}
	chunk := r.timeOf(r.Chunk, r.state.Best.SamplesPerSec)
	perMeasurement := max(1, int64((minMeasure+chunk-1)/max(chunk, 1)))
	return r.Samples / r.Chunk / perMeasurement
}

// trialCost is what a step's measurements of s are expected to lose against
// the incumbent: two chunks where it misses clearly, else rounds more.
func (r *searcher) trialCost(s Setting) time.Duration {
	loss := r.expectedLoss(s, r.state.Best.SamplesPerSec)
	chunks := 2.0
	if loss < 1-clearMiss {
		chunks += rounds
	}
	return time.Duration(chunks * loss * float64(r.timeOf(r.Chunk, r.state.Best.SamplesPerSec)))
}

// expectedLoss is the time a chunk at s is expected to take beyond one at
// rate ref, as a share of the latter: from its slowest chunk in this run,
// else its trial, else assumedLoss.
func (r *searcher) expectedLoss(s Setting, ref float64) float64 {
	rate, ok := r.slowest[s]
	if !ok {
		rate = RateOf(r.state.Trials, s.Batch, s.Threads)
	}
	if rate == 0 {
		return assumedLoss
	}
	return max(0, ref/rate-1)
}

// takeStep measures the step to batch next and moves the state on.
func (r *searcher) takeStep(next int64) error {
	s := r.state
	if s.Step == stepThreads {
		threads := s.Best.Threads
		if err := r.compareThreads(next); err != nil {
			return err
		}
		s.Compared = true
		s.Step = stepDone
		if s.Best.Threads != threads {
			// Climb once more, at the thread count that won.
			s.Step, s.Moved, s.LookedDown = stepUp, false, false
		}
		return nil
	}
	threads := s.Best.Threads
	if err := r.openSession(threads); err != nil {
		return err
	}
	// The incumbent is timed again beside the step, under the same load. A
	// step up may lose 3% against the fastest batch measured at these
	// threads, not against the one before it, so that losses within the
	// noise do not add up along a flat climb.
	need, fastest := upGain, r.fastestAt(threads, next)
	if next < s.Best.BatchSize {
		need, fastest = downGain, 0
	}
	settings := []Setting{{threads, s.Best.BatchSize}, {threads, next}}
	below := r.below()
	if below > 0 {
		settings = append(settings, Setting{threads, below})
	}
	wins := func(rates []float64) bool { return rates[1] >= need*max(rates[0], fastest) }
	winsBelow := func(rates []float64) bool { return below > 0 && rates[2] >= downGain*rates[0] }
	rates, err := r.compare(settings, func(r []float64) bool { return !wins(r) && !winsBelow(r) })
	r.recordRates(settings, rates)
	if err != nil {
		return err
	}
	if winsBelow(rates) && (!wins(rates) || rates[2] > rates[1]) {
		s.Best = manifest.Trial{BatchSize: below, Threads: threads, SamplesPerSec: rates[2]}
		s.Step, s.Misses, s.Tried = stepDown, 0, 0
		return nil
	}
	if wins(rates) {
		s.Best = manifest.Trial{BatchSize: next, Threads: threads, SamplesPerSec: rates[1]}
		s.Misses, s.Tried = 0, 0
		s.Moved = s.Moved || s.Step == stepUp
		return nil
	}
	s.LookedDown = s.LookedDown || below > 0
	s.Best.SamplesPerSec = rates[0]
	s.Misses, s.Tried = s.Misses+1, next
	if s.Step == stepDown || s.Misses > maxMisses || rates[1] < clearMiss*rates[0] {
		r.advance()
	}
	return nil
}

// fastestAt is the fastest rate measured at threads for a batch other than
// except.
func (r *searcher) fastestAt(threads int, except int64) float64 {
	fastest := 0.0
	for _, t := range r.state.Trials {
		if t.Threads == threads && t.BatchSize != except {
			fastest = max(fastest, t.SamplesPerSec)
		}
	}
	return fastest
}

// advance moves the state past a climb's direction that ended (or found no
// batch size left to try): up is followed by down unless the climb up moved
// (the batch below is the one it left) or its first step timed the batch
// below, and a climb by the thread comparison unless that is done.
func (r *searcher) advance() {
	s := r.state
	s.Misses, s.Tried = 0, 0
	switch {
	case s.Step == stepUp && !s.Moved && !s.LookedDown:
		s.Step = stepDown
	case s.Compared || len(r.Candidates) == 1:
		s.Step = stepDone
	default:
		s.Step = stepThreads
	}
}

// compareThreads times every candidate thread count at batch b and makes the
// fastest the best.
func (r *searcher) compareThreads(b int64) error {
	s := r.state
	// The incumbent's thread count first.
	others := slices.DeleteFunc(slices.Clone(r.Candidates), func(t int) bool { return t == s.Best.Threads })
	threads := append([]int{s.Best.Threads}, others...)
	settings := make([]Setting, len(threads))
	for i, t := range threads {
		if err := r.openSession(t); err != nil {
			return err
		}
		settings[i] = Setting{t, b}
	}
	rates, err := r.compare(settings, func(r []float64) bool { return slices.Max(r) == r[0] })
	r.recordRates(settings, rates)
	if err != nil {
		return err
	}
	best := manifest.Trial{}
	for i, st := range settings {
		if rates[i] > best.SamplesPerSec {
			best = manifest.Trial{BatchSize: b, Threads: st.Threads, SamplesPerSec: rates[i]}
		}
	}
	s.Best = best
	return nil
}

// openSession opens the session for threads, charging its creation.
func (r *searcher) openSession(threads int) error {
	took, err := r.bench.OpenSession(threads)
	r.spent += took
	return err
}

// compare runs a chunk of each setting new to the run, then rounds chunks
// of each, alternating settings chunk by chunk, and returns each setting's
// samples per second from its fastest measurement. settings[0] is the
// incumbent: where holds says it lost, a round more confirms the move (a
// step that finds nothing, as most do, costs two rounds; a move costs
// three). A setting that misses clearly after two measurements runs no
// more, and a clear win ends the comparison there. A comparison the grant
// stops returns what it measured.
func (r *searcher) compare(settings []Setting, holds func(rates []float64) bool) ([]float64, error) {
	rates := make([]float64, len(settings))
	rates[0] = r.state.Best.SamplesPerSec
	active := make([]bool, len(settings))
	for i := range active {
		active[i] = true
	}
	for round := -1; round <= rounds; round++ {
		if round == rounds && holds(rates) {
			break
		}
		if err := r.round(settings, active, round, rates); err != nil {
			if errors.Is(err, errGrant) && clearlyMissed(rates) {
				// The grant stopped a setting that lost clearly in every
				// chunk it ran: the step is decided, and a later run that
				// tried it again would be stopped the same way.
				return rates, nil
			}
			return rates, err
		}
		if round == 0 {
			for i := 1; i < len(settings); i++ {
				active[i] = rates[i] >= clearMiss*rates[0]
			}
			if !slices.Contains(active[1:], true) || slices.Max(rates[1:]) >= clearWin*rates[0] {
				break
			}
		}
	}
	return rates, nil
}

// clearlyMissed says whether every setting but the incumbent ran and lost
// clearly, scored by its fastest measurement.
func clearlyMissed(rates []float64) bool {
	for _, rate := range rates[1:] {
		if rate == 0 || rate >= clearMiss*rates[0] {
			return false
		}
	}
	return true
}

// round measures each active setting once, starting with a different one
// each round so that none is always the one run right after a session's
// creation; round -1 measures the settings new to the run.
func (r *searcher) round(settings []Setting, active []bool, round int, rates []float64) error {
	for k := range settings {
		i := (k + max(round, 0)) % len(settings)
		s := settings[i]
		if !active[i] || round < 0 && r.ran[s] {
			continue
		}
		m, err := r.measure(s, i > 0, r.incumbentRate(settings[0], rates[0]))
		if m.Samples > 0 && (err == nil || errors.Is(err, errGrant)) {
			// A measurement the grant cut short rates the setting too.
			rates[i] = max(rates[i], RateOf(r.state.Trials, s.Batch, s.Threads), r.note(s, m))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// incumbentRate is what the chunks of a step are charged against: the
// incumbent's latest measurement in this run, taken beside them under the
// same load, else its best rate.
func (r *searcher) incumbentRate(incumbent Setting, best float64) float64 {
	if rate, ok := r.latest[incumbent]; ok {
		return rate
	}
	return best
}

// measure runs chunks at s until they last minMeasure. A chunk of a setting
// other than the incumbent's is charged what it lost against ref, the
// incumbent's rate beside it, and runs only where the grant covers what it
// is expected to lose.
func (r *searcher) measure(s Setting, charged bool, ref float64) (Measurement, error) {
	var total Measurement
	for total.Took < minMeasure {
		if charged && r.spent+time.Duration(r.expectedLoss(s, ref)*float64(r.timeOf(r.Chunk, ref))) > r.grant() {
			return total, errGrant
		}
		m, err := r.bench.Run(s)
		if err != nil {
			return total, err
		}
		total.Samples += m.Samples
		total.Took += m.Took
		if charged {
			r.spent += m.Took - r.timeOf(m.Samples, ref)
		}
	}
	return total, nil
}

// recordRates adds the settings a comparison measured to the trials.
func (r *searcher) recordRates(settings []Setting, rates []float64) {
	for i, s := range settings {
		if rates[i] > 0 {
			r.record(manifest.Trial{BatchSize: s.Batch, Threads: s.Threads, SamplesPerSec: rates[i]})
		}
	}
}

// record adds a measured setting to the trials, or updates the setting's
// trial: each setting is listed once, at its fastest.
func (r *searcher) record(t manifest.Trial) {
	if i := trialIndex(r.state.Trials, t.BatchSize, t.Threads); i >= 0 {
		r.state.Trials[i].SamplesPerSec = max(r.state.Trials[i].SamplesPerSec, t.SamplesPerSec)
		return
	}
	r.state.Trials = append(r.state.Trials, t)
}
