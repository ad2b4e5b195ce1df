// Package s3io moves bytes to and from one S3 bucket: gets, puts, heads,
// multipart uploads and a read-ahead reader, each call retried through
// outages (awserr.Retry) and named by its IAM action when it is denied.
package s3io

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/inferstack/inferstack/internal/awserr"
)

// Objects is the S3 API a Store calls; *s3.Client satisfies it.
type Objects interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	// Multipart uploads (multipart.go).
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	// Server-side copies and listings (copy.go).
	UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

var _ Objects = (*s3.Client)(nil)

// ErrNotFound marks a missing object.
var ErrNotFound = errors.New("not found")

// Store is one bucket.
type Store struct {
	S3     Objects
	Bucket string
}

// Get reads a whole object.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	data, _, err := s.GetWithETag(ctx, key)
	return data, err
}

// URI names an object in errors.
func (s *Store) URI(key string) string { return "s3://" + s.Bucket + "/" + key }

// Put writes a whole object.
func (s *Store) Put(ctx context.Context, key string, data []byte, contentType string) error {
	err := awserr.Retry(ctx, func() error {
		_, err := s.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			Body: bytes.NewReader(data), ContentType: aws.String(contentType)})
		return err
	})
	return awserr.Denied(err, "s3:PutObject", s.URI(key))
}

// PutJSON writes v as indented JSON.
func (s *Store) PutJSON(ctx context.Context, key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return s.Put(ctx, key, data, "application/json")
}

// GetJSON reads a JSON object into v.
func (s *Store) GetJSON(ctx context.Context, key string, v any) error {
	data, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Head reads an object's metadata.
func (s *Store) Head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	var out *s3.HeadObjectOutput
	err := awserr.Retry(ctx, func() (err error) {
		out, err = s.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
		return err
	})
	if awserr.HTTPStatus(err) == http.StatusNotFound {
		return nil, fmt.Errorf("s3://%s/%s: %w", s.Bucket, key, ErrNotFound)
	}
	// HeadObject is authorised as s3:GetObject (S3 API reference, HeadObject).
	return out, awserr.Denied(err, "s3:GetObject", s.URI(key))
}
