// Package calibration is the search for a job's batch size and thread count:
// pure rules over the timings a Bench reports, with no ONNX Runtime in it.
// The measurements behind each rule are in docs/benchmarks.md.
package calibration

import (
	"slices"
	"time"

	"github.com/inferstack/inferstack/inference/manifest"
)

// Version names the search's rules and the State's format: a search cached
// under another version starts again (version 1 never tried batches above
// 256; version 2 timed the model alone, not the job's chunks; version 3's
// first step looked only up).
const Version = 4

// The search's steps, in order: the batch first, at the default thread count
// (up while a step is no slower, then down while a step gains, unless the
// climb up moved; the first step up also times the batch below, and where
// that wins the climb goes down from it), then every thread count at the
// batch found; where another count wins, the batch climbs once more at that
// count.
const (
	stepUp      = "up"
	stepDown    = "down"
	stepThreads = "threads"
	stepDone    = ""
)

// State is one search's state, cached per model, input shape and machine. A
// run spends at most its grant on it, banks what it does not spend and saves
// where it stopped, so a series of small jobs completes the search that no
// single one of them could afford.
type State struct {
	Device manifest.Device  `json:"device"` // where the trials ran
	Best   manifest.Trial   `json:"best"`
	Trials []manifest.Trial `json:"trials"`
	Step   string           `json:"step"`
	// Start is the batch the search started from (StartBatch).
	Start int64 `json:"start"`
	// Compared says the threads have been compared.
	Compared bool `json:"compared,omitempty"`
	// Misses counts the steps up in a row that did not gain, Tried is the
	// last of them: a climb up looks one step past a miss before it ends.
	Misses int   `json:"misses,omitempty"`
	Tried  int64 `json:"tried,omitempty"`
	// Moved says the current climb up moved the batch: no climb down follows.
	Moved bool `json:"moved,omitempty"`
	// LookedDown says the current climb's first step also timed the batch
	// below, which lost: no climb down follows either.
	LookedDown bool `json:"looked_down,omitempty"`
	// Bank is the seconds earlier runs were granted but did not spend.
	Bank float64 `json:"bank_seconds,omitempty"`
}

// Done says the search has completed: Best is the choice.
func (s *State) Done() bool { return s.Step == stepDone }

// Resume is the search a run goes on with, and whether it is a new one (to
// be saved): the cached one where it ran on device, else a new search from
// the default, threads at the start batch, at the probe's rate (warm samples
// ran in probe; a cold run errs slow, towards a larger grant and larger step
// costs).
func Resume(cached *State, device manifest.Device, threads int, warm int64, probe time.Duration, maxBatch int64) (state *State, fresh bool) {
	if cached != nil && cached.Device == device && cached.Start != 0 {
		return cached, false
	}
	start := StartBatch(warm, probe, maxBatch)
	rate := float64(warm) / max(probe, time.Microsecond).Seconds()
	return &State{Device: device, Step: stepUp, Start: start, Best: manifest.Trial{BatchSize: start, Threads: threads, SamplesPerSec: rate}}, true
}

// MidBatch is where the search starts: large enough that the per-call
// overhead does not dominate, small enough to stay cheap. A model whose first
// sample runs in under MinStartRun is timed at MidBatch, and a model so
// light that MidBatch samples run in under StartRun starts at the batch that
// takes that long, since such a model's best batch is larger still.
const (
	MidBatch    = 16
	MinStartRun = time.Millisecond
	StartRun    = 4 * time.Millisecond
)

// StartBatch is the batch the search starts from, from the probe's time for
// its first n samples (a cold run: it errs towards smaller batches), at most
// limit.
func StartBatch(n int64, probe time.Duration, limit int64) int64 {
	b := int64(MidBatch)
	for b < limit && time.Duration(int64(probe)*b/max(n, 1)) < StartRun {
		b *= 2
	}
	return min(b, limit)
}

// ThreadCandidates are the intra-op thread counts the search compares on a
// machine with cpus cores: one, half, all but one (which leaves a core to the
// reader and writer) and all.
func ThreadCandidates(cpus int) []int {
	c := []int{1, max(1, cpus/2), max(1, cpus-1), max(1, cpus)}
	slices.Sort(c)
	return slices.Compact(c)
}

// RateOf is the rate trials record for batch and threads, 0 if none.
func RateOf(trials []manifest.Trial, batch int64, threads int) float64 {
	if i := trialIndex(trials, batch, threads); i >= 0 {
		return trials[i].SamplesPerSec
	}
	return 0
}

func trialIndex(trials []manifest.Trial, batch int64, threads int) int {
	return slices.IndexFunc(trials, func(t manifest.Trial) bool { return t.BatchSize == batch && t.Threads == threads })
}
