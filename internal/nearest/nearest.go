// Package nearest suggests the name a user probably meant: a setting, a
// column, a model input.
package nearest

import (
	"slices"
	"strings"
)

// Names returns up to n of have, closest to want first: the fewest
// single-letter edits, ignoring case (cpuMaxTask: cpuMaxTasks), then the
// longest start shared with want (gpuTaskMem: gpuTaskMemory), then have's
// order.
func Names(want string, have []string, n int) []string {
	type candidate struct {
		name           string
		dist, sharedAt int
	}
	want = strings.ToLower(want)
	cands := make([]candidate, len(have))
	for i, h := range have {
		lower := strings.ToLower(h)
		cands[i] = candidate{h, distance(want, lower), sharedStart(want, lower)}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return b.sharedAt - a.sharedAt
	})
	out := make([]string, 0, min(n, len(cands)))
	for _, c := range cands[:min(n, len(cands))] {
		out = append(out, c.name)
	}
	return out
}

// distance is the Levenshtein distance between a and b, in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev, cur := make([]int, len(rb)+1), make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// sharedStart is how many leading bytes a and b share.
func sharedStart(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
