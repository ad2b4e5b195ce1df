package inference

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                           string
		samples, batch, chunk, sampleB int64
		wantChunk, wantChunks          int64
	}{
		{"chunk rounds up to whole batches", 1000, 64, 100, 4, 128, 8},
		{"exact multiple kept", 1000, 10, 100, 4, 100, 10},
		{"default is about 8 MiB", 1 << 20, 16, 0, 1024, 8192, 128},
		{"default is at least one batch", 100, 16, 0, 1 << 30, 16, 7},
		{"never more than the file, in whole batches", 10, 4, 0, 4, 12, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPlan(tc.samples, tc.batch, tc.chunk, tc.sampleB)
			require.Equal(t, tc.wantChunk, p.ChunkSamples)
			require.Equal(t, tc.wantChunks, p.Chunks())
			require.Zero(t, p.ChunkSamples%tc.batch)
			// The chunks tile the samples exactly, in order.
			next := int64(0)
			for i := range p.Chunks() {
				start, end := p.Chunk(i)
				require.Equal(t, next, start)
				require.Greater(t, end, start)
				next = end
			}
			require.Equal(t, tc.samples, next)
		})
	}
}
