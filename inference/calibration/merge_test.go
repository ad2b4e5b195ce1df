package calibration

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/manifest"
)

func TestMerge(t *testing.T) {
	t.Parallel()
	tr := func(batch int64, threads int, rate float64) manifest.Trial {
		return manifest.Trial{BatchSize: batch, Threads: threads, SamplesPerSec: rate}
	}
	state := func(step string, compared bool, best manifest.Trial, bank float64, trials ...manifest.Trial) *State {
		return &State{Device: "cpu", Step: step, Start: 16, Compared: compared, Best: best, Bank: bank, Trials: trials}
	}
	for _, tc := range []struct {
		name       string
		kept, mine *State
		want       *State
	}{
		{
			name: "nothing kept: mine",
			mine: state(stepDown, false, tr(16, 1, 100), 0.5, tr(16, 1, 100), tr(8, 1, 90)),
			want: state(stepDown, false, tr(16, 1, 100), 0.5, tr(16, 1, 100), tr(8, 1, 90)),
		},
		{
			name: "nothing of mine: what is kept",
			kept: state(stepUp, false, tr(16, 1, 100), 0, tr(16, 1, 100)),
			want: state(stepUp, false, tr(16, 1, 100), 0, tr(16, 1, 100)),
		},
		{
			// Two runs went on from one kept state, each measured its own
			// step: the union keeps both.
			name: "the union of the trials, the position of the state further along",
			kept: state(stepDown, false, tr(8, 1, 130), 0, tr(16, 1, 100), tr(32, 1, 90), tr(8, 1, 130)),
			mine: state(stepUp, false, tr(16, 1, 105), 0.3, tr(16, 1, 105), tr(32, 1, 90)),
			want: state(stepDown, false, tr(8, 1, 130), 0, tr(16, 1, 105), tr(32, 1, 90), tr(8, 1, 130)),
		},
		{
			name: "a setting both measured keeps the faster rate, and Best its fastest",
			kept: state(stepUp, false, tr(32, 1, 120), 0, tr(32, 1, 150), tr(64, 1, 110)),
			mine: state(stepUp, false, tr(32, 1, 140), 0.2, tr(32, 1, 140), tr(64, 1, 125), tr(128, 1, 100)),
			want: state(stepUp, false, tr(32, 1, 150), 0.2, tr(32, 1, 150), tr(64, 1, 125), tr(128, 1, 100)),
		},
		{
			name: "at the same step, the state that measured more is further along",
			kept: state(stepUp, false, tr(64, 1, 160), 0.1, tr(16, 1, 100), tr(32, 1, 130), tr(64, 1, 160)),
			mine: state(stepUp, false, tr(32, 1, 135), 0.4, tr(16, 1, 100), tr(32, 1, 135)),
			want: state(stepUp, false, tr(64, 1, 160), 0.1, tr(16, 1, 100), tr(32, 1, 135), tr(64, 1, 160)),
		},
		{
			name: "a tie goes to mine",
			kept: state(stepUp, false, tr(32, 1, 130), 0.1, tr(32, 1, 130)),
			mine: state(stepUp, false, tr(64, 1, 120), 0.4, tr(64, 1, 120)),
			want: state(stepUp, false, tr(64, 1, 120), 0.4, tr(64, 1, 120), tr(32, 1, 130)),
		},
		{
			name: "a completed search is further along than any other",
			kept: state(stepDone, true, tr(32, 2, 200), 0, tr(32, 1, 130), tr(32, 2, 200)),
			mine: state(stepUp, true, tr(64, 2, 190), 0.4, tr(32, 2, 180), tr(64, 2, 190), tr(128, 2, 170), tr(256, 2, 150)),
			want: state(stepDone, true, tr(32, 2, 200), 0, tr(32, 1, 130), tr(32, 2, 200), tr(64, 2, 190), tr(128, 2, 170), tr(256, 2, 150)),
		},
		{
			name: "a climb after the thread comparison is further along than the comparison",
			kept: state(stepThreads, false, tr(32, 1, 130), 0.2, tr(32, 1, 130)),
			mine: state(stepDown, true, tr(32, 2, 180), 0, tr(32, 1, 125), tr(32, 2, 180)),
			want: state(stepDown, true, tr(32, 2, 180), 0, tr(32, 1, 130), tr(32, 2, 180)),
		},
		{
			name: "another device is another search: mine",
			kept: &State{Device: "cuda", Step: stepDone, Start: 64, Best: tr(512, 1, 9000), Trials: []manifest.Trial{tr(512, 1, 9000)}},
			mine: state(stepDown, false, tr(16, 1, 100), 0, tr(16, 1, 100)),
			want: state(stepDown, false, tr(16, 1, 100), 0, tr(16, 1, 100)),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kept, mine := clone0(tc.kept), clone0(tc.mine)
			require.Equal(t, tc.want, Merge(tc.kept, tc.mine))
			require.Equal(t, kept, tc.kept, "kept modified")
			require.Equal(t, mine, tc.mine, "mine modified")
		})
	}
}

// Whichever of two concurrent savers saves last, the trials are the same.
func TestMergeKeepsEveryTrialInEitherOrder(t *testing.T) {
	t.Parallel()
	a := &State{Device: "cpu", Step: stepUp, Start: 16, Best: manifest.Trial{BatchSize: 32, Threads: 1, SamplesPerSec: 130},
		Trials: []manifest.Trial{{BatchSize: 16, Threads: 1, SamplesPerSec: 100}, {BatchSize: 32, Threads: 1, SamplesPerSec: 130}}}
	b := &State{Device: "cpu", Step: stepUp, Start: 16, Best: manifest.Trial{BatchSize: 16, Threads: 1, SamplesPerSec: 110},
		Trials: []manifest.Trial{{BatchSize: 16, Threads: 1, SamplesPerSec: 110}, {BatchSize: 8, Threads: 1, SamplesPerSec: 90}}}
	ab, ba := Merge(a, b), Merge(b, a)
	require.ElementsMatch(t, ab.Trials, ba.Trials)
	require.Len(t, ab.Trials, 3)
	require.Equal(t, 110.0, RateOf(ab.Trials, 16, 1))
}

func clone0(s *State) *State {
	if s == nil {
		return nil
	}
	return clone(s)
}
