package emulator

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/awsenv"
)

// TestQueriesSignAsSent: with IAM enforced, a list whose prefix or delimiter
// holds '/' (what `aws s3 ls s3://B/results/` sends) or another character
// that SigV4 escapes in a query is accepted, from the Go SDK and from the
// real AWS CLI, and answers what is there. moto 5.2.1 alone refuses them
// all with SignatureDoesNotMatch.
func TestQueriesSignAsSent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m, err := StartMoto(ctx, WithIAM())
	require.NoError(t, err)
	defer m.Stop()
	admin, err := m.Config(ctx)
	require.NoError(t, err)
	adminS3 := s3.NewFromConfig(admin, awsenv.EmulatorS3Options)
	_, err = adminS3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket")})
	require.NoError(t, err)
	keys := []string{"results/a/manifest.json", "results/b.json", "inputs/x", "odd/a,b é+c d/x"}
	for _, key := range keys {
		_, err = adminS3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket"), Key: aws.String(key), Body: strings.NewReader(key)})
		require.NoError(t, err)
	}
	// A reader who may list the bucket: moto checks the action on the bucket.
	p, err := m.Principal(ctx, "lister", doc(allow("List", []string{"s3:ListBucket"}, BucketARN("bucket"))))
	require.NoError(t, err)
	cfg, err := p.Config(ctx)
	require.NoError(t, err)
	lister := s3.NewFromConfig(cfg, awsenv.EmulatorS3Options)

	for _, tc := range []struct {
		prefix, delimiter string
		keys, prefixes    []string
	}{
		{prefix: "results/", keys: []string{"results/a/manifest.json", "results/b.json"}},
		{prefix: "results/", delimiter: "/", keys: []string{"results/b.json"}, prefixes: []string{"results/a/"}},
		{delimiter: "/", prefixes: []string{"inputs/", "odd/", "results/"}},
		{prefix: "odd/a,b é+c d/", keys: []string{"odd/a,b é+c d/x"}},
		{prefix: "results", keys: []string{"results/a/manifest.json", "results/b.json"}}, // no slash: passed before too
	} {
		t.Run("sdk "+tc.prefix+" "+tc.delimiter, func(t *testing.T) {
			in := &s3.ListObjectsV2Input{Bucket: aws.String("bucket")}
			if tc.prefix != "" {
				in.Prefix = aws.String(tc.prefix)
			}
			if tc.delimiter != "" {
				in.Delimiter = aws.String(tc.delimiter)
			}
			out, err := lister.ListObjectsV2(ctx, in)
			require.NoError(t, err)
			var got, gotPrefixes []string
			for _, o := range out.Contents {
				got = append(got, aws.ToString(o.Key))
			}
			for _, cp := range out.CommonPrefixes {
				gotPrefixes = append(gotPrefixes, aws.ToString(cp.Prefix))
			}
			require.Equal(t, tc.keys, got)
			require.Equal(t, tc.prefixes, gotPrefixes)
		})
	}

	// The real AWS CLI (v1 ignores AWS_ENDPOINT_URL: the endpoint is named).
	aws := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "aws", append([]string{"--endpoint-url", m.URL}, args...)...)
		cmd.Env = append(os.Environ(), p.Env()...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "aws %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	ls := aws("s3", "ls", "s3://bucket/results/")
	require.Contains(t, ls, "PRE a/")
	require.Contains(t, ls, " b.json")
	require.Contains(t, aws("s3", "ls", "s3://bucket/odd/a,b é+c d/"), " x")
	var listed struct {
		Contents       []struct{ Key string }
		CommonPrefixes []struct{ Prefix string }
	}
	out := aws("s3api", "list-objects-v2", "--bucket", "bucket", "--prefix", "results/", "--delimiter", "/")
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed.Contents, 1)
	require.Equal(t, "results/b.json", listed.Contents[0].Key)
	require.Len(t, listed.CommonPrefixes, 1)
	require.Equal(t, "results/a/", listed.CommonPrefixes[0].Prefix)
}
