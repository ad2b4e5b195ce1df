package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/testenv"
)

// object reads key as the harness (admin).
func (s *stack) object(key string) []byte {
	out, err := s.s3.GetObject(s.t.Context(), &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	require.NoError(s.t, err, key)
	defer out.Body.Close() //nolint:errcheck // read
	data, err := io.ReadAll(out.Body)
	require.NoError(s.t, err)
	return data
}

// put stores data at key as the harness (admin).
func (s *stack) put(key string, data []byte) {
	_, err := s.s3.PutObject(s.t.Context(), &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
	require.NoError(s.t, err, key)
}

// uploads are the bucket's multipart uploads in progress (admin).
func (s *stack) uploads() []string {
	out, err := s.s3.ListMultipartUploads(s.t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
	require.NoError(s.t, err)
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

// startCLI starts the real inferstack as the client user, with env on top
// of s.cli's (e.g. another endpoint); its output collects in stdout and
// stderr while it runs.
func (s *stack) startCLI(env []string, args ...string) (cmd *exec.Cmd, stdout, stderr *emulator.LockedBuffer) {
	cmd = exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), s.client.Env()...),
		"INFERSTACK_BUCKET="+s.bucket, "INFERSTACK_INTAKE_QUEUE_URL="+s.intake, "INFERSTACK_TIER_PARAMETER="+s.tierParam)
	cmd.Env = append(cmd.Env, env...) // the last value of a key wins
	stdout, stderr = &emulator.LockedBuffer{}, &emulator.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	require.NoError(s.t, cmd.Start())
	s.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, stdout, stderr
}

// randomFile writes size random bytes to a file called name.
func randomFile(t *testing.T, name string, size int) string {
	data := make([]byte, size)
	_, _ = rand.Read(data)
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

// An input of several parts goes up as a multipart upload, reads back
// byte-identical, and runs; the upload's progress is on stderr.
func TestSubmitUploadsALargeInputInParts(t *testing.T) {
	s := newStack(t, true)
	in := input(t, 185_000) // 16.9 MiB: 4 parts of 5 MiB
	want, err := os.ReadFile(in)
	require.NoError(t, err)

	code, out, errOut := s.cli("submit", in, "--part-size", "5MiB", "--concurrency", "2", "--wait")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "done: 185000 samples on cpu")
	require.Contains(t, errOut, "progress: 100% upload signal-185000.npy 16.9 MiB/16.9 MiB", "byte progress on stderr")

	key := job.SubmitPrefix + filepath.Base(in) // where submit uploads
	require.True(t, bytes.Equal(want, s.object(key)), "the stored input is the file")
	head, err := s.s3.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(aws.ToString(head.ETag), `-4"`), "a multipart object of 4 parts: %s", aws.ToString(head.ETag))
	require.Empty(t, s.uploads())

	// Its results come down whole (a small output: one range).
	id := jobID(t, out)
	dir := t.TempDir()
	code, _, errOut = s.cli("results", id, "--output", dir)
	require.Equal(t, 0, code, errOut)
	got, err := os.ReadFile(filepath.Join(dir, "probs.npy"))
	require.NoError(t, err)
	require.Equal(t, s.object(job.DefaultResultsPrefix(id)+"probs.npy"), got)
}

// Results of many ranges download byte-identical, each file under its name
// only once complete; a download that fails leaves neither the file nor
// its .tmp, and no manifest (the sign that the outputs are complete).
func TestResultsDownloadsLargeOutputsInRanges(t *testing.T) {
	s := newStack(t, false)
	const id = "big-output"
	prefix := job.DefaultResultsPrefix(id)
	big := make([]byte, 23<<20+3) // 5 ranges of 5 MiB, the last one short
	_, _ = rand.Read(big)
	s.put(prefix+"big.bin", big)
	manifest := func(files ...string) []byte {
		m := inference.Manifest{Samples: 1}
		for _, f := range files {
			m.Outputs = append(m.Outputs, inference.OutputFile{Name: strings.TrimSuffix(f, ".bin"), File: f, DType: "uint8", Shape: []int64{int64(len(big))}})
		}
		data, err := json.Marshal(m)
		require.NoError(t, err)
		return data
	}
	s.put(prefix+inference.ManifestFile, manifest("big.bin"))

	dir := t.TempDir()
	code, out, errOut := s.cli("results", id, "--output", dir, "--part-size", "5MiB", "--concurrency", "3")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, filepath.Join(dir, "big.bin"))
	require.Contains(t, errOut, "progress: 100% download big.bin 23.0 MiB/23.0 MiB")
	got, err := os.ReadFile(filepath.Join(dir, "big.bin"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, got), "big.bin is the object")
	require.FileExists(t, filepath.Join(dir, inference.ManifestFile))
	tmps, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
	require.NoError(t, err)
	require.Empty(t, tmps)

	// An output that is not there fails the download where it stands.
	s.put(prefix+inference.ManifestFile, manifest("big.bin", "missing.bin"))
	dir = t.TempDir()
	code, _, errOut = s.cli("results", id, "--output", dir, "--part-size", "5MiB")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "download missing.bin")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"big.bin"}, names, "only the complete file")
}

// A multipart upload that fails, because the input shrank under it or
// because the endpoint went away for a while, is aborted: it leaves no
// upload in progress (whose parts S3 would keep, and bill) and no input.
func TestFailedUploadLeavesNoMultipartUpload(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, file string, p *testenv.Proxy)
		says  string
	}{
		{name: "input-shrinks", says: "input changed while it was uploaded", fault: func(t *testing.T, file string, _ *testenv.Proxy) {
			require.NoError(t, os.Truncate(file, 7<<20))
		}},
		{name: "endpoint-cut", says: "upload input", fault: func(t *testing.T, _ string, p *testenv.Proxy) {
			// Until the SDK has given up on the part in flight (the
			// upload failed) and on the transfer manager's one abort (a
			// DELETE, retried as often as the SDK retries), and the
			// client's own abort has been refused too: then it keeps
			// trying until the endpoint is back.
			p.Cut()
			testenv.Eventually(t, "the transfer manager's abort to fail and the client's own to begin", 60*time.Second, func() bool {
				return aborts(p.Refused()) > retry.DefaultMaxAttempts
			}, testenv.Show(func() string { return strings.Join(p.Refused(), "\n") }))
			p.Restore()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, false)
			proxy, err := testenv.NewProxy(moto.URL)
			require.NoError(t, err)
			defer proxy.Close()
			file := randomFile(t, "big.bin", 60<<20) // 12 parts, one at a time
			cmd, _, stderr := s.startCLI([]string{"AWS_ENDPOINT_URL=" + proxy.URL()}, "submit", file, "--part-size", "5MiB", "--concurrency", "1")

			testenv.Eventually(t, "a multipart upload to start", 30*time.Second, func() bool { return len(s.uploads()) > 0 }, stderr)
			tc.fault(t, file, proxy)
			err = cmd.Wait()
			require.Error(t, err, "the upload failed: %s", stderr.String())
			require.Contains(t, stderr.String(), tc.says)
			require.NotContains(t, stderr.String(), "lifecycle", "the client aborted the upload itself")

			require.Empty(t, s.uploads(), "no multipart upload left in progress")
			_, err = s.s3.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(job.SubmitPrefix + "big.bin")})
			require.Error(t, err, "no input stored")
		})
	}
}

// aborts counts the AbortMultipartUpload requests among request lines.
func aborts(requests []string) int {
	n := 0
	for _, r := range requests {
		if strings.HasPrefix(r, http.MethodDelete+" ") && strings.Contains(r, "uploadId=") {
			n++
		}
	}
	return n
}
