package worker

// The pure parts of multipart results: part sizes, the body reader, and
// which S3 answers mean an upload is gone.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"
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
		{name: "a small file is one part", fileBytes: header + 4000, rows: 1000, target: minPartBytes, parts: 1},
		{name: "1 GiB in 8 MiB chunks: a part a chunk", fileBytes: header + 1<<30, rows: 8 << 20, target: minPartBytes, parts: 128},
		{name: "1 GiB in 1 MiB chunks: parts of 5 chunks", fileBytes: header + 1<<30, rows: 1 << 20, target: minPartBytes, parts: 205},
		{name: "the largest file of 5 MiB parts", fileBytes: (maxParts - 1) * minPartBytes, rows: 1 << 20, target: minPartBytes, parts: maxParts - 1},
		{name: "a larger one needs larger parts", fileBytes: maxParts * minPartBytes, rows: 1 << 20, target: minPartBytes + 525, parts: 8_334},
		{name: "1 TiB in 1 MiB chunks", fileBytes: 1 << 40, rows: 1 << 20, target: 109_962_159, parts: 9_987},
		{name: "5 TiB in 3 MiB chunks", fileBytes: 5 << 40, rows: 3 << 20, target: 549_810_795, parts: 9_987},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			target := partTarget(c.fileBytes)
			require.EqualValues(t, c.target, target)
			n, largest := parts(header, c.fileBytes, c.rows)
			require.EqualValues(t, c.parts, n)
			require.LessOrEqual(t, n, int64(maxParts))
			require.LessOrEqual(t, largest, partCapacity(target, header, c.rows, c.fileBytes), "the open part never grows past its buffer")
			require.LessOrEqual(t, largest, int64(maxPartBytes))
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

func TestSlicesReaderReadsAndSeeksLikeTheJoinedBytes(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		var slices [][]byte
		for range rng.IntN(5) {
			s := make([]byte, rng.IntN(40))
			for i := range s {
				s[i] = byte(rng.IntN(256))
			}
			slices = append(slices, s)
		}
		joined := bytes.Join(slices, nil)
		got, want := &slicesReader{slices: slices, size: int64(len(joined))}, bytes.NewReader(joined)
		for step := range 20 {
			if rng.IntN(4) == 0 {
				to := int64(rng.IntN(len(joined) + 1))
				off, whence := to, rng.IntN(3)
				switch whence {
				case io.SeekCurrent:
					cur, _ := want.Seek(0, io.SeekCurrent)
					off = to - cur
				case io.SeekEnd:
					off = to - int64(len(joined))
				}
				n, err := got.Seek(off, whence)
				require.NoError(t, err)
				require.Equal(t, to, n)
				_, _ = want.Seek(to, io.SeekStart)
				continue
			}
			a := make([]byte, rng.IntN(30))
			b := make([]byte, len(a))
			n, err := got.Read(a)
			m, werr := want.Read(b)
			require.Equal(t, m, n, "trial %d step %d", trial, step)
			require.Equal(t, werr, err, "trial %d step %d", trial, step)
			require.Equal(t, b[:m], a[:n], "trial %d step %d", trial, step)
		}
	}
	_, err := (&slicesReader{}).Seek(-1, io.SeekStart)
	require.Error(t, err)
}

func TestWhichAnswersMeanTheUploadIsGone(t *testing.T) {
	t.Parallel()
	answer := func(status int, code string) error {
		return &smithy.OperationError{ServiceID: "S3", OperationName: "UploadPart", Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      &smithy.GenericAPIError{Code: code},
		}}
	}
	for _, c := range []struct {
		err  error
		gone bool
	}{
		{answer(http.StatusNotFound, "NoSuchUpload"), true},
		{answer(http.StatusBadRequest, "InvalidPart"), true},
		{fmt.Errorf("wrapped: %w", answer(http.StatusNotFound, "NoSuchUpload")), true},
		{answer(http.StatusBadRequest, "EntityTooSmall"), false},
		{answer(http.StatusInternalServerError, "InternalError"), false},
		{answer(http.StatusForbidden, "AccessDenied"), false},
		{errors.New("connection reset"), false},
	} {
		require.Equal(t, c.gone, uploadGone(c.err), "%v", c.err)
	}
}
