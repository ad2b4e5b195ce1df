package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/internal/testenv"
)

// s3AsAWS answers a read of a missing key as S3 does and moto does not:
// 404 only when the caller's policy lets it list the bucket at that key
// (S3 evaluates s3:ListBucket with the key as s3:prefix), 403 AccessDenied
// otherwise (S3 API reference, HeadObject, "Permissions").
type s3AsAWS struct {
	s3io.Objects
	doc    policy.Document
	bucket string
}

func (s s3AsAWS) rule(err error, key string) error {
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusNotFound ||
		s.doc.Allows("s3:ListBucket", "arn:aws:s3:::"+s.bucket, map[string]string{"s3:prefix": key}) {
		return err
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusForbidden}},
		Err:      &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"},
	}}
}

func (s s3AsAWS) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := s.Objects.GetObject(ctx, in, opts...)
	return out, s.rule(err, aws.ToString(in.Key))
}

func (s s3AsAWS) HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	out, err := s.Objects.HeadObject(ctx, in, opts...)
	return out, s.rule(err, aws.ToString(in.Key))
}

// With the worker's policy as the program attaches it, a job's first look
// for its manifest is a 404 and the job runs, and a missing input is a
// clear error at once. Without s3:ListBucket (the first deployment's
// defect), every job would get 403 there: it now ends at its first delivery
// with an error record naming the denied action and key, not after five
// deliveries of retries.
func TestS3sMissingKeyRuleWithAndWithoutListBucket(t *testing.T) {
	t.Parallel()
	full := func(bucket string) policy.Document {
		return policy.WorkerTask(policy.WorkerArgs{QueueARN: "q", DeadLetterARN: "d", BucketARN: "arn:aws:s3:::" + bucket, ClusterARN: "c"})
	}
	for name, c := range map[string]struct {
		doc          func(bucket string) policy.Document
		goodFinishes bool
		reasons      map[string]string // file -> what its error record says
	}{
		"the program's policy": {full, true, map[string]string{"missing.npy": "not found"}},
		"without ListBucket": {func(b string) policy.Document { return full(b).Without("KnowMissingKeys") }, false, map[string]string{
			"good.npy":    "access denied: s3:GetObject on s3://BUCKET/results/JOB/manifest.json",
			"missing.npy": "access denied: s3:GetObject on s3://BUCKET/inputs/missing.npy",
		}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 30*time.Second)
			good := e.input("good.npy", 100)
			e.start(e.cfg, nil, s3AsAWS{Objects: e.s3, doc: c.doc(e.bucket), bucket: e.bucket}, nil)
			ids := map[string]string{"good.npy": e.send(`{"filename": "good.npy"}`), "missing.npy": e.send(`{"filename": "missing.npy"}`)}
			testenv.Eventually(e.t, "every message to end", 60*time.Second, func() bool { return e.drained(e.queue) })
			if c.goodFinishes {
				e.requireResults(ids["good.npy"], e.reference(good))
			}
			for file, want := range c.reasons {
				data, ok := e.get("errors/" + ids[file] + ".json")
				require.True(t, ok, "no error record for %s", file)
				var record struct{ Reason string }
				require.NoError(t, json.Unmarshal(data, &record))
				want = strings.NewReplacer("BUCKET", e.bucket, "JOB", ids[file]).Replace(want)
				require.Contains(t, record.Reason, want)
				require.NotContains(t, record.Reason, "gave up", "ended at its first delivery, not after retries")
			}
			visible, _ := e.counts(e.dlq)
			require.Equal(t, len(c.reasons), visible, "each failed job is dead-lettered")
		})
	}
}
