package s3io

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/inferstack/inferstack/internal/awserr"
)

// The read-ahead defaults, chosen with BenchmarkReadAheadGrid: through
// connections shaped like S3's (40 MiB/s each, 20 ms to the first byte), 8
// GETs of 8 MiB in flight read 7x faster than one at a time, as fast as
// 16 MiB parts, and straight from memory no slower than one GET at a time.
// 8-16 MB is AWS's advice for ranged GETs; 8 at once stay within the SDK's
// default of 10 idle connections per host (more would reconnect), and the
// window stays at 64 MiB.
const (
	DefaultReadPartBytes   = 8 << 20
	DefaultReadConcurrency = 8
)

// headBytes is the start of the object fetched once, on its own, for the
// small reads that come first (the .npy header, the probe sample): on S3
// each request costs a round trip of tens of milliseconds.
const headBytes = 1 << 20

// errReaderClosed answers a read after Close.
var errReaderClosed = errors.New("input reader closed")

// RangeReader is one version of an object (every GET is If-Match its ETag)
// read through a window of parts that concurrent ranged GETs fetch ahead of
// its reader, shaped for how the inference engine reads its input.
//
// The engine reads a few small pieces at the start, then the input front to
// back, a chunk (about 8 MiB by default) per call, from its first chunk or,
// resuming, from a later one. Reads within the first headBytes come from one
// GET of the head. Any other read moves the window to the part that holds
// its first byte: parts [i, i+concurrency) are each fetched with one GET, all
// at once; as reads move on, the parts behind are dropped and the next ones
// fetched. One S3 connection gives 50-100 MB/s after tens of milliseconds to
// the first byte; throughput comes from concurrent GETs of 8-16 MB (AWS,
// "Performance guidelines for Amazon S3").
//
// Memory is bounded by the window: concurrency x partBytes (64 MiB by
// default) plus the head, whatever the object's size; buffers are reused. A
// read outside the window (a resume, a read back to the start) abandons its
// parts: their GETs are cancelled, their buffers freed as they unwind.
//
// A part's error is returned by the reads that need it, after awserr.Retry
// has given up on it. ReadAt is safe for concurrent use. The GETs stop when ctx
// ends or at Close.
type RangeReader struct {
	ctx  context.Context
	s    *Store
	key  string
	etag string
	size int64
	// partBytes and concurrency tune the read-ahead; 0 takes the defaults.
	partBytes   int64
	concurrency int
	// ahead, where set, ends the read-ahead (Within).
	ahead int64

	mu    sync.Mutex
	base  context.Context // ctx, cancelled by Close; nil until the first read
	stop  context.CancelFunc
	head  *part
	parts map[int64]*part // the window, by part index
	free  [][]byte        // buffers of dropped parts (all partBytes long)
}

// Reader opens one version of an object (etag) of size bytes for reads at
// any offset, fetched ahead in parts of partBytes, concurrency at once.
func (s *Store) Reader(ctx context.Context, key, etag string, size, partBytes int64, concurrency int) *RangeReader {
	return &RangeReader{ctx: ctx, s: s, key: key, etag: etag, size: size, partBytes: partBytes, concurrency: concurrency}
}

// part is a range of the object, fetched by one goroutine.
type part struct {
	off  int64
	data []byte
	done chan struct{} // closed once data or err is set

	// Under RangeReader.mu:
	err      error
	finished bool
	cancel   context.CancelFunc
	users    int  // reads copying from it
	dropped  bool // out of the window: its buffer goes back once finished and unused
}

var _ io.ReaderAt = (*RangeReader)(nil)

// ReadAt reads len(p) bytes at off, or up to the end of the object with io.EOF.
func (r *RangeReader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if off < 0 {
		return 0, fmt.Errorf("read at %d: negative offset", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), r.size)
	n := 0
	for pos := off; pos < end; {
		pt, err := r.acquire(pos, end)
		if err == nil {
			err = r.wait(pt)
			if err == nil {
				c := copy(p[pos-off:end-off], pt.data[pos-pt.off:])
				n, pos = n+c, pos+int64(c)
			}
			r.release(pt)
		}
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Close stops the reader's GETs and drops its parts; reads fail after it.
func (r *RangeReader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	r.stop()
	for i, pt := range r.parts {
		r.drop(i, pt)
	}
}

// init settles the defaults on first use. Under mu.
func (r *RangeReader) init() {
	if r.base != nil {
		return
	}
	if r.partBytes <= 0 {
		r.partBytes = DefaultReadPartBytes
	}
	if r.concurrency <= 0 {
		r.concurrency = DefaultReadConcurrency
	}
	r.base, r.stop = context.WithCancel(r.ctx)
	r.parts = map[int64]*part{}
}

// acquire returns the part holding pos for a read that ends at end: the head
// when the whole read lies in it, else the window's part, moving the window
// there. The caller must release it.
func (r *RangeReader) acquire(pos, end int64) (*part, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if r.base.Err() != nil {
		return nil, r.stopped()
	}
	var pt *part
	if headLen := min(headBytes, r.size); end <= headLen {
		if r.head == nil {
			r.head = r.start(0, make([]byte, headLen))
		}
		pt = r.head
	} else {
		pt = r.window(pos / r.partBytes)
	}
	pt.users++
	return pt, nil
}

// Within keeps the read-ahead before byte end (a shard's last): parts from
// there on are fetched only when a read needs them. Call it before reading.
func (r *RangeReader) Within(end int64) *RangeReader {
	r.ahead = end
	return r
}

// window makes parts [i, i+concurrency) the window, dropping any others and
// fetching those missing, and returns part i. Under mu.
func (r *RangeReader) window(i int64) *part {
	last := min(i+int64(r.concurrency), (r.size+r.partBytes-1)/r.partBytes)
	if r.ahead > 0 {
		last = min(last, max(i+1, (r.ahead+r.partBytes-1)/r.partBytes))
	}
	for j, pt := range r.parts {
		if j < i || j >= last {
			r.drop(j, pt)
		}
	}
	for j := i; j < last; j++ {
		if r.parts[j] == nil {
			off := j * r.partBytes
			r.parts[j] = r.start(off, r.buffer(min(r.partBytes, r.size-off)))
		}
	}
	return r.parts[i]
}

// buffer returns n bytes for a part, reusing a dropped part's. Under mu.
func (r *RangeReader) buffer(n int64) []byte {
	if n == r.partBytes && len(r.free) > 0 {
		b := r.free[len(r.free)-1]
		r.free = r.free[:len(r.free)-1]
		return b
	}
	return make([]byte, n)
}

// start fetches data's length of bytes at off into data. Under mu.
func (r *RangeReader) start(off int64, data []byte) *part {
	ctx, cancel := context.WithCancel(r.base)
	pt := &part{off: off, data: data, done: make(chan struct{}), cancel: cancel}
	go func() {
		err := r.fetch(ctx, pt.data, off)
		cancel()
		r.mu.Lock()
		pt.err, pt.finished = err, true
		r.recycle(pt)
		r.mu.Unlock()
		close(pt.done)
	}()
	return pt
}

// drop takes part i out of the window; its GET stops unless a read waits on it. Under mu.
func (r *RangeReader) drop(i int64, pt *part) {
	delete(r.parts, i)
	pt.dropped = true
	if pt.users == 0 {
		pt.cancel()
	}
	r.recycle(pt)
}

// recycle keeps a dropped part's buffer for the next part once nothing
// writes or reads it any more. Under mu.
func (r *RangeReader) recycle(pt *part) {
	if pt.dropped && pt.finished && pt.users == 0 && pt.data != nil {
		if int64(len(pt.data)) == r.partBytes && len(r.free) < r.concurrency {
			r.free = append(r.free, pt.data)
		}
		pt.data = nil
	}
}

// wait blocks until the part is fetched or the reader stops; a part that
// failed because the reader stopped reports why it stopped.
func (r *RangeReader) wait(pt *part) error {
	select {
	case <-pt.done:
		if pt.err == nil || r.base.Err() == nil {
			return pt.err
		}
	case <-r.base.Done():
	}
	return r.stopped()
}

// stopped says why the reader stopped: the job's end, or Close.
func (r *RangeReader) stopped() error {
	if r.ctx.Err() != nil {
		return context.Cause(r.ctx)
	}
	return errReaderClosed
}

// release ends a read's use of a part.
func (r *RangeReader) release(pt *part) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pt.users--
	if pt.users == 0 && pt.dropped && !pt.finished {
		pt.cancel()
	}
	r.recycle(pt)
}

// fetch reads len(p) bytes at off with one ranged GET, retried as every S3
// call is.
func (r *RangeReader) fetch(ctx context.Context, p []byte, off int64) error {
	rng := fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)
	err := awserr.Retry(ctx, func() error {
		out, err := r.s.S3.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(r.s.Bucket), Key: aws.String(r.key), IfMatch: aws.String(r.etag), Range: aws.String(rng),
		})
		if err != nil {
			return err
		}
		defer out.Body.Close() //nolint:errcheck // read-only
		if _, err := io.ReadFull(out.Body, p); err != nil {
			// If-Match pins the object, so a short body is a broken
			// connection, not a shorter file: worth a retry.
			return fmt.Errorf("read %s: %w", rng, err)
		}
		return nil
	})
	return awserr.Denied(err, "s3:GetObject", r.s.URI(r.key))
}
