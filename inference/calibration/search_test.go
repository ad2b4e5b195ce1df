package calibration

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/manifest"
)

// fakeBench runs the job's chunks on a fake clock: a chunk of chunk samples
// (4,096: at the speeds of the tests, one chunk lasts minMeasure) at a
// setting takes chunk/speed milliseconds, opening a session sessionMs; a job
// has chunks chunks per run (0: no end).
type fakeBench struct {
	// speed is a setting's samples per millisecond in its n-th measurement
	// (from 1).
	speed     func(s Setting, n int) float64
	sessionMs float64
	chunk     int64
	chunks    int

	now          time.Duration
	open         map[int]bool
	measurements map[Setting]int
	ran          int // chunks in this run
}

func newFakeBench(speed func(s Setting, n int) float64, open ...int) *fakeBench {
	b := &fakeBench{speed: speed, chunk: 4096, open: map[int]bool{}, measurements: map[Setting]int{}}
	for _, t := range open {
		b.open[t] = true
	}
	return b
}

func (b *fakeBench) OpenSession(threads int) (time.Duration, error) {
	if b.open[threads] {
		return 0, nil
	}
	b.now += ms(b.sessionMs)
	b.open[threads] = true
	return ms(b.sessionMs), nil
}

func (b *fakeBench) SessionCost(threads int) time.Duration {
	if b.open[threads] {
		return 0
	}
	return ms(b.sessionMs)
}

func (b *fakeBench) Run(s Setting) (Measurement, error) {
	if !b.open[s.Threads] {
		return Measurement{}, fmt.Errorf("run %+v: session not open", s)
	}
	if b.chunks > 0 && b.ran == b.chunks {
		return Measurement{}, ErrStopped
	}
	b.ran++
	b.measurements[s]++
	took := ms(float64(b.chunk) / b.speed(s, b.measurements[s]))
	b.now += took
	return Measurement{Samples: b.chunk, Took: took}, nil
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// steady is a model whose settings run at the same speed in every
// measurement; a setting it does not list fails the test.
func steady(t *testing.T, speeds map[Setting]float64) func(Setting, int) float64 {
	return func(s Setting, _ int) float64 {
		v, ok := speeds[s]
		if !ok {
			t.Fatalf("the search timed %+v, which the case does not expect", s)
		}
		return v
	}
}

// trialsOf lists trials' settings in the order the search first timed them.
func trialsOf(trials []manifest.Trial) []Setting {
	s := make([]Setting, len(trials))
	for i, tr := range trials {
		s[i] = Setting{tr.Threads, tr.BatchSize}
	}
	return s
}

// newSearch is a new search at all of 2 cores from a probe that ran 16
// samples in probe (a cold run, slower than the batch then runs).
func newSearch(probe time.Duration) *State {
	state, _ := Resume(nil, "cpu", 2, 16, probe, 4096)
	return state
}

// coldProbe is a probe that starts the search at batch 16.
const coldProbe = 5 * time.Millisecond

// Given all the budget it needs, one run completes the search: the batch
// first, up then down, then threads at the batch found.
func TestSearchSteps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		candidates []int
		maxBatch   int64
		speeds     map[Setting]float64 // samples per millisecond
		timed      []Setting           // in the order first timed
		best       Setting
		compared   bool
	}{
		{
			name:       "up climbs one step past a miss within the noise, no climb down after a move, threads keep all cores",
			candidates: []int{1, 2},
			maxBatch:   4096,
			speeds: map[Setting]float64{
				{2, 16}:  100,
				{2, 32}:  110,                // faster: taken
				{2, 8}:   75,                 // timed beside it by the first step, a clear miss
				{2, 64}:  105,                // a miss within the noise: the climb looks one step further
				{2, 128}: 125,                // faster than 32: taken
				{2, 256}: 115, {2, 512}: 114, // two misses: the climb ends
				{1, 128}: 70,
			},
			timed:    []Setting{{2, 16}, {2, 32}, {2, 8}, {2, 64}, {2, 128}, {2, 256}, {2, 512}, {1, 128}},
			best:     Setting{2, 128},
			compared: true,
		},
		{
			name:       "the first step looks both ways: the batch below gains, and the climb goes on down",
			candidates: []int{1, 2},
			maxBatch:   4096,
			speeds: map[Setting]float64{
				{2, 16}: 100, {2, 32}: 70,
				{2, 8}: 105, {2, 4}: 90,
				{1, 8}: 60,
			},
			timed:    []Setting{{2, 16}, {2, 32}, {2, 8}, {2, 4}, {1, 8}},
			best:     Setting{2, 8},
			compared: true,
		},
		{
			name:       "a step down must gain 2%, and a climb up whose first step timed the batch below has no climb down",
			candidates: []int{1, 2},
			maxBatch:   4096,
			speeds: map[Setting]float64{
				{2, 16}: 100, {2, 32}: 95, {2, 64}: 96, // two misses within the noise
				{2, 8}:  101.5,
				{1, 16}: 50,
			},
			timed:    []Setting{{2, 16}, {2, 32}, {2, 8}, {2, 64}, {1, 16}},
			best:     Setting{2, 16},
			compared: true,
		},
		{
			name:       "another thread count wins: the batch climbs again at it, threads not compared again",
			candidates: []int{1, 2},
			maxBatch:   4096,
			speeds: map[Setting]float64{
				{2, 16}: 100, {2, 32}: 70, {2, 8}: 90,
				{1, 16}: 120, {1, 32}: 130, {1, 8}: 100, {1, 64}: 90,
			},
			timed:    []Setting{{2, 16}, {2, 32}, {2, 8}, {1, 16}, {1, 32}, {1, 8}, {1, 64}},
			best:     Setting{1, 32},
			compared: true,
		},
		{
			name:       "one candidate (the job sets its threads), a flat model: up while within 3% of the fastest batch, not of the one before",
			candidates: []int{2},
			maxBatch:   128,
			speeds:     map[Setting]float64{{2, 8}: 90, {2, 16}: 100, {2, 32}: 98, {2, 64}: 96, {2, 128}: 94}, // each within 3% of the one before
			timed:      []Setting{{2, 16}, {2, 32}, {2, 8}, {2, 64}, {2, 128}},
			best:       Setting{2, 32},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := newSearch(coldProbe)
			bench := newFakeBench(steady(t, tc.speeds), 2)
			search := Search{Samples: 1e6, Share: 1000, Chunk: bench.chunk, MaxBatch: tc.maxBatch, Candidates: tc.candidates}
			out, err := search.Run(state, bench)
			require.NoError(t, err)
			require.True(t, out.Measured)
			require.True(t, out.Changed)
			require.True(t, state.Done(), "%+v", state)
			require.Equal(t, tc.timed, trialsOf(state.Trials))
			require.Equal(t, tc.best, Setting{state.Best.Threads, state.Best.BatchSize})
			require.InEpsilon(t, tc.speeds[tc.best]*1000, state.Best.SamplesPerSec, 1e-5, "the rate the fake clock gives")
			require.Equal(t, tc.compared, state.Compared)
			require.Zero(t, state.Bank, "a completed search banks nothing")
		})
	}
}

// A step runs a chunk of each setting new to the run, then two rounds of
// both; a move is confirmed by a third round, and a clear miss or a clear
// win ends after the new setting's first two chunks.
func TestAMoveIsConfirmedByAThirdRound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		speed float64 // of batch 8, against 100 at 16
		want  map[Setting]int
	}{
		{"a miss", 95, map[Setting]int{{2, 16}: 3, {2, 8}: 3}},
		{"a move", 105, map[Setting]int{{2, 16}: 4, {2, 8}: 4}},
		{"a clear miss", 70, map[Setting]int{{2, 16}: 2, {2, 8}: 2}},
		{"a clear win", 115, map[Setting]int{{2, 16}: 2, {2, 8}: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := newSearch(coldProbe)
			state.Step = stepDown
			bench := newFakeBench(func(s Setting, _ int) float64 {
				if s.Batch == 8 {
					return tc.speed
				}
				return 100
			}, 2)
			r := newSearcher(Search{Samples: 1e6, Share: 1000, Chunk: bench.chunk, MaxBatch: 4096, Candidates: []int{1, 2}}, state, bench)
			require.NoError(t, r.takeStep(8))
			require.Equal(t, tc.want, bench.measurements, "chunks per setting")
		})
	}
}

// The first step of a climb up also times the batch below, where the job
// holds the measurements of a step of three settings: the start is a guess,
// and a short job can afford one direction only. Where that batch loses, no
// climb down follows.
func TestTheFirstStepLooksBothWays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		chunks int64 // in the job, each lasting one measurement
		timed  []Setting
		next   string // after a clear miss up
	}{
		{"a job that holds it", stepMeasurements(3), []Setting{{2, 16}, {2, 32}, {2, 8}}, stepThreads},
		{"a job too short for it", stepMeasurements(3) - 1, []Setting{{2, 16}, {2, 32}}, stepDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := newSearch(coldProbe)
			state.Best.SamplesPerSec = 100_000 // a chunk lasts minMeasure
			bench := newFakeBench(steady(t, map[Setting]float64{{2, 16}: 100, {2, 32}: 70, {2, 8}: 95}), 2)
			r := newSearcher(Search{Samples: tc.chunks * bench.chunk, Share: 1000, Chunk: bench.chunk, MaxBatch: 4096, Candidates: []int{1, 2}}, state, bench)
			require.NoError(t, r.takeStep(32))
			require.Equal(t, tc.timed, trialsOf(state.Trials))
			require.Equal(t, len(tc.timed) == 3, state.LookedDown)
			require.Equal(t, tc.next, state.Step)
		})
	}
}

// Each setting is scored by its fastest measurement so far, so that an
// incumbent that times slow beside a step (a neighbour's burst) does not hand
// the step a win by noise.
func TestASettingIsScoredByItsFastestMeasurement(t *testing.T) {
	t.Parallel()
	state := newSearch(coldProbe)
	bench := newFakeBench(func(s Setting, n int) float64 {
		switch {
		case s == Setting{2, 16} && n > 2: // slow from its third chunk on
			return 60
		case s.Batch == 32:
			return 95 // would beat 60 by far, but loses to 100 by more than 3%
		}
		return 100
	}, 2)
	r := newSearcher(Search{Samples: 1e6, Share: 1000, Chunk: bench.chunk, MaxBatch: 4096, Candidates: []int{1, 2}}, state, bench)
	require.NoError(t, r.takeStep(32))
	require.Equal(t, Setting{2, 16}, Setting{state.Best.Threads, state.Best.BatchSize})
	require.InDelta(t, 100_000, state.Best.SamplesPerSec, 1e-3)
	require.Equal(t, 1, state.Misses)
	require.EqualValues(t, 32, state.Tried)
	require.Equal(t, stepUp, state.Step, "a miss within the noise: the climb looks one step further")
}

// A run loses at most its share of the job (at the best rate so far) plus
// what earlier runs banked, against what the incumbent would have run:
// without a share it measures nothing, and a series of small jobs completes
// the search a share at a time.
func TestSearchBudget(t *testing.T) {
	t.Parallel()
	speeds := map[Setting]float64{
		{2, 8}: 75, {2, 16}: 100, {2, 32}: 110, {2, 64}: 108, {2, 128}: 125, {2, 256}: 120, {2, 512}: 119, {1, 128}: 40,
	}
	for _, tc := range []struct {
		name    string
		samples int64 // 100 per millisecond at first
		share   float64
		runs    int // to complete the search; 0: never
	}{
		{"no share", 1e6, 0, 0},
		{"a share of a 10 s job completes in one run", 1e6, DefaultShare, 1},
		{"a share of a 1 s job takes some runs", 1e5, DefaultShare, 4},
		// Two chunks a run are fewer than a step measures: such jobs go on
		// with the default, within their share.
		{"a 0.1 s job has too few chunks for a step", 1e4, DefaultShare, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := newSearch(coldProbe)
			bench := newFakeBench(steady(t, speeds)) // a new process each run: sessions open anew
			bench.sessionMs = 25
			search := Search{Samples: tc.samples, Share: tc.share, Chunk: bench.chunk, MaxBatch: 4096, Candidates: []int{1, 2}}
			runs := 0
			for !state.Done() && runs < 100 {
				runs++
				bench.open, bench.ran = map[int]bool{2: true}, 0
				bench.chunks = int(tc.samples / bench.chunk)
				grant := min(tc.share*float64(tc.samples)/state.Best.SamplesPerSec+state.Bank, MaxGrant.Seconds())
				bank := state.Bank
				out, err := search.Run(state, bench)
				require.NoError(t, err)
				require.Equal(t, bench.ran > 0, out.Measured, "run %d", runs)
				if tc.share == 0 {
					require.False(t, out.Changed, "nothing to measure, nothing to bank")
					require.Zero(t, bench.ran)
				}
				// The estimate only shrinks as the best rate grows, so the
				// grant at the start bounds the spending, within what one
				// chunk of a setting not measured before loses beyond
				// assumedLoss; the run banks what its grant at the end leaves.
				overrun := (125.0/40 - 1 - assumedLoss) * float64(bench.chunk) / 125 / 1000
				require.LessOrEqual(t, out.Spent.Seconds(), grant+overrun, "run %d", runs)
				if !state.Done() {
					left := min(tc.share*float64(tc.samples)/state.Best.SamplesPerSec+bank, MaxGrant.Seconds()) - out.Spent.Seconds()
					require.InDelta(t, max(0, left), state.Bank, 1e-9, "run %d banks the rest", runs)
					require.LessOrEqual(t, state.Bank, MaxGrant.Seconds())
				}
			}
			if tc.runs == 0 {
				require.False(t, state.Done())
				require.Equal(t, Setting{2, 16}, Setting{state.Best.Threads, state.Best.BatchSize}, "no step completed")
				return
			}
			require.True(t, state.Done())
			require.Equal(t, tc.runs, runs)
			require.Equal(t, Setting{2, 128}, Setting{state.Best.Threads, state.Best.BatchSize}, "the same choice at any pace")
		})
	}
}

// A measurement of a light model runs chunks until they last minMeasure.
func TestAMeasurementLastsMinMeasure(t *testing.T) {
	t.Parallel()
	state := newSearch(coldProbe)
	state.Step = stepDown
	bench := newFakeBench(func(Setting, int) float64 { return 100 }, 2)
	bench.chunk = 1000 // 10 ms
	r := newSearcher(Search{Samples: 1e6, Share: 1000, Chunk: bench.chunk, MaxBatch: 4096, Candidates: []int{2}}, state, bench)
	require.NoError(t, r.takeStep(8))
	require.Equal(t, map[Setting]int{{2, 16}: 9, {2, 8}: 9}, bench.measurements, "three measurements of three chunks each")
	require.InDelta(t, 100_000, state.Best.SamplesPerSec, 1e-3)
}

// A step's chunks are charged against the incumbent's measurement beside
// them, not against its fastest: on a machine that slows every other chunk
// by a third, the steps are charged what they lose within one busy chunk's
// noise (where a pair drew different loads; as rounds alternate, the pairs'
// errors cancel). Charged against the incumbent's fastest, every busy chunk
// of a step paid the noise: 61 ms here, for 16 ms lost.
func TestAStepIsChargedAgainstTheIncumbentBesideIt(t *testing.T) {
	t.Parallel()
	state := newSearch(coldProbe)
	var bench *fakeBench
	var lost time.Duration // what the steps' chunks took beyond the incumbent's under the same load
	bench = newFakeBench(func(s Setting, _ int) float64 {
		speed, incumbent := map[int64]float64{8: 90, 16: 100, 32: 95}[s.Batch], 100.0
		if bench.ran%2 == 0 {
			speed, incumbent = speed*2/3, incumbent*2/3
		}
		lost += ms(float64(bench.chunk)/speed - float64(bench.chunk)/incumbent)
		return speed
	}, 2)
	bench.chunk = 3000 // 30 ms quiet, 45 ms busy: one chunk a measurement
	search := Search{Samples: 1e6, Share: 1000, Chunk: bench.chunk, MaxBatch: 32, Candidates: []int{2}}
	out, err := search.Run(state, bench)
	require.NoError(t, err)
	require.True(t, state.Done())
	require.EqualValues(t, 16, state.Best.BatchSize)
	busyNoise := ms(float64(bench.chunk)/100*3/2 - float64(bench.chunk)/100)
	require.InDelta(t, lost.Seconds(), out.Spent.Seconds(), busyNoise.Seconds()+1e-9, "charged %v, lost %v", out.Spent, lost)
}

// A job that runs out of chunks stops the search where it is; the next run
// goes on from there.
func TestAJobWithoutChunksLeftStopsTheSearch(t *testing.T) {
	t.Parallel()
	state := newSearch(coldProbe)
	bench := newFakeBench(func(s Setting, _ int) float64 { return float64(s.Batch) }, 2)
	bench.chunks = 8
	search := Search{Samples: 1e6, Share: 1000, Chunk: bench.chunk, MaxBatch: 4096, Candidates: []int{2}}
	out, err := search.Run(state, bench)
	require.NoError(t, err)
	require.True(t, out.Measured)
	require.False(t, state.Done())
	require.Equal(t, 8, bench.ran)
	// A chunk to warm up, the incumbent, then a step to 32 beside 8 (a clear win and a clear
	// miss after two chunks of each), then the first chunk of a step to 64.
	require.Equal(t, []Setting{{2, 16}, {2, 32}, {2, 8}, {2, 64}}, trialsOf(state.Trials), "the step cut short keeps what it measured")
	require.EqualValues(t, 32, state.Best.BatchSize, "a step cut short moves nothing")

	bench.ran, bench.chunks = 0, 0
	_, err = search.Run(state, bench)
	require.NoError(t, err)
	require.True(t, state.Done())
	require.EqualValues(t, 4096, state.Best.BatchSize)
}

// What one run may spend, and bank, is capped by MaxGrant.
func TestGrantIsCapped(t *testing.T) {
	t.Parallel()
	state := newSearch(coldProbe)
	state.Bank = 60
	bench := newFakeBench(func(Setting, int) float64 { return 100 }, 2)
	search := Search{Samples: 1e9, Share: DefaultShare, Chunk: bench.chunk, MaxBatch: 1, Candidates: []int{2}}
	// No batch to try: the climbs end at once, the search completes and
	// banks nothing.
	out, err := search.Run(state, bench)
	require.NoError(t, err)
	require.True(t, out.Changed)
	require.True(t, state.Done())
	require.Zero(t, state.Bank)

	state = newSearch(time.Hour) // so slow a rate that no step is affordable, and a job of days
	state.Bank = 60
	bench.ran, bench.chunks = 1, 1 // and no chunk left to correct it
	out, err = Search{Samples: 1e6, Share: DefaultShare, Chunk: bench.chunk, MaxBatch: 4096, Candidates: []int{1, 2}}.Run(state, bench)
	require.NoError(t, err)
	require.True(t, out.Changed)
	require.Equal(t, MaxGrant.Seconds(), state.Bank)
}

// A search resumes where it ran on the same device; otherwise a new one
// starts from the probe: all cores at the start batch, at the probe's rate.
func TestResume(t *testing.T) {
	t.Parallel()
	cached := &State{Device: "cpu", Step: stepUp, Start: 16, Best: manifest.Trial{BatchSize: 32, Threads: 1, SamplesPerSec: 5}}
	state, fresh := Resume(cached, "cpu", 2, 16, ms(0.16), 4096)
	require.False(t, fresh)
	require.Same(t, cached, state)

	for _, other := range []*State{nil, {Device: "cuda", Step: stepUp, Start: 16}, {Device: "cpu", Step: stepUp}} {
		state, fresh := Resume(other, "cpu", 2, 16, 12*time.Millisecond, 4096)
		require.True(t, fresh)
		require.Equal(t, &State{Device: "cpu", Step: stepUp, Start: 16,
			Best: manifest.Trial{BatchSize: 16, Threads: 2, SamplesPerSec: 16 / 0.012}}, state)
	}
}

// The search starts at batch 16, or, for a model so light that 16 samples
// run in under StartRun, at a batch that takes that long.
func TestStartBatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		probe time.Duration // for 16 samples
		limit int64
		want  int64
	}{
		{12 * time.Millisecond, 4096, 16}, // a classifier
		{4 * time.Millisecond, 4096, 16},
		{time.Millisecond, 4096, 64},
		{300 * time.Microsecond, 4096, 256},
		{70 * time.Microsecond, 4096, 1024}, // an MLP
		{2 * time.Microsecond, 4096, 4096},  // never past the limit
		{12 * time.Millisecond, 8, 8},
	} {
		require.Equal(t, tc.want, StartBatch(16, tc.probe, tc.limit), "%v", tc)
	}
}

func TestThreadCandidates(t *testing.T) {
	t.Parallel()
	for cpus, want := range map[int][]int{1: {1}, 2: {1, 2}, 3: {1, 2, 3}, 4: {1, 2, 3, 4}, 16: {1, 8, 15, 16}} {
		require.Equal(t, want, ThreadCandidates(cpus), "%d cpus", cpus)
	}
}

// The cached state's format is Version's: a change here needs a new
// Version.
func TestStateFormat(t *testing.T) {
	t.Parallel()
	const cached = `{"device":"cpu","best":{"batch_size":64,"threads":2,"samples_per_sec":1500},` +
		`"trials":[{"batch_size":64,"threads":2,"samples_per_sec":1500}],"step":"up","start":16,` +
		`"compared":true,"misses":1,"tried":128,"moved":true,"looked_down":true,"bank_seconds":0.25}`
	var state State
	require.NoError(t, json.Unmarshal([]byte(cached), &state))
	best := manifest.Trial{BatchSize: 64, Threads: 2, SamplesPerSec: 1500}
	require.Equal(t, State{Device: "cpu", Best: best, Trials: []manifest.Trial{best}, Step: stepUp, Start: 16,
		Compared: true, Misses: 1, Tried: 128, Moved: true, LookedDown: true, Bank: 0.25}, state)
	data, err := json.Marshal(state)
	require.NoError(t, err)
	require.JSONEq(t, cached, string(data))
	require.Equal(t, 4, Version)
}
