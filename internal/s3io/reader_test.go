package s3io

// The input reader against a hand fake of S3's GetObject, for what S3
// emulators cannot do on cue: hold GETs to count them in flight, fail one
// part, break a body half way. worker/readahead_bench_test.go runs it over
// HTTP.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/testenv"
)

// fakeObject serves one object's ranged GETs as S3 does (If-Match checked)
// and records them. Objects' other methods are not used by the reader.
type fakeObject struct {
	Objects
	data []byte
	etag string
	// GetFn, if set, runs first for each GET (n counts GETs from 1): an
	// error fails the GET, a nil error serves it.
	GetFn func(ctx context.Context, n int, rng string) error
	// BreakFn, if set, says whether this GET's body breaks half way.
	BreakFn func(rng string) bool

	mu            sync.Mutex
	gets          []string // ranges, in order
	ifMatch       []string
	inFlight, max int              // GETs whose body is not closed yet
	buffers       map[uintptr]bool // the reader's buffers the bodies were read into, by last byte
	maxParts      int              // the most parts the reader held at once, seen from GETs
	reader        *RangeReader     // set by the test, to look into
}

func newFake(size int) *fakeObject {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	return &fakeObject{data: data, etag: `"v1"`, buffers: map[uintptr]bool{}}
}

func (f *fakeObject) open(ctx context.Context, partBytes int64, concurrency int) *RangeReader {
	r := (&Store{S3: f, Bucket: "b"}).Reader(ctx, "inputs/x.npy", f.etag, int64(len(f.data)), partBytes, concurrency)
	f.mu.Lock()
	f.reader = r
	f.mu.Unlock()
	return r
}

func responseError(status int, code string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      &smithy.GenericAPIError{Code: code, Message: code},
	}}
}

func (f *fakeObject) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	rng := aws.ToString(in.Range)
	f.mu.Lock()
	f.gets = append(f.gets, rng)
	f.ifMatch = append(f.ifMatch, aws.ToString(in.IfMatch))
	n := len(f.gets)
	f.inFlight++
	f.max = max(f.max, f.inFlight)
	if f.reader != nil {
		f.reader.mu.Lock()
		f.maxParts = max(f.maxParts, len(f.reader.parts))
		f.reader.mu.Unlock()
	}
	f.mu.Unlock()
	done := func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}
	var err error
	if f.GetFn != nil {
		err = f.GetFn(ctx, n, rng)
	}
	var from, to int
	if _, perr := fmt.Sscanf(rng, "bytes=%d-%d", &from, &to); err == nil && (perr != nil || from > to || to >= len(f.data)) {
		err = responseError(http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
	}
	if err == nil && aws.ToString(in.IfMatch) != f.etag {
		err = responseError(http.StatusPreconditionFailed, "PreconditionFailed")
	}
	if err != nil {
		done()
		return nil, err
	}
	body := io.Reader(bytes.NewReader(f.data[from : to+1]))
	if f.BreakFn != nil && f.BreakFn(rng) {
		body = io.MultiReader(io.LimitReader(body, int64(to+1-from)/2), brokenReader{})
	}
	return &s3.GetObjectOutput{Body: &fakeBody{Reader: body, f: f, done: sync.OnceFunc(done)}}, nil
}

type brokenReader struct{}

func (brokenReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

type fakeBody struct {
	io.Reader
	f    *fakeObject
	done func()
}

func (b *fakeBody) Read(p []byte) (int, error) {
	if len(p) > 0 {
		b.f.mu.Lock()
		// io.ReadFull passes the rest of the reader's buffer: its last byte names the buffer.
		b.f.buffers[uintptr(unsafe.Pointer(&p[len(p)-1]))] = true
		b.f.mu.Unlock()
	}
	return b.Reader.Read(p)
}

func (b *fakeBody) Close() error { b.done(); return nil }

func (f *fakeObject) inFlightNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

func (f *fakeObject) stats() (gets []string, maxInFlight, buffers, maxParts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.gets...), f.max, len(f.buffers), f.maxParts
}

// The engine's reads: the .npy header and a probe sample at the start, then
// chunks front to back from a chunk on (0, or where a resume starts).
func engineReads(size, chunk, from int64) [][2]int64 {
	reads := [][2]int64{{0, 10}, {10, 118}, {128, 4096}}
	for off := 128 + from*chunk; off < size; off += chunk {
		reads = append(reads, [2]int64{off, min(chunk, size-off)})
	}
	return reads
}

func TestReadAheadReadsExactlyTheBytesAsked(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	for _, c := range []struct {
		name        string
		size        int
		part        int64
		concurrency int
		reads       [][2]int64 // offset, length
	}{
		{"engine-like, chunks across parts", 20*mib + 12345, 1 * mib, 4, engineReads(20*mib+12345, 3*mib+17, 0)},
		{"chunks smaller than parts", 9*mib + 1, 4 * mib, 2, engineReads(9*mib+1, mib/3, 0)},
		{"one part at a time", 5 * mib, mib, 1, engineReads(5*mib, mib, 0)},
		{"smaller than the head", 5000, mib, 4, [][2]int64{{0, 10}, {10, 4990}, {4000, 1000}, {0, 5000}}},
		{"back to the start and jumps", 12 * mib, mib, 3,
			[][2]int64{{0, 10}, {200, 5 * mib}, {0, 3 * mib}, {9 * mib, 2*mib + 5}, {mib - 3, 6}, {12*mib - 1, 1}}},
		{"windowed: each read overlaps the last", 8 * mib, mib, 4,
			[][2]int64{{128, 3 * mib}, {128 + 2*mib, 3 * mib}, {128 + 4*mib, 3 * mib}, {128 + 6*mib, 2*mib - 128}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(c.size)
			r := f.open(t.Context(), c.part, c.concurrency)
			defer r.Close()
			for _, rd := range c.reads {
				p := make([]byte, rd[1])
				n, err := r.ReadAt(p, rd[0])
				require.NoError(t, err, "read %d at %d", rd[1], rd[0])
				require.EqualValues(t, rd[1], n)
				require.True(t, bytes.Equal(f.data[rd[0]:rd[0]+rd[1]], p), "bytes %d-%d", rd[0], rd[0]+rd[1])
			}
			_, _, _, maxParts := f.stats()
			require.LessOrEqual(t, maxParts, c.concurrency, "the window never holds more than concurrency parts")
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, m := range f.ifMatch {
				require.Equal(t, f.etag, m, "every GET is pinned to the version the job started on")
			}
		})
	}
}

func TestReadAheadAtTheEndOfTheObject(t *testing.T) {
	t.Parallel()
	f := newFake(3<<20 + 7)
	r := f.open(t.Context(), 1<<20, 2)
	p := make([]byte, 100)
	n, err := r.ReadAt(p, int64(len(f.data))-40)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, 40, n)
	require.Equal(t, f.data[len(f.data)-40:], p[:40])
	n, err = r.ReadAt(p, int64(len(f.data)))
	require.ErrorIs(t, err, io.EOF)
	require.Zero(t, n)
	n, err = r.ReadAt(nil, 5)
	require.NoError(t, err)
	require.Zero(t, n)
}

// A front-to-back read GETs the head once and every part once; a resumed
// one skips the parts before its first chunk.
func TestReadAheadGetsEachPartOnce(t *testing.T) {
	t.Parallel()
	const part, size, chunk = 1 << 20, 16<<20 + 100, 3<<20 + 5
	for _, from := range []int64{0, 3} {
		t.Run(fmt.Sprintf("from chunk %d", from), func(t *testing.T) {
			t.Parallel()
			f := newFake(size)
			r := f.open(t.Context(), part, 4)
			defer r.Close()
			for _, rd := range engineReads(size, chunk, from) {
				_, err := r.ReadAt(make([]byte, rd[1]), rd[0])
				require.NoError(t, err)
			}
			gets, _, _, _ := f.stats()
			want := []string{"bytes=0-1048575"} // the head, for the header and probe reads
			for i := (128 + from*chunk) / part; i*part < size; i++ {
				want = append(want, fmt.Sprintf("bytes=%d-%d", i*part, min((i+1)*part, size)-1))
			}
			require.ElementsMatch(t, want, gets)
		})
	}
}

// A reader kept within a shard's bytes fetches no part past them ahead of
// time, and still reads past them when asked (a Parquet footer, say).
func TestReadAheadWithinAShardStopsAtItsEnd(t *testing.T) {
	t.Parallel()
	const part, size = 1 << 20, 16 << 20
	f := newFake(size)
	r := f.open(t.Context(), part, 8).Within(5<<20 + 10)
	defer r.Close()
	for off := int64(2 << 20); off < 5<<20+10; off += 1 << 19 {
		_, err := r.ReadAt(make([]byte, 1<<19), off)
		require.NoError(t, err)
	}
	gets, _, _, _ := f.stats()
	require.ElementsMatch(t, []string{"bytes=2097152-3145727", "bytes=3145728-4194303", "bytes=4194304-5242879", "bytes=5242880-6291455"}, gets,
		"parts 2 to 5 only, not the 8 a window holds")
	_, err := r.ReadAt(make([]byte, 100), size-100)
	require.NoError(t, err, "a read past the shard still reads")
}

// The reader keeps concurrency GETs in flight and no more, and reads into
// no more than concurrency buffers however long the object.
func TestReadAheadKeepsConcurrencyGETsInFlightInBoundedMemory(t *testing.T) {
	t.Parallel()
	// Parts past the head, which the first reads of a job fetch on its own.
	const part, parts, concurrency = 64 << 10, 40, 4
	f := newFake(headBytes + part*parts)
	started, gate := make(chan int, parts+1), make(chan struct{})
	f.GetFn = func(ctx context.Context, n int, _ string) error {
		started <- n
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := f.open(t.Context(), part, concurrency)
	defer r.Close()
	read := make(chan error, 1)
	go func() {
		for off := int64(headBytes); off < int64(len(f.data)); off += 3 * part / 2 { // reads across parts, as chunks do
			p := make([]byte, min(3*part/2, int64(len(f.data))-off))
			if _, err := r.ReadAt(p, off); err != nil {
				read <- err
				return
			}
			if !bytes.Equal(f.data[off:off+int64(len(p))], p) {
				read <- fmt.Errorf("bytes at %d differ", off)
				return
			}
		}
		read <- nil
	}()
	for range concurrency {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the window's GETs did not start together")
		}
	}
	require.Equal(t, concurrency, f.inFlightNow(), "the whole window is fetched at once")
	close(gate) // from now on GETs are served as they come
	require.NoError(t, <-read)
	gets, maxInFlight, buffers, maxParts := f.stats()
	require.Len(t, gets, parts, "each part once")
	require.Equal(t, concurrency, maxInFlight)
	require.LessOrEqual(t, maxParts, concurrency)
	require.LessOrEqual(t, buffers, concurrency+1, "buffers are reused: memory is the window, not the object")
}

func TestReadAheadSurfacesAPartsErrorToTheReadThatNeedsIt(t *testing.T) {
	t.Parallel()
	const part = 1 << 20
	badPart := fmt.Sprintf("bytes=%d-%d", 5*part, 6*part-1)
	for _, c := range []struct {
		name  string
		err   error
		check func(t *testing.T, err error)
	}{
		{"denied", responseError(http.StatusForbidden, "AccessDenied"), func(t *testing.T, err error) {
			require.True(t, awserr.IsDenied(err))
			var d *awserr.DeniedError
			require.ErrorAs(t, err, &d)
			require.Equal(t, "s3:GetObject", d.Action)
			require.Equal(t, "s3://b/inputs/x.npy", d.Resource)
		}},
		{"replaced: the ETag no longer matches", responseError(http.StatusPreconditionFailed, "PreconditionFailed"), func(t *testing.T, err error) {
			require.Equal(t, http.StatusPreconditionFailed, awserr.HTTPStatus(err))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(8 * part)
			var mu sync.Mutex
			tries := 0
			f.GetFn = func(_ context.Context, _ int, rng string) error {
				if rng != badPart {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				tries++
				return c.err
			}
			r := f.open(t.Context(), part, 3)
			defer r.Close()
			var failed int64 = -1
			for off := int64(0); off < 8*part; off += part / 2 {
				p := make([]byte, part/2)
				if _, err := r.ReadAt(p, off); err != nil {
					failed = off
					c.check(t, err)
					break
				}
				require.Equal(t, f.data[off:off+part/2], p)
			}
			require.EqualValues(t, 5*part, failed, "the reads before the bad part succeed; the first that needs it fails")
			mu.Lock()
			require.Equal(t, 1, tries, "not retried")
			mu.Unlock()
		})
	}
}

// Transient failures (a 503, a body cut half way) are retried per part.
func TestReadAheadRetriesATransientFailureOfAPart(t *testing.T) {
	t.Parallel()
	const part = 1 << 20
	f := newFake(6 * part)
	var mu sync.Mutex
	failed := map[string]bool{}
	once := func(rng string, i int64) bool { // the first GET of part i
		mu.Lock()
		defer mu.Unlock()
		if rng == fmt.Sprintf("bytes=%d-%d", i*part, (i+1)*part-1) && !failed[rng] {
			failed[rng] = true
			return true
		}
		return false
	}
	f.GetFn = func(_ context.Context, _ int, rng string) error {
		if once(rng, 2) {
			return responseError(http.StatusServiceUnavailable, "SlowDown")
		}
		return nil
	}
	f.BreakFn = func(rng string) bool { return once(rng, 4) }
	r := f.open(t.Context(), part, 3)
	defer r.Close()
	p := make([]byte, 6*part-100)
	n, err := r.ReadAt(p, 100)
	require.NoError(t, err)
	require.Equal(t, len(p), n)
	require.True(t, bytes.Equal(f.data[100:], p))
	gets, _, _, _ := f.stats()
	require.Len(t, gets, 6+2, "six parts, two of them twice")
}

func TestReadAheadStopsItsGETsWhenTheJobEndsOrOnClose(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"job context cancelled", "closed"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			const part = 1 << 20
			f := newFake(20 * part)
			started := make(chan int, 20)
			f.GetFn = func(ctx context.Context, _ int, _ string) error {
				started <- 1
				<-ctx.Done() // S3 never answers
				return ctx.Err()
			}
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			r := f.open(ctx, part, 4)
			read := make(chan error, 1)
			go func() {
				_, err := r.ReadAt(make([]byte, 3*part), 2*part)
				read <- err
			}()
			for range 4 {
				<-started
			}
			stopped := errors.New("job over")
			if how == "closed" {
				r.Close()
			} else {
				cancel(stopped)
			}
			select {
			case err := <-read:
				require.Error(t, err)
				if how == "closed" {
					require.ErrorIs(t, err, errReaderClosed)
				} else {
					require.ErrorIs(t, err, stopped, "the job's cause")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the read did not return")
			}
			// Every GET returns: no goroutine is left behind.
			testenv.Eventually(t, "every GET to return", 10*time.Second, func() bool { return f.inFlightNow() == 0 })
			_, err := r.ReadAt(make([]byte, 10), 9*part)
			require.Error(t, err, "no reads after the end")
		})
	}
}

// Concurrent reads of random ranges (io.ReaderAt allows it) all see the
// object's bytes, whatever the window does meanwhile.
func TestReadAheadConcurrentRandomReads(t *testing.T) {
	t.Parallel()
	const part, size = 64 << 10, 3<<20 + 999
	f := newFake(size)
	r := f.open(t.Context(), part, 3)
	defer r.Close()
	errs := make(chan error, 4)
	for g := range cap(errs) {
		go func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for range 50 {
				off := rnd.Int64N(size)
				p := make([]byte, rnd.Int64N(4*part)+1)
				n, err := r.ReadAt(p, off)
				short := int64(len(p)) > size-off
				switch {
				case short && !errors.Is(err, io.EOF), !short && err != nil:
					errs <- fmt.Errorf("read %d at %d: %d, %v", len(p), off, n, err)
					return
				case !bytes.Equal(f.data[off:off+int64(n)], p[:n]):
					errs <- fmt.Errorf("read %d at %d: wrong bytes", len(p), off)
					return
				}
			}
			errs <- nil
		}()
	}
	for range cap(errs) {
		require.NoError(t, <-errs)
	}
}
