package s3io

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPlanPartsCutsAnyConcatenationIntoPartsS3Accepts checks planParts'
// rules on random segments: the parts are the segments' bytes in order,
// every part but the last is at least the minimum and none above the
// maximum, a copied part is one range, and a joined part reads no more
// than the minimum back from S3.
func TestPlanPartsCutsAnyConcatenationIntoPartsS3Accepts(t *testing.T) {
	t.Parallel()
	const minPart, maxPart = 50, 400
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 2000 {
		var segs []Segment
		var want []byte // the concatenation, one byte per position: segment index, offset mod 251
		for i := range rng.IntN(8) {
			if rng.IntN(5) == 0 {
				data := make([]byte, rng.IntN(30))
				for j := range data {
					data[j] = byte(200 + j%50)
				}
				segs, want = append(segs, Segment{Data: data}), append(want, data...)
				continue
			}
			from := int64(rng.IntN(20))
			to := from + int64([]int{0, 1, 10, 49, 50, 51, 99, 100, 399, 400, 401, 1200}[rng.IntN(12)])
			key := string(rune('a' + i))
			segs = append(segs, Segment{Key: key, From: from, To: to})
			for off := from; off < to; off++ {
				want = append(want, byte(i*31+int(off))%200)
			}
		}
		parts := planParts(segs, minPart, maxPart)
		var got []byte
		for i, p := range parts {
			var n, read int64
			for _, piece := range p.pieces {
				n += piece.size()
				if piece.Key == "" {
					got = append(got, piece.Data...)
					continue
				}
				read += piece.size()
				seg := int(piece.Key[0] - 'a')
				for off := piece.From; off < piece.To; off++ {
					got = append(got, byte(seg*31+int(off))%200)
				}
			}
			require.LessOrEqual(t, n, int64(maxPart), "trial %d part %d", trial, i)
			if i < len(parts)-1 {
				require.GreaterOrEqual(t, n, int64(minPart), "trial %d part %d of %d", trial, i, len(parts))
			}
			if p.copy {
				require.Len(t, p.pieces, 1)
				require.NotEmpty(t, p.pieces[0].Key)
			} else {
				require.LessOrEqual(t, read, int64(minPart), "a joined part reads at most the minimum")
			}
		}
		require.Equal(t, want, got, "trial %d", trial)
	}
}

func TestPlanPartsCopiesLargeRangesAndJoinsTheSmall(t *testing.T) {
	t.Parallel()
	header := Segment{Data: make([]byte, 10)}
	parts := planParts([]Segment{header, {Key: "a", From: 0, To: 300}, {Key: "b", From: 0, To: 20}, {Key: "c", From: 0, To: 900}}, 50, 400)
	// header + a[0,40) joined; a[40,300) copied; b + c[0,30) joined; c[30,900) copied in 3.
	require.Len(t, parts, 6)
	require.Equal(t, []Segment{header, {Key: "a", From: 0, To: 40}}, parts[0].pieces)
	require.Equal(t, assemblyPart{copy: true, pieces: []Segment{{Key: "a", From: 40, To: 300}}}, parts[1])
	require.Equal(t, []Segment{{Key: "b", From: 0, To: 20}, {Key: "c", From: 0, To: 30}}, parts[2].pieces)
	require.Equal(t, []Segment{{Key: "c", From: 30, To: 320}}, parts[3].pieces)
	require.Equal(t, []Segment{{Key: "c", From: 610, To: 900}}, parts[5].pieces)
}
