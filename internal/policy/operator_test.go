package policy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
)

// The operator manages models and nothing else; the client may not write
// them.
func TestModelOperatorManagesOnlyModels(t *testing.T) {
	t.Parallel()
	op := ModelOperator(bucket)
	for _, a := range []string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject"} {
		require.True(t, op.Allows(a, bucket+"/"+job.ModelsPrefix+"my.onnx", nil), a)
	}
	require.True(t, op.Allows("s3:ListBucket", bucket, map[string]string{"s3:prefix": job.ModelsPrefix}))
	require.False(t, op.Allows("s3:ListBucket", bucket, map[string]string{"s3:prefix": job.ResultsPrefix}))
	for _, p := range []string{job.InputPrefix, job.ResultsPrefix, job.StatusPrefix, job.ErrorsPrefix, job.CheckpointPrefix, "modelsx/"} {
		require.False(t, op.Allows("s3:PutObject", bucket+"/"+p+"x", nil), p)
		require.False(t, op.Allows("s3:GetObject", bucket+"/"+p+"x", nil), p)
	}
	require.False(t, op.Allows("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:intake", nil))
	require.False(t, docs()["client"].doc.Allows("s3:PutObject", bucket+"/"+job.ModelsPrefix+"my.onnx", nil), "the client writes models")
}
