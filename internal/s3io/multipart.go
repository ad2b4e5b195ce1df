package s3io

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/inferstack/inferstack/internal/awserr"
)

// S3's multipart limits (Amazon S3 User Guide, "Amazon S3 multipart upload
// limits"): every part but the last holds at least MinPartBytes, none more
// than MaxPartBytes, and an upload has at most MaxParts parts.
const (
	MinPartBytes = 5 << 20
	MaxPartBytes = 5 << 30
	MaxParts     = 10_000
)

// ErrUploadGone marks a multipart upload that no longer takes parts: it
// expired (the bucket's lifecycle aborts uploads after a day), was aborted,
// or was completed by another writer. A caller whose own record of an
// upload (a checkpoint) no longer matches it wraps it too: either way the
// upload cannot go on.
var ErrUploadGone = errors.New("the multipart upload or its record is gone")

// uploadGone says whether S3 answered that the upload, or a part the
// caller recorded, does not exist (any more).
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

// Part is an uploaded part, as CompleteUpload needs it.
type Part struct {
	Number int32
	ETag   string
	CRC32  string // base64 of the big-endian sum, as S3 spells it
}

func crc32Base64(data []byte) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(data)))
}

// CreateUpload starts a multipart upload of key. Its parts carry CRC32s,
// which S3 checks per part and over the whole (an upload created without an
// algorithm refuses parts that carry one).
func (s *Store) CreateUpload(ctx context.Context, key string) (string, error) {
	var id string
	err := awserr.Retry(ctx, func() error {
		out, err := s.S3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			ContentType: aws.String("application/octet-stream"), ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32})
		if err == nil {
			id = aws.ToString(out.UploadId)
		}
		return err
	})
	// CreateMultipartUpload, UploadPart and CompleteMultipartUpload are
	// authorised as s3:PutObject (S3 API reference, "Permissions").
	return id, awserr.Denied(err, "s3:PutObject", s.URI(key))
}

// UploadPart uploads data as part number of the upload.
func (s *Store) UploadPart(ctx context.Context, key, uploadID string, number int32, data []byte) (Part, error) {
	p := Part{Number: number, CRC32: crc32Base64(data)}
	err := awserr.Retry(ctx, func() error {
		out, err := s.S3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			UploadId: aws.String(uploadID), PartNumber: aws.Int32(number), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32, ChecksumCRC32: aws.String(p.CRC32)})
		if err == nil {
			p.ETag = aws.ToString(out.ETag)
		}
		return err
	})
	if uploadGone(err) {
		return p, fmt.Errorf("upload part %d of %s: %w: %w", number, s.URI(key), ErrUploadGone, err)
	}
	return p, awserr.Denied(err, "s3:PutObject", s.URI(key))
}

// CompleteUpload joins the parts into the object.
func (s *Store) CompleteUpload(ctx context.Context, key, uploadID string, parts []Part) error {
	done := make([]s3types.CompletedPart, len(parts))
	for i, p := range parts {
		done[i] = s3types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag), ChecksumCRC32: aws.String(p.CRC32)}
	}
	err := awserr.Retry(ctx, func() error {
		_, err := s.S3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			UploadId: aws.String(uploadID), MultipartUpload: &s3types.CompletedMultipartUpload{Parts: done}})
		return err
	})
	if uploadGone(err) {
		return fmt.Errorf("complete %s: %w: %w", s.URI(key), ErrUploadGone, err)
	}
	return awserr.Denied(err, "s3:PutObject", s.URI(key))
}

// AbortUpload drops an upload and its parts; one already gone is no error.
func (s *Store) AbortUpload(ctx context.Context, key, uploadID string) error {
	err := awserr.Retry(ctx, func() error {
		_, err := s.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.Bucket), Key: aws.String(key), UploadId: aws.String(uploadID)})
		return err
	})
	if uploadGone(err) {
		return nil
	}
	return awserr.Denied(err, "s3:AbortMultipartUpload", s.URI(key))
}

// PutSlices writes the concatenation of slices as one object without
// joining them in memory.
func (s *Store) PutSlices(ctx context.Context, key string, slices [][]byte, contentType string) error {
	var size int64
	for _, b := range slices {
		size += int64(len(b))
	}
	err := awserr.Retry(ctx, func() error {
		_, err := s.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			Body: &slicesReader{slices: slices, size: size}, ContentLength: aws.Int64(size), ContentType: aws.String(contentType)})
		return err
	})
	return awserr.Denied(err, "s3:PutObject", s.URI(key))
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
