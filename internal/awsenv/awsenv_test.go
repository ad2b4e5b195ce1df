package awsenv_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/awsenv"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/testenv"
)

var moto *emulator.Moto

func TestMain(m *testing.M) { testenv.Main(m, setUp) }

func setUp(m *testing.M) (int, error) {
	var err error
	if moto, err = emulator.StartMoto(context.Background()); err != nil {
		return 0, err
	}
	defer moto.Stop()
	return m.Run(), nil
}

// sdkLog collects what the SDK logs through aws.Config.Logger.
type sdkLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *sdkLog) Logf(c logging.Classification, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(c)+" "+fmt.Sprintf(format, v...))
}

func (l *sdkLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// A ranged GET of a multipart object, as the worker reads its inputs, logs
// nothing through the production options. The client validates checksums
// as on AWS (the endpoint is set on the config, not in the environment that
// S3Options reads), and moto, like S3, sends no checksum for such a range:
// without the option the SDK logs its "no supported checksum" line, which
// the second case checks so that the first can be trusted.
func TestRangedGetOfAMultipartObjectLogsNothing(t *testing.T) {
	// S3Options reads the environment: it must look like AWS's.
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	ctx := t.Context()
	cfg, err := moto.Config(ctx)
	require.NoError(t, err)
	pathStyle := func(o *s3.Options) { o.UsePathStyle = true } // moto cannot resolve bucket.host names
	admin := s3.NewFromConfig(cfg, pathStyle)
	bucket, key := "ranged-get", "inputs/big.npy"
	_, err = admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	// Two parts (S3's minimum part is 5 MiB), with CRC32s as the client's transfer uploads them.
	up, err := admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32})
	require.NoError(t, err)
	var parts []s3types.CompletedPart
	for i, size := range []int{5 << 20, 1 << 20} {
		out, err := admin.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, size)),
			ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32})
		require.NoError(t, err)
		parts = append(parts, s3types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32})
	}
	_, err = admin.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}})
	require.NoError(t, err)

	for _, c := range []struct {
		name        string
		options     []func(*s3.Options)
		wantSkipped bool
	}{
		{"production options", []func(*s3.Options){awsenv.S3Options, pathStyle}, false},
		{"the SDK's defaults", []func(*s3.Options){pathStyle}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs := &sdkLog{}
			withLog := cfg.Copy()
			withLog.Logger = logs
			client := s3.NewFromConfig(withLog, c.options...)
			for _, rng := range []string{"bytes=0-1023", "bytes=5242000-5243999"} { // within the first part; across both
				out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: aws.String(rng)})
				require.NoError(t, err)
				_, err = io.Copy(io.Discard, out.Body)
				require.NoError(t, err)
				require.NoError(t, out.Body.Close())
			}
			if c.wantSkipped {
				require.Contains(t, logs.String(), "Response has no supported checksum", "moto must send no checksum for a range, as S3 does")
			} else {
				require.Empty(t, logs.String())
			}
		})
	}
}
