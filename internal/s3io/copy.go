package s3io

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/inferstack/inferstack/internal/awserr"
)

// ErrPrecondition marks a conditional write that found the object not as
// it required: present for Create, changed for Replace.
var ErrPrecondition = errors.New("precondition failed")

// Create writes key only if it does not exist (If-None-Match: *), and
// returns the new object's ETag. Of writers racing to create one key, one
// wins; the others get ErrPrecondition.
func (s *Store) Create(ctx context.Context, key string, data []byte) (string, error) {
	return s.conditionalPut(ctx, &s3.PutObjectInput{Key: aws.String(key), IfNoneMatch: aws.String("*")}, data)
}

// Replace overwrites key only if its ETag is still etag (If-Match), and
// returns the new ETag; another writer in between gives ErrPrecondition.
func (s *Store) Replace(ctx context.Context, key, etag string, data []byte) (string, error) {
	return s.conditionalPut(ctx, &s3.PutObjectInput{Key: aws.String(key), IfMatch: aws.String(etag)}, data)
}

func (s *Store) conditionalPut(ctx context.Context, in *s3.PutObjectInput, data []byte) (string, error) {
	in.Bucket, in.ContentType = aws.String(s.Bucket), aws.String("application/json")
	var etag string
	err := awserr.Retry(ctx, func() error {
		in.Body = bytes.NewReader(data)
		out, err := s.S3.PutObject(ctx, in)
		if err == nil {
			etag = aws.ToString(out.ETag)
		}
		return err
	})
	// 409 ConditionalRequestConflict: a concurrent conditional write to the
	// key is in flight; S3 asks the loser to retry, which here means to
	// read again (Amazon S3 User Guide, "How to prevent object overwrites
	// with conditional writes").
	if st := awserr.HTTPStatus(err); st == http.StatusPreconditionFailed || st == http.StatusConflict {
		return "", fmt.Errorf("%s: %w", s.URI(aws.ToString(in.Key)), ErrPrecondition)
	}
	return etag, awserr.Denied(err, "s3:PutObject", s.URI(aws.ToString(in.Key)))
}

// GetWithETag reads a whole object and its ETag.
func (s *Store) GetWithETag(ctx context.Context, key string) ([]byte, string, error) {
	var data []byte
	var etag string
	err := awserr.Retry(ctx, func() error {
		out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
		if err != nil {
			return err
		}
		defer out.Body.Close() //nolint:errcheck // read-only
		etag = aws.ToString(out.ETag)
		data, err = io.ReadAll(out.Body)
		return err
	})
	if awserr.HTTPStatus(err) == http.StatusNotFound {
		return nil, "", fmt.Errorf("%s: %w", s.URI(key), ErrNotFound)
	}
	return data, etag, awserr.Denied(err, "s3:GetObject", s.URI(key))
}

// GetRange reads bytes [from, to) of an object.
func (s *Store) GetRange(ctx context.Context, key string, from, to int64) ([]byte, error) {
	var data []byte
	err := awserr.Retry(ctx, func() error {
		out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			Range: aws.String(fmt.Sprintf("bytes=%d-%d", from, to-1))})
		if err != nil {
			return err
		}
		defer out.Body.Close() //nolint:errcheck // read-only
		data, err = io.ReadAll(out.Body)
		return err
	})
	if awserr.HTTPStatus(err) == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %w", s.URI(key), ErrNotFound)
	}
	return data, awserr.Denied(err, "s3:GetObject", s.URI(key))
}

// CopyPart makes bytes [from, to) of the object src part number of the
// upload of key, server-side (UploadPartCopy: no bytes pass through here).
// Its CRC32 is S3's, as the upload's checksum algorithm asks.
func (s *Store) CopyPart(ctx context.Context, key, uploadID string, number int32, src string, from, to int64) (Part, error) {
	p := Part{Number: number}
	err := awserr.Retry(ctx, func() error {
		out, err := s.S3.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			UploadId: aws.String(uploadID), PartNumber: aws.Int32(number),
			CopySource:      aws.String(s.Bucket + "/" + url.PathEscape(src)),
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", from, to-1))})
		if err == nil && out.CopyPartResult != nil {
			p.ETag, p.CRC32 = aws.ToString(out.CopyPartResult.ETag), aws.ToString(out.CopyPartResult.ChecksumCRC32)
		}
		return err
	})
	if uploadGone(err) {
		return p, fmt.Errorf("copy part %d of %s: %w: %w", number, s.URI(key), ErrUploadGone, err)
	}
	// UploadPartCopy is authorised as s3:GetObject on the source and
	// s3:PutObject on the destination (S3 API reference, UploadPartCopy).
	return p, awserr.Denied(err, "s3:GetObject on "+s.URI(src)+" and s3:PutObject", s.URI(key))
}

// List returns the keys under prefix and their sizes, in key order.
func (s *Store) List(ctx context.Context, prefix string) (map[string]int64, []string, error) {
	sizes := map[string]int64{}
	var keys []string
	var token *string
	for {
		var out *s3.ListObjectsV2Output
		err := awserr.Retry(ctx, func() (err error) {
			out, err = s.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix), ContinuationToken: token})
			return err
		})
		if err != nil {
			return nil, nil, awserr.Denied(err, "s3:ListBucket", s.URI(prefix))
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
			sizes[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
		if !aws.ToBool(out.IsTruncated) {
			return sizes, keys, nil
		}
		token = out.NextContinuationToken
	}
}

// Delete removes an object; one already gone is no error.
func (s *Store) Delete(ctx context.Context, key string) error {
	err := awserr.Retry(ctx, func() error {
		_, err := s.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
		return err
	})
	if awserr.HTTPStatus(err) == http.StatusNotFound {
		return nil
	}
	return awserr.Denied(err, "s3:DeleteObject", s.URI(key))
}
