package s3io

// The pure parts of multipart uploads: the body reader, and which S3
// answers mean an upload is gone.

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
