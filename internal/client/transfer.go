package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	tm "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/s3io"
)

// S3's multipart limits, as s3io defines them for the worker too: every
// part but the last is 5 MiB to 5 GiB, and an upload has at most 10,000 parts.
const (
	MinPartSize = s3io.MinPartBytes
	MaxPartSize = s3io.MaxPartBytes
	MaxParts    = s3io.MaxParts
)

// Transfer defaults: 8 MiB parts (the AWS CLI's and the transfer manager's
// default) and 5 parts in flight per file.
const (
	DefaultPartSize    = 8 << 20
	DefaultConcurrency = 5
	// MaxConcurrency bounds --concurrency: more parts in flight than this
	// only queue behind the connection pool.
	MaxConcurrency = 64
	// uploadMemory is what an upload may buffer when its concurrency is not
	// given: the transfer manager holds each part in flight, one queued and
	// one being read in memory, so huge parts get fewer in flight.
	uploadMemory = 1 << 30
	// abortFor is how long a failed upload keeps trying to abort its
	// multipart upload (the network that failed it may come back).
	abortFor = 30 * time.Second
)

var (
	// ErrPartSize is a part size S3 refuses.
	ErrPartSize = errors.New("part size out of range")
	// ErrTooLarge is an input bigger than MaxParts parts of MaxPartSize.
	ErrTooLarge = errors.New("input too large for one multipart upload")
	// ErrInputChanged is an input that changed while it was uploaded.
	ErrInputChanged = errors.New("input changed while it was uploaded")
)

// Transfer tunes the client's uploads and downloads.
type Transfer struct {
	// PartSize is the bytes per uploaded part and per downloaded range; 0
	// means DefaultPartSize. An upload grows it, in whole MiB, where its
	// input would need more than MaxParts parts.
	PartSize int64
	// Concurrency is the parts (or ranges) in flight per file; 0 means
	// DefaultConcurrency, fewer for an upload whose parts are huge.
	Concurrency int
	// Progress, when set, hears the bytes of each file done so far: 0 when
	// its transfer starts, then after each part or range (from the
	// transfer's goroutines; done never goes back, and ends at total).
	// Empty files are not reported.
	Progress func(file string, done, total int64)
}

// Validate checks the settings a user gave.
func (t Transfer) Validate() error {
	if t.PartSize != 0 && (t.PartSize < MinPartSize || t.PartSize > MaxPartSize) {
		return fmt.Errorf("%w: %d bytes (S3 takes 5 MiB to 5 GiB)", ErrPartSize, t.PartSize)
	}
	if t.Concurrency < 0 || t.Concurrency > MaxConcurrency {
		return fmt.Errorf("concurrency %d: want 1 to %d", t.Concurrency, MaxConcurrency)
	}
	return nil
}

// PartSize is the part size for uploading size bytes: requested (0:
// DefaultPartSize), grown to the next whole MiB that fits the input in
// MaxParts parts.
func PartSize(size, requested int64) (int64, error) {
	if requested == 0 {
		requested = DefaultPartSize
	}
	if err := (Transfer{PartSize: requested}).Validate(); err != nil {
		return 0, err
	}
	if size > MaxParts*MaxPartSize {
		return 0, fmt.Errorf("%w: %d bytes (at most %d parts of 5 GiB)", ErrTooLarge, size, MaxParts)
	}
	const mib = 1 << 20
	need := (size + MaxParts - 1) / MaxParts
	need = (need + mib - 1) / mib * mib
	return min(max(requested, need), MaxPartSize), nil
}

// UploadConcurrency is how many parts of partSize bytes an upload sends at
// once: requested where given, else DefaultConcurrency, reduced so that the
// parts it buffers stay within uploadMemory (at least one).
func UploadConcurrency(requested int, partSize int64) int {
	if requested > 0 {
		return requested
	}
	// In flight, plus the first part and the one being read.
	return int(max(1, min(DefaultConcurrency, uploadMemory/partSize-2)))
}

// ParseSize reads a byte count: a whole number with an optional unit, B,
// K/KiB, M/MiB, G/GiB (powers of 1024) or KB, MB, GB (powers of 1000),
// in any case: "8MiB", "16m", "5242880".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(t)
	}
	unit := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30,
		"kb": 1e3, "mb": 1e6, "gb": 1e9}[strings.ToLower(strings.TrimSpace(t[i:]))]
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || unit == 0 || n > (1<<62)/unit {
		return 0, fmt.Errorf("size %q: want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB", s)
	}
	return n * unit, nil
}

// upload streams file to key, in parts where it is bigger than one part.
// A failed multipart upload is aborted, so that it leaves no stored parts
// (which S3 bills until the bucket's lifecycle rule removes them).
func (c *Client) upload(ctx context.Context, file, key string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open input: %w", err)
	}
	defer f.Close() //nolint:errcheck // read-only
	before, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat input: %w", err)
	}
	if !before.Mode().IsRegular() {
		return fmt.Errorf("input %s is not a regular file", file)
	}
	size := before.Size()
	partSize, err := PartSize(size, c.Transfer.PartSize)
	if err != nil {
		return err
	}
	name := filepath.Base(file)
	tmc := tm.New(c.S3, func(o *tm.Options) {
		o.PartSizeBytes = partSize
		o.MultipartUploadThreshold = partSize // one part or less: one PutObject
		o.Concurrency = UploadConcurrency(c.Transfer.Concurrency, partSize)
		o.FailTimeout = abortFor // abort even when ctx was cancelled (Ctrl-C)
		c.listen(&o.ObjectProgressListeners, name)
	})
	_, err = tmc.UploadObject(ctx, &tm.UploadObjectInput{Bucket: aws.String(c.Bucket), Key: aws.String(key),
		Body: &sizedReader{r: f, left: size}, ContentLength: aws.Int64(size)})
	if err != nil {
		var mpu interface{ UploadID() string }
		if errors.As(err, &mpu) {
			if abortErr := c.abortUpload(ctx, key, mpu.UploadID()); abortErr != nil {
				return fmt.Errorf("upload input: %w (and its multipart upload %s is left for the bucket's lifecycle rule to remove: %v)",
					err, mpu.UploadID(), abortErr)
			}
		}
		return fmt.Errorf("upload input: %w", err)
	}
	if after, err := f.Stat(); err != nil || after.Size() != size || !after.ModTime().Equal(before.ModTime()) {
		return fmt.Errorf("upload input: %w (s3://%s/%s may be inconsistent; submit again)", ErrInputChanged, c.Bucket, key)
	}
	return nil
}

// abortUpload aborts a multipart upload until it is gone. The transfer
// manager aborts a failed upload once, and that fails too when the network
// that failed the upload is still down, so this tries again for abortFor
// (even when ctx was cancelled). NoSuchUpload means it is already gone.
func (c *Client) abortUpload(ctx context.Context, key, uploadID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortFor)
	defer cancel()
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 4*time.Second) {
		_, err := c.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(c.Bucket), Key: aws.String(key),
			UploadId: aws.String(uploadID)})
		var gone *s3types.NoSuchUpload
		if err == nil || errors.As(err, &gone) {
			return nil
		}
		if awserr.IsDenied(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// download streams key into path in concurrent ranges, through path.tmp,
// renamed when complete: a failed download leaves nothing under path.
func (c *Client) download(ctx context.Context, key, path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	partSize := c.Transfer.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	concurrency := c.Transfer.Concurrency
	if concurrency == 0 {
		concurrency = DefaultConcurrency
	}
	tmc := tm.New(c.S3, func(o *tm.Options) {
		o.PartSizeBytes = partSize
		o.Concurrency = concurrency
		// Ranges, not parts: an object uploaded in one PUT downloads in
		// parallel too, whatever its writer's part size.
		o.GetObjectType = tmtypes.GetObjectRanges
		// S3 returns no checksum for a range: asking for one only gets
		// the SDK to log, at every range, that it has none to check.
		o.DisableChecksumValidation = true
		c.listen(&o.ObjectProgressListeners, filepath.Base(path))
	})
	if _, err := tmc.DownloadObject(ctx, &tm.DownloadObjectInput{Bucket: aws.String(c.Bucket), Key: aws.String(key), WriterAt: f}); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// listen registers a listener that passes a file's progress to
// c.Transfer.Progress.
func (c *Client) listen(r *tm.ObjectProgressListeners, file string) {
	if c.Transfer.Progress != nil {
		r.Register(&progressListener{file: file, report: c.Transfer.Progress})
	}
}

// progressListener turns the transfer manager's events into monotonic
// reports: parts finish out of order, so their running totals can reach the
// listener out of order too.
type progressListener struct {
	file   string
	report func(file string, done, total int64)

	mu   sync.Mutex
	done int64
}

func (l *progressListener) OnObjectTransferStart(_ context.Context, e *tm.ObjectTransferStartEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.TotalBytes > 0 {
		l.report(l.file, 0, e.TotalBytes)
	}
}

func (l *progressListener) OnObjectBytesTransferred(_ context.Context, e *tm.ObjectBytesTransferredEvent) {
	l.update(e.BytesTransferred, e.TotalBytes)
}

func (l *progressListener) OnObjectTransferComplete(_ context.Context, e *tm.ObjectTransferCompleteEvent) {
	l.update(e.BytesTransferred, e.TotalBytes)
}

func (l *progressListener) update(done, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if total <= 0 || done <= l.done {
		return
	}
	l.done = done
	l.report(l.file, done, total)
}

// sizedReader reads exactly left bytes of r. A file that shrinks while it is
// read fails the upload instead of storing a shorter object (the transfer
// manager completes an upload with whatever parts it read).
type sizedReader struct {
	r    io.Reader
	left int64
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if errors.Is(err, io.EOF) && s.left > 0 {
		return n, fmt.Errorf("%w: it ended %d bytes short", ErrInputChanged, s.left)
	}
	return n, err
}
