package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
)

// A job that names an output prefix writes its results there, and the
// client's wait, status and results find them there (through the job's
// status, which records its results prefix), not under results/<job id>/.
func TestResultsAndStatusFindAJobWithAnOutputPrefix(t *testing.T) {
	s := newStack(t, true)

	code, out, errOut := s.cli("submit", input(t, 1500), "--output-prefix", "runs/day-1", "--wait")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "done: 1500 samples on cpu; results in s3://"+s.bucket+"/results/runs/day-1/")
	id := jobID(t, out)

	// Where the worker wrote them, and nowhere else.
	_, err := s.s3.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("results/runs/day-1/manifest.json")})
	require.NoError(t, err)
	_, err = s.s3.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(job.DefaultResultsPrefix(id) + "manifest.json")})
	require.Error(t, err)

	code, out, _ = s.cli("status", id)
	require.Equal(t, 0, code)
	require.Contains(t, out, id+": done on cpu")
	require.Contains(t, out, "results in s3://"+s.bucket+"/results/runs/day-1/")

	dir := t.TempDir()
	code, out, errOut = s.cli("results", id, "--output", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "probs.npy")
	m, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	require.NoError(t, err)
	require.Contains(t, string(m), `"samples": 1500`)
}
