package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/inferstack/inferstack/internal/awserr"
)

// Objects is the S3 API the worker uses; *s3.Client satisfies it.
type Objects interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	// Results go up as multipart uploads (multipart.go).
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

var _ Objects = (*s3.Client)(nil)

// errNotFound marks a missing object.
var errNotFound = errors.New("not found")

// status is the HTTP status of an AWS error, 0 when no response came back.
func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// transient says whether retrying can help: no response at all (the network
// or the endpoint is down), throttling, timeouts and server errors. A denied
// call never is (awserr).
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch s := status(err); {
	case s == 0, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s >= 500:
		return true
	}
	return false
}

// maxOutage is how long the worker keeps retrying a transient failure within
// a job before giving the job back to the queue.
const maxOutage = 2 * time.Minute

// retry runs op until it succeeds, fails permanently, or transient failures
// have lasted maxOutage, backing off from 100 ms to 5 s with jitter. The SDK's
// own retries cover blips; this covers an endpoint that is gone for a while.
func retry(ctx context.Context, op func() error) error {
	start, delay := time.Now(), 100*time.Millisecond
	for {
		err := op()
		if !transient(err) || time.Since(start) > maxOutage {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay/2 + rand.N(delay/2+1)):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// store is the worker's view of its bucket.
type store struct {
	s3     Objects
	bucket string
}

func (s *store) get(ctx context.Context, key string) ([]byte, error) {
	var data []byte
	err := retry(ctx, func() error {
		out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		if err != nil {
			return err
		}
		defer out.Body.Close() //nolint:errcheck // read-only
		data, err = io.ReadAll(out.Body)
		return err
	})
	if status(err) == http.StatusNotFound {
		return nil, fmt.Errorf("s3://%s/%s: %w", s.bucket, key, errNotFound)
	}
	return data, awserr.Denied(err, "s3:GetObject", s.uri(key))
}

// uri names an object in errors.
func (s *store) uri(key string) string { return "s3://" + s.bucket + "/" + key }

func (s *store) put(ctx context.Context, key string, data []byte, contentType string) error {
	err := retry(ctx, func() error {
		_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			Body: bytes.NewReader(data), ContentType: aws.String(contentType)})
		return err
	})
	return awserr.Denied(err, "s3:PutObject", s.uri(key))
}

func (s *store) putJSON(ctx context.Context, key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return s.put(ctx, key, data, "application/json")
}

func (s *store) getJSON(ctx context.Context, key string, v any) error {
	data, err := s.get(ctx, key)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func (s *store) head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	var out *s3.HeadObjectOutput
	err := retry(ctx, func() (err error) {
		out, err = s.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		return err
	})
	if status(err) == http.StatusNotFound {
		return nil, fmt.Errorf("s3://%s/%s: %w", s.bucket, key, errNotFound)
	}
	// HeadObject is authorised as s3:GetObject (S3 API reference, HeadObject).
	return out, awserr.Denied(err, "s3:GetObject", s.uri(key))
}
