package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// TestLocalUpAsAUserRunsIt runs `inferstack local up` as a user does, in a
// project directory, and then runs the lines it prints verbatim: its
// exports, and its AWS CLI hints with FILE filled in (the image's CLI is v1,
// which ignores AWS_ENDPOINT_URL, so a hint without --endpoint-url would go
// to AWS). The job they start finishes; Ctrl-C stops the stack and its
// emulator.
func TestLocalUpAsAUserRunsIt(t *testing.T) {
	dir := t.TempDir()
	model, err := onnxmodel.NewMLP(24, 32, 5, 1).Model()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mlp.onnx"), model, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bootstrap.zip"), []byte("unused locally"), 0o644))
	stackFile, err := os.ReadFile("../Pulumi.dev.yaml")
	require.NoError(t, err)
	stackFile = append(stackFile, []byte("  inferstack:modelPath: mlp.onnx\n  inferstack:dispatchZip: bootstrap.zip\n")...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.dev.yaml"), stackFile, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "signal.bin"), npy.FromFloat32(make([]float32, 24*500)), 0o644))

	up := exec.Command(binary, "local", "up", "--stack", "dev", "--bootstrap", bootstrap, "--idle", "2s")
	up.Dir = dir
	stdout, err := up.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	up.Stderr = &stderr
	require.NoError(t, up.Start())
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = up.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	})

	// The header: exports, then hints, up to the send-message hint.
	var exports, hints []string
	lines := bufio.NewReader(stdout)
	for {
		line, err := lines.ReadString('\n')
		require.NoError(t, err, "local up ended before printing its hints:\n%s", stderr.String())
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(rest, "=")
			unquoted, err := strconv.Unquote(v)
			require.NoError(t, err, line)
			exports = append(exports, k+"="+unquoted)
		}
		if strings.HasPrefix(line, "aws ") {
			hints = append(hints, line)
			if strings.Contains(line, "sqs send-message") {
				break
			}
		}
	}
	go func() { _, _ = io.Copy(io.Discard, lines) }() // the live line
	go func() { exited <- up.Wait() }()
	require.Len(t, hints, 2, "an upload and a send-message hint")
	endpoint := ""
	for _, kv := range exports {
		if v, ok := strings.CutPrefix(kv, "AWS_ENDPOINT_URL="); ok {
			endpoint = v
		}
	}
	require.NotEmpty(t, endpoint)

	shell := func(line string) string {
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), exports...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", line, out)
		return string(out)
	}
	for _, h := range hints {
		shell(strings.ReplaceAll(h, "FILE", "signal.bin"))
	}

	// The job the hints started, read as the same client would.
	req, err := job.Parse([]byte(`{"filename": "signal.bin"}`))
	require.NoError(t, err)
	bucket := ""
	for _, kv := range exports {
		if v, ok := strings.CutPrefix(kv, "INFERSTACK_BUCKET="); ok {
			bucket = v
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		cmd := exec.Command("aws", "--endpoint-url", endpoint, "s3", "cp", "s3://"+bucket+"/"+job.StatusPrefix+req.JobID+".json", "-")
		cmd.Env = append(os.Environ(), exports...)
		out, err := cmd.Output()
		var status struct{ State string }
		if err == nil && json.Unmarshal(out, &status) == nil && status.State == "done" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the job did not finish: %s\n%s", out, stderr.String())
		time.Sleep(200 * time.Millisecond)
	}

	// Ctrl-C: the stack stops, and its emulator with it.
	require.NoError(t, up.Process.Signal(syscall.SIGINT))
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("local up did not stop on SIGINT")
	}
	_, err = http.Get(endpoint + "/moto-api/")
	require.Error(t, err, "moto still answers after local up stopped")
}
