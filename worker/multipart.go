package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/inferstack/inferstack/internal/awserr"
	"github.com/inferstack/inferstack/internal/job"
)

// S3's multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload
// limits"): every part but the last holds at least minPartBytes, none more
// than maxPartBytes, and an upload has at most maxParts parts.
const (
	minPartBytes = 5 << 20
	maxPartBytes = 5 << 30
	maxParts     = 10_000
)

// partTarget is the size at which an output's open part is sealed and
// uploaded: S3's minimum, or more for an output so large that parts of the
// minimum would be more than maxParts. Parts are sealed at chunk boundaries
// once they hold at least the target, so all but the last are at least the
// target: at most maxParts-1 of them, and the last.
func partTarget(fileBytes int64) int64 {
	return max(minPartBytes, (fileBytes+maxParts-2)/(maxParts-1))
}

// partCapacity is the most an open part can hold: the header, then whole
// chunks of chunkRows bytes until they reach the target.
func partCapacity(target, header, chunkRows, fileBytes int64) int64 {
	if chunkRows <= 0 {
		return min(fileBytes, header)
	}
	return min(fileBytes, header+(target+chunkRows-1)/chunkRows*chunkRows)
}

// errUploadGone marks a multipart upload that no longer takes parts: it
// expired (the bucket's lifecycle aborts uploads after a day), was aborted,
// or was completed by another delivery of the job. The job restarts from
// scratch; a missing or mismatched tail checkpoint counts the same.
var errUploadGone = errors.New("the job's multipart upload or its checkpoint is gone")

// uploadGone says whether S3 answered that the upload, or a part the
// checkpoint recorded, does not exist (any more).
func uploadGone(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "NoSuchUpload", "InvalidPart":
		return true
	}
	return false
}

// crc32Base64 is a part's CRC32 as S3 spells it: base64 of the big-endian sum.
func crc32Base64(data []byte) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(data)))
}

// createUpload starts a multipart upload of key. Its parts carry CRC32s,
// which S3 checks per part and over the whole (an upload created without an
// algorithm refuses parts that carry one).
func (s *store) createUpload(ctx context.Context, key string) (string, error) {
	var id string
	err := retry(ctx, func() error {
		out, err := s.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			ContentType: aws.String("application/octet-stream"), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32})
		if err == nil {
			id = aws.ToString(out.UploadId)
		}
		return err
	})
	// CreateMultipartUpload, UploadPart and CompleteMultipartUpload are
	// authorised as s3:PutObject (S3 API reference, "Permissions").
	return id, awserr.Denied(err, "s3:PutObject", s.uri(key))
}

// uploadPart uploads p's data as its part of the upload, filling in its ETag.
func (s *store) uploadPart(ctx context.Context, key, uploadID string, p *partRecord, data []byte) error {
	err := retry(ctx, func() error {
		out, err := s.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			UploadId: aws.String(uploadID), PartNumber: aws.Int32(p.Number), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32, ChecksumCRC32: aws.String(p.CRC32)})
		if err == nil {
			p.ETag = aws.ToString(out.ETag)
		}
		return err
	})
	if uploadGone(err) {
		return fmt.Errorf("upload part %d of %s: %w: %w", p.Number, s.uri(key), errUploadGone, err)
	}
	return awserr.Denied(err, "s3:PutObject", s.uri(key))
}

// completeUpload joins the parts into the object.
func (s *store) completeUpload(ctx context.Context, key, uploadID string, parts []partRecord) error {
	done := make([]s3types.CompletedPart, len(parts))
	for i, p := range parts {
		done[i] = s3types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag), ChecksumCRC32: aws.String(p.CRC32)}
	}
	err := retry(ctx, func() error {
		_, err := s.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			UploadId: aws.String(uploadID), MultipartUpload: &s3types.CompletedMultipartUpload{Parts: done}})
		return err
	})
	if uploadGone(err) {
		return fmt.Errorf("complete %s: %w: %w", s.uri(key), errUploadGone, err)
	}
	return awserr.Denied(err, "s3:PutObject", s.uri(key))
}

// abortUpload drops an upload and its parts; one already gone is no error.
func (s *store) abortUpload(ctx context.Context, key, uploadID string) error {
	err := retry(ctx, func() error {
		_, err := s.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(uploadID)})
		return err
	})
	if uploadGone(err) {
		return nil
	}
	return awserr.Denied(err, "s3:AbortMultipartUpload", s.uri(key))
}

// putSlices writes the concatenation of slices as one object without
// joining them in memory.
func (s *store) putSlices(ctx context.Context, key string, slices [][]byte, contentType string) error {
	var size int64
	for _, b := range slices {
		size += int64(len(b))
	}
	err := retry(ctx, func() error {
		_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			Body: &slicesReader{slices: slices, size: size}, ContentLength: aws.Int64(size), ContentType: aws.String(contentType)})
		return err
	})
	return awserr.Denied(err, "s3:PutObject", s.uri(key))
}

// slicesReader reads slices one after another. It seeks, as the SDK needs
// to sign a body over plain HTTP and to rewind it for a retry.
type slicesReader struct {
	slices [][]byte
	size   int64
	off    int64
}

func (r *slicesReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n, skip := 0, r.off
	for _, b := range r.slices {
		if skip >= int64(len(b)) {
			skip -= int64(len(b))
			continue
		}
		n += copy(p[n:], b[skip:])
		skip = 0
		if n == len(p) {
			break
		}
	}
	r.off += int64(n)
	return n, nil
}

func (r *slicesReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	}
	if offset < 0 {
		return 0, errors.New("seek before the start")
	}
	r.off = offset
	return offset, nil
}

// abortUploads aborts the multipart uploads that jobID's checkpoint records
// and voids the checkpoint. It is for a job that ends for good (poison): a
// job handed back or taken back keeps its uploads for the delivery that
// resumes it. Failures are logged; S3's lifecycle rule aborts what is left
// a day after it began.
func (w *Worker) abortUploads(ctx context.Context, jobID string, log *slog.Logger) {
	var cp checkpoint
	switch err := w.store.getJSON(ctx, job.CheckpointKey(jobID), &cp); {
	case errors.Is(err, errNotFound):
		return
	case err != nil:
		log.Warn("cannot read the checkpoint to abort the job's uploads; S3's lifecycle rule aborts them within a day", "err", err)
		return
	}
	w.abandon(ctx, jobID, log, &cp)
}

// abandon aborts the unfinished uploads the checkpoints record (nil ones
// are skipped) and voids jobID's checkpoint, so that no later delivery
// resumes into them.
func (w *Worker) abandon(ctx context.Context, jobID string, log *slog.Logger, cps ...*checkpoint) {
	var void *checkpoint
	aborted := map[string]bool{}
	for _, cp := range cps {
		if cp == nil || !cp.hasUploads() {
			continue
		}
		void = &checkpoint{Format: checkpointFormat, InputETag: cp.InputETag, ModelSHA256: cp.ModelSHA256, Threads: cp.Threads}
		for _, r := range cp.Results {
			if r.UploadID == "" || r.Completed || aborted[r.UploadID] {
				continue
			}
			aborted[r.UploadID] = true
			if err := w.store.abortUpload(ctx, r.Key, r.UploadID); err != nil {
				log.Warn("cannot abort a multipart upload; S3's lifecycle rule aborts it within a day", "key", r.Key, "err", err)
			} else {
				log.Info("multipart upload aborted", "key", r.Key)
			}
		}
	}
	if void == nil {
		return
	}
	if err := w.store.putJSON(ctx, job.CheckpointKey(jobID), void); err != nil {
		log.Warn("cannot void the checkpoint", "err", err)
	}
}

// resumable is jobID's checkpoint if this run can continue it: same input
// version, model and threads (so the same bytes), with chunks done or
// uploads begun. The uploads of one it cannot continue are aborted.
func (w *Worker) resumable(ctx context.Context, jobID, etag, modelSHA256 string, log *slog.Logger) *checkpoint {
	var prior checkpoint
	if err := w.store.getJSON(ctx, job.CheckpointKey(jobID), &prior); err != nil {
		return nil
	}
	if prior.Format == checkpointFormat && prior.InputETag == etag && prior.ModelSHA256 == modelSHA256 && prior.Threads == w.cfg.Threads &&
		(prior.Done > 0 || prior.hasUploads()) {
		return &prior
	}
	w.abandon(ctx, jobID, log, &prior)
	return nil
}
