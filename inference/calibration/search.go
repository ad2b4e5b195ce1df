package calibration

import (
	"slices"
	"time"

	"github.com/inferstack/inferstack/inference/manifest"
)

// DefaultShare is the share of a job's estimated time (at the best rate
// measured so far) that a run may spend on the search, besides what earlier
// runs banked: small, since most steps find nothing and a step pays off only
// over the runs after it. No step is exempt, not even the thread comparison.
const DefaultShare = 0.02

// MaxGrant caps what one run may spend on the search and what small jobs
// save up, so that no job stalls for long on it.
const MaxGrant = 10 * time.Second

// A step to a larger batch must gain upGain to be taken; a step to a smaller
// one is taken unless it loses more than downLoss. The search times the model
// alone, and in the pipeline, beside the reader and writer, larger batches
// give back what they gain alone: within the noise the smaller batch wins
// (and holds less memory), and the climb tries down first.
const (
	upGain   = 1.05
	downLoss = 0.99
)

// maxMisses is how many steps past the incumbent a climb up looks.
const maxMisses = 1

// rounds is how many timed measurements each setting gets, after a warm-up:
// the settings compared alternate round by round, and each is scored by its
// fastest, in this comparison or an earlier one, since a neighbour's burst
// only ever slows a run down.
const rounds = 2

// MinTimed is the least time one timed measurement of a setting lasts: a
// fast model's batch runs in microseconds, below what a shared machine's
// scheduler lets one time, so the batch runs again until this much time has
// passed.
const MinTimed = 2 * time.Millisecond

// Setting is one thread count and batch size the search times.
type Setting struct {
	Threads int
	Batch   int64
}

// Bench runs a model's settings for the search and keeps its clock: the part
// of a search that touches ONNX Runtime.
type Bench interface {
	// Now is the bench's clock: time passes as settings run.
	Now() time.Duration
	// OpenSession makes the session with threads ready, creating it on first use.
	OpenSession(threads int) error
	// SessionCost is what OpenSession(threads) is expected to take: nothing
	// for a session already open.
	SessionCost(threads int) time.Duration
	// Prepare makes a batch's tensors ready; it fails once the run is cancelled.
	Prepare(batch int64) error
	// Run runs one batch at s (prepared, its session open).
	Run(s Setting) error
}

// Search is what one run's part of a search works with.
type Search struct {
	Samples    int64   // in the job: the grant is Share of their estimated time
	Share      float64 // DefaultShare, unless a caller grants more or none
	MaxBatch   int64   // the largest batch tried
	Candidates []int   // the thread counts compared
	Warm       Setting // the setting the run's probe ran: it needs no warm-up
}

// Run takes state's steps while the run's grant allows, timing each on
// bench. It reports whether it measured anything and whether state changed
// (and needs saving).
func (s Search) Run(state *State, bench Bench) (measured, changed bool, err error) {
	r := &searcher{Search: s, state: state, bench: bench, warm: map[Setting]bool{s.Warm: true}}
	// The grant follows the estimate, which the first measurement corrects.
	grant := func() float64 {
		return min(s.Share*r.estimate().Seconds()+state.Bank, MaxGrant.Seconds())
	}
	var spent time.Duration
	for !state.Done() {
		next, cost := r.nextStep()
		if next == 0 {
			r.advance()
			changed = true
			continue
		}
		if (spent + cost).Seconds() > grant() {
			break
		}
		start := bench.Now()
		if err := r.takeStep(next); err != nil {
			return measured, changed, err
		}
		spent += bench.Now() - start
		measured, changed = true, true
	}
	bank := 0.0
	if !state.Done() {
		bank = max(0, min(grant()-spent.Seconds(), MaxGrant.Seconds()))
	}
	if bank != state.Bank {
		state.Bank, changed = bank, true
	}
	return measured, changed, nil
}

// searcher is one run of Search on a state.
type searcher struct {
	Search
	state *State
	bench Bench
	warm  map[Setting]bool // settings that have run once: no warm-up needed
}

// estimate is the job's time at the best rate measured so far.
func (r *searcher) estimate() time.Duration {
	return time.Duration(float64(r.Samples) / max(r.state.Best.SamplesPerSec, 1) * float64(time.Second))
}

// nextStep is the batch size the current step tries (0: none left in its
// direction) and what the step costs at the best rate.
func (r *searcher) nextStep() (int64, time.Duration) {
	s := r.state
	b := s.Best.BatchSize
	// A setting costs a warm-up run (where it is new) and a measurement of
	// at least MinTimed per round; a step is charged what it costs when it
	// moves the incumbent (rounds and the round that confirms it), so that a
	// run spends no more than its grant.
	run := func(batch int64) time.Duration {
		return time.Duration(float64(batch) / max(s.Best.SamplesPerSec, 1) * float64(time.Second))
	}
	measured := func(batch int64) time.Duration { return (rounds + 1) * max(run(batch), MinTimed) }
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
		return next, run(next) + measured(next) + measured(b)
	case stepThreads:
		if len(r.Candidates) == 1 {
			return 0, 0
		}
		var cost time.Duration
		for _, t := range r.Candidates {
			cost += r.bench.SessionCost(t) + run(b) + measured(b)
		}
		return b, cost
	}
	return 0, 0
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
			s.Step = stepDown
		}
		return nil
	}
	threads := s.Best.Threads
	if err := r.bench.OpenSession(threads); err != nil {
		return err
	}
	// The incumbent is timed again beside the step, under the same load.
	need := upGain
	if next < s.Best.BatchSize {
		need = downLoss
	}
	rates, err := r.compare([]Setting{{threads, s.Best.BatchSize}, {threads, next}}, func(r []float64) bool { return r[1] < need*r[0] })
	if err != nil {
		return err
	}
	r.record(manifest.Trial{BatchSize: s.Best.BatchSize, Threads: threads, SamplesPerSec: rates[0]})
	r.record(manifest.Trial{BatchSize: next, Threads: threads, SamplesPerSec: rates[1]})
	if rates[1] >= need*rates[0] {
		s.Best = manifest.Trial{BatchSize: next, Threads: threads, SamplesPerSec: rates[1]}
		s.Misses, s.Tried = 0, 0
		return nil
	}
	s.Best.SamplesPerSec = rates[0]
	s.Misses, s.Tried = s.Misses+1, next
	if s.Step == stepDown || s.Misses > maxMisses {
		r.advance()
	}
	return nil
}

// advance moves the state past a climb's direction that ended (or found no
// batch size left to try): down is always followed by up, since a step down
// can win on an incumbent that timed slow; a climb is followed by the thread
// comparison unless that is done.
func (r *searcher) advance() {
	s := r.state
	s.Misses, s.Tried = 0, 0
	switch {
	case s.Step == stepDown:
		s.Step = stepUp
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
		if err := r.bench.OpenSession(t); err != nil {
			return err
		}
		settings[i] = Setting{t, b}
	}
	rates, err := r.compare(settings, func(r []float64) bool { return slices.Max(r) == r[0] })
	if err != nil {
		return err
	}
	best := manifest.Trial{}
	for i, st := range settings {
		t := manifest.Trial{BatchSize: b, Threads: st.Threads, SamplesPerSec: rates[i]}
		r.record(t)
		if t.SamplesPerSec > best.SamplesPerSec {
			best = t
		}
	}
	s.Best = best
	return nil
}

// compare warms each new setting up once, then times rounds measurements of
// each, alternating settings round by round, and returns each setting's
// samples per second from its fastest measurement. settings[0] is the
// incumbent: where holds says it lost, a round more confirms the move (a
// step that finds nothing, as most do, costs two rounds; a move costs three).
func (r *searcher) compare(settings []Setting, holds func(rates []float64) bool) ([]float64, error) {
	rates := make([]float64, len(settings))
	for round := -1; round < rounds; round++ {
		if err := r.round(settings, round, rates); err != nil {
			return nil, err
		}
	}
	if !holds(rates) {
		if err := r.round(settings, rounds, rates); err != nil {
			return nil, err
		}
	}
	return rates, nil
}

// round times each setting once, starting with a different one each round so
// that none is always the one timed right after a warm-up or a session's
// creation; round -1 warms up the settings that have not run yet (first runs
// at a shape allocate).
func (r *searcher) round(settings []Setting, round int, rates []float64) error {
	for k := range settings {
		i := (k + max(round, 0)) % len(settings)
		s := settings[i]
		if round < 0 && r.warm[s] {
			continue
		}
		if err := r.bench.Prepare(s.Batch); err != nil {
			return err
		}
		start := r.bench.Now()
		runs := 0
		for runs == 0 || (round >= 0 && r.bench.Now()-start < MinTimed) {
			if err := r.bench.Run(s); err != nil {
				return err
			}
			runs++
		}
		if round >= 0 {
			rates[i] = max(rates[i], RateOf(r.state.Trials, s.Batch, s.Threads), float64(int64(runs)*s.Batch)/max(r.bench.Now()-start, time.Microsecond).Seconds())
		}
		r.warm[s] = true
	}
	return nil
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
