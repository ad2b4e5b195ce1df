package inference

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlanSampleShardsCoversEverySampleOnceAtAlignedStarts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		samples, align int64
		n              int
		want           []Range
	}{
		{samples: 100, align: 10, n: 4, want: []Range{rows(0, 20), rows(20, 50), rows(50, 70), rows(70, 100)}},
		{samples: 95, align: 10, n: 2, want: []Range{rows(0, 50), rows(50, 95)}},
		{samples: 25, align: 10, n: 8, want: []Range{rows(0, 10), rows(10, 20), rows(20, 25)}},
		{samples: 5, align: 4096, n: 4, want: []Range{rows(0, 5)}},
		{samples: 9, align: 1, n: 1, want: []Range{rows(0, 9)}},
	} {
		require.Equal(t, tc.want, PlanSampleShards(tc.samples, tc.n, tc.align), "%+v", tc)
	}
	for samples := int64(1); samples < 300; samples += 7 {
		for n := 1; n < 12; n++ {
			shards := PlanSampleShards(samples, n, 16)
			require.LessOrEqual(t, len(shards), n)
			next := int64(0)
			for _, s := range shards {
				require.Equal(t, next, s.From, "no sample lost or read twice")
				require.Zero(t, s.From%16, "shards start at whole batches")
				require.Greater(t, s.To, s.From, "no empty shard")
				next = s.To
			}
			require.Equal(t, samples, next)
		}
	}
}

func rows(from, to int64) Range { return Range{Unit: RangeRows, From: from, To: to} }
