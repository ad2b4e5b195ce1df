package calibration

import "slices"

// Merge is the state that two runs' states of one search (one key) make
// together, where both may have resumed from the same kept state at once;
// mine is the one being saved. Neither run's trials are lost:
//
//   - Trials are the union by batch size and thread count; a setting both
//     measured keeps the faster rate, since the search scores a setting by
//     its fastest measurement so far (a neighbour's burst only slows a run).
//   - The search's position (Step, Start, Compared, Misses, Tried, Moved,
//     Bank and Best's setting) comes whole from the state further along,
//     mine on a tie: those fields make sense only together (Misses and
//     Tried count from Best's batch), and a mix of two could resume a climb
//     from a batch neither run stood on. The other's trials still serve: a later
//     step scores a setting by its fastest trial too (RateOf).
//   - Best's rate is its setting's fastest among the merged trials.
//   - Bank is the further state's, not the sum: both runs were granted the
//     bank they started from, and a sum would grant it twice.
//
// States that ran on different devices are not one search: mine wins.
// Neither argument is modified.
func Merge(kept, mine *State) *State {
	switch {
	case mine == nil && kept == nil:
		return nil
	case mine == nil:
		return clone(kept)
	case kept == nil || kept.Device != mine.Device || kept.Start == 0:
		return clone(mine)
	}
	ahead, behind := mine, kept
	if further(kept, mine) {
		ahead, behind = kept, mine
	}
	out := clone(ahead)
	for _, t := range behind.Trials {
		if i := trialIndex(out.Trials, t.BatchSize, t.Threads); i >= 0 {
			out.Trials[i].SamplesPerSec = max(out.Trials[i].SamplesPerSec, t.SamplesPerSec)
			continue
		}
		out.Trials = append(out.Trials, t)
	}
	out.Best.SamplesPerSec = max(out.Best.SamplesPerSec, RateOf(out.Trials, out.Best.BatchSize, out.Best.Threads))
	return out
}

// further says whether a is further along its search than b: done before
// not done, then by the steps' order (up, down, threads, and up and down
// again after a thread comparison that moved), then by how many settings it
// has measured.
func further(a, b *State) bool {
	if ra, rb := progress(a), progress(b); ra != rb {
		return ra > rb
	}
	return len(a.Trials) > len(b.Trials)
}

// progress ranks a state's position among the search's steps.
func progress(s *State) int {
	if s.Done() {
		return 6
	}
	rank := map[string]int{stepUp: 0, stepDown: 1, stepThreads: 2}[s.Step]
	if s.Compared {
		rank += 3
	}
	return rank
}

func clone(s *State) *State {
	c := *s
	c.Trials = slices.Clone(s.Trials)
	return &c
}
