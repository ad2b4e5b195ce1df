package results

// The pure part of .npy results: part sizes.

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/s3io"
)

// parts counts the parts of a file of fileBytes (header included) in
// chunks of chunkRows, sealed as WriteChunk seals them: at the first chunk
// boundary where the open part reaches the target; the rest is the last part.
func parts(header, fileBytes, chunkRows int64) (n int64, largest int64) {
	target := partTarget(fileBytes)
	open := header
	for rows := fileBytes - header; rows > 0; {
		c := min(chunkRows, rows)
		open, rows = open+c, rows-c
		if open >= target {
			n, largest, open = n+1, max(largest, open), 0
		}
	}
	if open > 0 {
		n, largest = n+1, max(largest, open)
	}
	return n, largest
}

func TestPartsFitS3sLimitsWhateverTheOutputsSize(t *testing.T) {
	t.Parallel()
	const header = 128
	for _, c := range []struct {
		name            string
		fileBytes, rows int64
		target, parts   int64
	}{
		{name: "a small file is one part", fileBytes: header + 4000, rows: 1000, target: s3io.MinPartBytes, parts: 1},
		{name: "1 GiB in 8 MiB chunks: a part a chunk", fileBytes: header + 1<<30, rows: 8 << 20, target: s3io.MinPartBytes, parts: 128},
		{name: "1 GiB in 1 MiB chunks: parts of 5 chunks", fileBytes: header + 1<<30, rows: 1 << 20, target: s3io.MinPartBytes, parts: 205},
		{name: "the largest file of 5 MiB parts", fileBytes: (s3io.MaxParts - 1) * s3io.MinPartBytes, rows: 1 << 20, target: s3io.MinPartBytes, parts: s3io.MaxParts - 1},
		{name: "a larger one needs larger parts", fileBytes: s3io.MaxParts * s3io.MinPartBytes, rows: 1 << 20, target: s3io.MinPartBytes + 525, parts: 8_334},
		{name: "1 TiB in 1 MiB chunks", fileBytes: 1 << 40, rows: 1 << 20, target: 109_962_159, parts: 9_987},
		{name: "5 TiB in 3 MiB chunks", fileBytes: 5 << 40, rows: 3 << 20, target: 549_810_795, parts: 9_987},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			target := partTarget(c.fileBytes)
			require.EqualValues(t, c.target, target)
			n, largest := parts(header, c.fileBytes, c.rows)
			require.EqualValues(t, c.parts, n)
			require.LessOrEqual(t, n, int64(s3io.MaxParts))
			require.LessOrEqual(t, largest, partCapacity(target, header, c.rows, c.fileBytes), "the open part never grows past its buffer")
			require.LessOrEqual(t, largest, int64(s3io.MaxPartBytes))
		})
	}
}

func TestPartCapacityIsTheLargestPart(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ target, header, rows, file, want int64 }{
		{target: 5 << 20, header: 128, rows: 8 << 20, file: 1 << 30, want: 128 + 8<<20},
		{target: 5 << 20, header: 128, rows: 4 << 20, file: 1 << 30, want: 128 + 8<<20},
		{target: 5 << 20, header: 128, rows: 1 << 20, file: 1 << 30, want: 128 + 5<<20},
		{target: 5 << 20, header: 128, rows: 1 << 20, file: 3 << 20, want: 3 << 20},
		{target: 5 << 20, header: 128, rows: 0, file: 128, want: 128},
	} {
		require.Equal(t, c.want, partCapacity(c.target, c.header, c.rows, c.file), "%+v", c)
	}
}
