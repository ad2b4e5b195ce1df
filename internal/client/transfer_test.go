package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	tm "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/awsenv"
)

const mib = 1 << 20

func TestPartSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		size, requested int64
		want            int64
		err             error
	}{
		{name: "empty", size: 0, want: DefaultPartSize},
		{name: "small", size: 17 * mib, want: DefaultPartSize},
		{name: "requested", size: 17 * mib, requested: 5 * mib, want: 5 * mib},
		{name: "just over 5 GB: the default fits", size: 6 << 30, want: DefaultPartSize},
		{name: "10,000 default parts exactly", size: MaxParts * DefaultPartSize, want: DefaultPartSize},
		{name: "one byte more grows a MiB", size: MaxParts*DefaultPartSize + 1, want: 9 * mib},
		{name: "100 GiB", size: 100 << 30, want: 11 * mib},
		{name: "a requested size too small for the file grows", size: 100 << 30, requested: 5 * mib, want: 11 * mib},
		{name: "a bigger requested size stays", size: 100 << 30, requested: 64 * mib, want: 64 * mib},
		{name: "5 TiB", size: 5 << 40, want: 525 * mib},
		{name: "the largest upload", size: MaxParts * MaxPartSize, want: MaxPartSize},
		{name: "too large", size: MaxParts*MaxPartSize + 1, err: ErrTooLarge},
		{name: "below S3's minimum", size: 17 * mib, requested: 5*mib - 1, err: ErrPartSize},
		{name: "above S3's maximum", size: 17 * mib, requested: MaxPartSize + 1, err: ErrPartSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := PartSize(tc.size, tc.requested)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, (tc.size+got-1)/got, int64(MaxParts), "fits in S3's part count")
			require.Zero(t, got%mib, "whole MiB")
		})
	}
}

func TestUploadConcurrencyBoundsWhatHugePartsBuffer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		requested int
		partSize  int64
		want      int
	}{
		{0, DefaultPartSize, DefaultConcurrency},
		{0, 200 * mib, 3}, // 5 parts buffered: within 1 GiB
		{0, 525 * mib, 1},
		{0, MaxPartSize, 1},
		{8, MaxPartSize, 8}, // asked for: the user's memory
	} {
		got := UploadConcurrency(tc.requested, tc.partSize)
		require.Equal(t, tc.want, got, "%d parts of %d MiB", tc.requested, tc.partSize/mib)
		if tc.requested == 0 && got > 1 {
			require.LessOrEqual(t, int64(got+2)*tc.partSize, int64(uploadMemory))
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{
		"5242880": 5 * mib, "5MiB": 5 * mib, "5mib": 5 * mib, "5M": 5 * mib, " 16 MiB ": 16 * mib, "1GiB": 1 << 30, "2g": 2 << 30,
		"64KiB": 64 << 10, "8MB": 8_000_000, "1GB": 1_000_000_000, "100B": 100,
	} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "MiB", "5 TB", "1.5GiB", "-5MiB", "5 mebibytes", "99999999999999999999"} {
		_, err := ParseSize(in)
		require.Error(t, err, in)
	}
}

func TestTransferValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Transfer{}.Validate())
	require.NoError(t, Transfer{PartSize: MinPartSize, Concurrency: MaxConcurrency}.Validate())
	require.ErrorIs(t, Transfer{PartSize: 1 * mib}.Validate(), ErrPartSize)
	require.Error(t, Transfer{Concurrency: MaxConcurrency + 1}.Validate())
	require.Error(t, Transfer{Concurrency: -1}.Validate())
}

func TestSizedReaderFailsAnInputThatShrank(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("x"), 1000)
	got, err := io.ReadAll(&sizedReader{r: iotest.OneByteReader(bytes.NewReader(data)), left: 1000})
	require.NoError(t, err)
	require.Equal(t, data, got)

	got, err = io.ReadAll(&sizedReader{r: bytes.NewReader(data), left: 600})
	require.NoError(t, err, "a file that grew: the size it had when the upload began")
	require.Len(t, got, 600)

	_, err = io.ReadAll(&sizedReader{r: bytes.NewReader(data), left: 1200})
	require.ErrorIs(t, err, ErrInputChanged)
	require.ErrorContains(t, err, "200 bytes short")
}

func TestProgressNeverGoesBack(t *testing.T) {
	t.Parallel()
	var got []int64
	l := &progressListener{file: "x", report: func(file string, done, total int64) {
		require.Equal(t, "x", file)
		require.Equal(t, int64(30), total)
		got = append(got, done)
	}}
	ctx := t.Context()
	l.OnObjectTransferStart(ctx, &tm.ObjectTransferStartEvent{TotalBytes: 30})
	// Parts 2 and 3 finish before part 1's report arrives.
	for _, done := range []int64{20, 30, 10} {
		l.OnObjectBytesTransferred(ctx, &tm.ObjectBytesTransferredEvent{BytesTransferred: done, TotalBytes: 30})
	}
	l.OnObjectTransferComplete(ctx, &tm.ObjectTransferCompleteEvent{BytesTransferred: 30, TotalBytes: 30})
	require.Equal(t, []int64{0, 20, 30}, got)
}

// fakeS3 answers the multipart and ranged-GET calls from scripted
// statuses, to inject faults moto cannot, and records what was asked.
type fakeS3 struct {
	mu       sync.Mutex
	aborts   []int // status of each AbortMultipartUpload, in turn (then 204)
	calls    []string
	object   []byte
	failFrom int64 // ranged GETs from this offset fail
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	q := r.URL.Query()
	fail := func(status int, code string) {
		w.WriteHeader(status)
		fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message></Error>", code, code)
	}
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		f.calls = append(f.calls, "CreateMultipartUpload")
		fmt.Fprint(w, "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>")
	case r.Method == http.MethodPut && q.Has("partNumber"):
		f.calls = append(f.calls, "UploadPart")
		fail(http.StatusInternalServerError, "InternalError")
	case r.Method == http.MethodDelete && q.Get("uploadId") == "u-1":
		f.calls = append(f.calls, "AbortMultipartUpload")
		if len(f.aborts) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		status := f.aborts[0]
		f.aborts = f.aborts[1:]
		fail(status, map[int]string{403: "AccessDenied", 404: "NoSuchUpload", 503: "SlowDown"}[status])
	case r.Method == http.MethodGet:
		var start, end int64
		_, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &start, &end)
		if err != nil || start >= f.failFrom {
			fail(http.StatusInternalServerError, "InternalError")
			return
		}
		end = min(end, int64(len(f.object))-1)
		w.Header().Set("ETag", `"e"`)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(f.object)))
		w.Header().Set("Content-Length", fmt.Sprint(end-start+1))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(f.object[start : end+1])
	default:
		fail(http.StatusBadRequest, "Unexpected")
	}
}

func (f *fakeS3) client(t *testing.T) *Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &Client{Target: Target{Bucket: "b"}, Transfer: Transfer{PartSize: MinPartSize, Concurrency: 1},
		S3: s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}, awsenv.EmulatorS3Options)}
}

func bigFile(t *testing.T, size int) string {
	path := filepath.Join(t.TempDir(), "in.bin")
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte{7}, size), 0o644))
	return path
}

// The transfer manager aborts a failed upload once; the client tries again
// until the upload is gone (or it may not abort it: then it says so).
func TestFailedUploadIsAbortedUntilItIsGone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		aborts     []int
		wantAborts int
		left       bool
	}{
		{name: "first-abort-works", aborts: nil, wantAborts: 2}, // the second finds nothing to abort (204 on AWS, or NoSuchUpload)
		{name: "network-back-later", aborts: []int{503, 503, 503}, wantAborts: 4},
		{name: "already-gone", aborts: []int{503, 404}, wantAborts: 2},
		{name: "denied", aborts: []int{403, 403}, wantAborts: 2, left: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeS3{aborts: tc.aborts}
			err := f.client(t).upload(t.Context(), bigFile(t, 12*mib), "inputs/in.bin")
			require.ErrorContains(t, err, "upload input")
			require.ErrorContains(t, err, "InternalError", "the cause is the failed part")
			require.Equal(t, tc.left, strings.Contains(err.Error(), "left for the bucket's lifecycle rule"), err.Error())
			var aborts int
			for _, c := range f.calls {
				if c == "AbortMultipartUpload" {
					aborts++
				}
			}
			require.Equal(t, tc.wantAborts, aborts, f.calls)
		})
	}
}

// A download that fails part way leaves nothing under the file's name (an
// earlier complete copy stays) and no .tmp.
func TestFailedDownloadLeavesNoPartialFile(t *testing.T) {
	t.Parallel()
	f := &fakeS3{object: bytes.Repeat([]byte{1}, 12*mib), failFrom: 2 * MinPartSize}
	c := f.client(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "probs.npy")
	require.NoError(t, os.WriteFile(path, []byte("an earlier download"), 0o644))

	err := c.download(t.Context(), "results/j/probs.npy", path)
	require.ErrorContains(t, err, "InternalError")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "an earlier download", string(got))
	require.NoFileExists(t, path+".tmp")

	f.failFrom = 1 << 62
	require.NoError(t, c.download(context.Background(), "results/j/probs.npy", path))
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, f.object, got)
	require.NoFileExists(t, path+".tmp")
}
