package s3io

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/inferstack/inferstack/internal/awserr"
)

// Segment is a piece of an object being assembled: Data held here, or
// bytes [From, To) of the object Key.
type Segment struct {
	Data     []byte
	Key      string
	From, To int64
}

func (s Segment) size() int64 {
	if s.Key == "" {
		return int64(len(s.Data))
	}
	return s.To - s.From
}

// assemblyPart is one part of an assembled object: a server-side copy of
// one range of one object, or pieces joined here (Data, and ranges read
// back), where the pieces are too small to be parts of their own.
type assemblyPart struct {
	pieces []Segment
	copy   bool
}

// planParts cuts the concatenation of segs into parts S3 accepts: every
// part but the last at least minPart, none above maxPart. A range of at
// least minPart is copied server-side; smaller pieces are joined, with the
// start of the next range if need be, into a part of exactly minPart, so
// what passes through here is bounded by minPart a part, whatever the
// segments' sizes.
func planParts(segs []Segment, minPart, maxPart int64) []assemblyPart {
	var parts []assemblyPart
	var held []Segment
	var heldBytes int64
	flush := func() {
		if heldBytes > 0 {
			parts = append(parts, assemblyPart{pieces: held})
		}
		held, heldBytes = nil, 0
	}
	for _, seg := range segs {
		if seg.size() <= 0 {
			continue
		}
		if seg.Key == "" {
			held, heldBytes = append(held, seg), heldBytes+seg.size()
			if heldBytes >= minPart {
				flush()
			}
			continue
		}
		from, to := seg.From, seg.To
		if heldBytes > 0 {
			take := min(to-from, minPart-heldBytes)
			held, heldBytes = append(held, Segment{Key: seg.Key, From: from, To: from + take}), heldBytes+take
			from += take
			if heldBytes < minPart {
				continue
			}
			flush()
		}
		rest := to - from
		switch {
		case rest == 0:
		case rest < minPart:
			held, heldBytes = []Segment{{Key: seg.Key, From: from, To: to}}, rest
		default:
			n := (rest + maxPart - 1) / maxPart
			for i := range n {
				parts = append(parts, assemblyPart{copy: true, pieces: []Segment{{Key: seg.Key, From: from + rest*i/n, To: from + rest*(i+1)/n}}})
			}
		}
	}
	flush()
	return parts
}

// assembleConcurrency bounds an assembly's part requests in flight (and
// its joined parts in memory, at most MinPartBytes each): S3 takes an
// upload's parts in any order.
const assembleConcurrency = 8

// Assemble writes key as the concatenation of segs with one multipart
// upload: ranges copied server-side where they are large enough to be
// parts, small pieces read back and joined (planParts). began is told the
// upload's id before any part goes in, so a caller can record it and abort
// it if it never completes. The object appears whole or not at all.
func (s *Store) Assemble(ctx context.Context, key string, segs []Segment, began func(uploadID string) error) error {
	parts := planParts(segs, MinPartBytes, MaxPartBytes)
	if len(parts) > MaxParts {
		return fmt.Errorf("assemble %s: %d parts, S3 allows %d", s.URI(key), len(parts), MaxParts)
	}
	var id string
	err := awserr.Retry(ctx, func() error {
		out, err := s.S3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			ContentType: aws.String("application/octet-stream")})
		if err == nil {
			id = aws.ToString(out.UploadId)
		}
		return err
	})
	if err != nil {
		return awserr.Denied(err, "s3:PutObject", s.URI(key))
	}
	if err := began(id); err != nil {
		return err
	}
	done := make([]s3types.CompletedPart, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(assembleConcurrency)
	for i, p := range parts {
		number := int32(i + 1)
		g.Go(func() error {
			var etag string
			if p.copy {
				seg := p.pieces[0]
				cp, err := s.CopyPart(gctx, key, id, number, seg.Key, seg.From, seg.To)
				if err != nil {
					return err
				}
				etag = cp.ETag
			} else {
				data, err := s.join(gctx, p.pieces)
				if err != nil {
					return err
				}
				if etag, err = s.uploadPlainPart(gctx, key, id, number, data); err != nil {
					return err
				}
			}
			done[i] = s3types.CompletedPart{PartNumber: aws.Int32(number), ETag: aws.String(etag)}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	err = awserr.Retry(ctx, func() error {
		_, err := s.S3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			UploadId: aws.String(id), MultipartUpload: &s3types.CompletedMultipartUpload{Parts: done}})
		return err
	})
	if uploadGone(err) {
		return fmt.Errorf("complete %s: %w: %w", s.URI(key), ErrUploadGone, err)
	}
	return awserr.Denied(err, "s3:PutObject", s.URI(key))
}

// join reads pieces into one buffer.
func (s *Store) join(ctx context.Context, pieces []Segment) ([]byte, error) {
	var buf bytes.Buffer
	for _, p := range pieces {
		if p.Key == "" {
			buf.Write(p.Data)
			continue
		}
		data, err := s.GetRange(ctx, p.Key, p.From, p.To)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) != p.To-p.From {
			return nil, fmt.Errorf("read %s bytes %d-%d: got %d bytes", s.URI(p.Key), p.From, p.To, len(data))
		}
		buf.Write(data)
	}
	return buf.Bytes(), nil
}

// uploadPlainPart uploads a part of an upload created without a checksum
// algorithm (as Assemble's is, since copied parts carry none of ours).
func (s *Store) uploadPlainPart(ctx context.Context, key, uploadID string, number int32, data []byte) (string, error) {
	var etag string
	err := awserr.Retry(ctx, func() error {
		out, err := s.S3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
			UploadId: aws.String(uploadID), PartNumber: aws.Int32(number), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))})
		if err == nil {
			etag = aws.ToString(out.ETag)
		}
		return err
	})
	if uploadGone(err) {
		return "", fmt.Errorf("upload part %d of %s: %w: %w", number, s.URI(key), ErrUploadGone, err)
	}
	return etag, awserr.Denied(err, "s3:PutObject", s.URI(key))
}
