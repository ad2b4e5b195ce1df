package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/onnxmodel"
)

// localUp is `inferstack local up` running in a project directory of its
// own, past the header it prints.
type localUp struct {
	cmd      *exec.Cmd
	dir      string
	exports  []string // KEY=value, unquoted
	hints    []string // the aws lines, up to the one that watches the events
	endpoint string   // AWS_ENDPOINT_URL: moto
	logFile  string   // where it says its logs go
	stdout   *emulator.LockedBuffer
	stderr   *emulator.LockedBuffer
	exited   chan error // Wait's answer, once its stdout is drained
}

// startLocalUp writes a project directory (a small model, the dev stack's
// settings pointing at it) and starts `inferstack local up` in it, as a user
// does, until it has printed its exports and hints. The test's cleanup kills
// it.
func startLocalUp(t *testing.T) *localUp {
	t.Helper()
	dir := t.TempDir()
	model, err := onnxmodel.NewMLP(24, 32, 5, 1).Model()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mlp.onnx"), model, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bootstrap.zip"), []byte("unused locally"), 0o644))
	stackFile, err := os.ReadFile("../Pulumi.dev.yaml")
	require.NoError(t, err)
	stackFile = append(stackFile, []byte("  inferstack:modelPath: mlp.onnx\n  inferstack:dispatchZip: bootstrap.zip\n")...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.dev.yaml"), stackFile, 0o644))

	u := &localUp{dir: dir, stdout: &emulator.LockedBuffer{}, stderr: &emulator.LockedBuffer{}, exited: make(chan error, 1)}
	up := exec.Command(binary, "local", "up", "--stack", "dev", "--bootstrap", bootstrap, "--idle", "2s")
	up.Dir = dir
	stdout, err := up.StdoutPipe()
	require.NoError(t, err)
	up.Stderr = u.stderr
	require.NoError(t, up.Start())
	u.cmd = up
	t.Cleanup(func() {
		_ = up.Process.Kill()
		select {
		case <-u.exited:
		case <-time.After(10 * time.Second):
		}
	})

	// The header: exports, then hints, up to the events watch.
	lines := bufio.NewReader(stdout)
	for {
		line, err := lines.ReadString('\n')
		require.NoError(t, err, "local up ended before printing its hints:\n%s", u.stderr.String())
		line = strings.TrimSpace(line)
		if m := logsLine.FindStringSubmatch(line); m != nil {
			u.logFile = m[1]
		}
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(rest, "=")
			unquoted, err := strconv.Unquote(v)
			require.NoError(t, err, line)
			u.exports = append(u.exports, k+"="+unquoted)
		}
		if strings.HasPrefix(line, "aws ") {
			u.hints = append(u.hints, line)
			if strings.Contains(line, "sqs receive-message") {
				break
			}
		}
	}
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(u.stdout, lines); close(drained) }() // the live line, and the last words
	go func() { <-drained; u.exited <- up.Wait() }()
	for _, kv := range u.exports {
		if v, ok := strings.CutPrefix(kv, "AWS_ENDPOINT_URL="); ok {
			u.endpoint = v
		}
	}
	return u
}

// logsLine is local up's first line, which names its log file.
var logsLine = regexp.MustCompile(`\(logs: ([^)\s]+)\)`)

// lambdaAddr is the Lambda emulator's host:port, from the line the stack
// logs when it has started it.
func (u *localUp) lambdaAddr(t *testing.T) string {
	t.Helper()
	require.NotEmpty(t, u.logFile, "local up did not name its log file")
	logs, err := os.ReadFile(u.logFile)
	require.NoError(t, err)
	m := regexp.MustCompile(`msg="lambda emulator started" url=(\S+)`).FindSubmatch(logs)
	require.NotNil(t, m, "no lambda emulator in the logs:\n%s", logs)
	return host(t, string(m[1]))
}

// host is a URL's host:port.
func host(t *testing.T, rawURL string) string {
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	return u.Host
}

// answers says whether something accepts connections at addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestLocalUpAsAUserRunsIt runs `inferstack local up` as a user does, in a
// project directory, and then runs the lines it prints verbatim: its
// exports, and its AWS CLI hints with FILE filled in (the image's CLI is v1,
// which ignores AWS_ENDPOINT_URL, so a hint without --endpoint-url would go
// to AWS). The job they start finishes; Ctrl-C stops the stack and its
// emulator.
func TestLocalUpAsAUserRunsIt(t *testing.T) {
	u := startLocalUp(t)
	dir, exports, hints, endpoint, up, exited, stderr := u.dir, u.exports, u.hints, u.endpoint, u.cmd, u.exited, u.stderr
	require.NoError(t, os.WriteFile(filepath.Join(dir, "signal.bin"), npy.FromFloat32(make([]float32, 24*500)), 0o644))
	require.Len(t, hints, 4, "an upload that starts a job, an upload and a message, a watch of the events")
	require.NotEmpty(t, endpoint)

	shell := func(line string) string {
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), exports...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", line, out)
		return string(out)
	}
	for _, h := range hints[:3] {
		shell(strings.ReplaceAll(h, "FILE", "signal.bin"))
	}

	// The message's job, read as the same client would.
	req, err := job.Parse([]byte(`{"filename": ".submit/signal.bin"}`))
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

	// The watch hint shows both jobs finish: the upload's and the message's.
	finished := map[string]bool{}
	for len(finished) < 2 {
		require.True(t, time.Now().Before(deadline), "finished events: %v\n%s", finished, stderr.String())
		var got struct{ Messages []struct{ Body string } }
		out := shell(hints[3])
		if strings.TrimSpace(out) == "" {
			continue // nothing arrived within the hint's wait
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got), out)
		for _, m := range got.Messages {
			var envelope struct{ Message string }
			require.NoError(t, json.Unmarshal([]byte(m.Body), &envelope), m.Body)
			var e job.Event
			require.NoError(t, json.Unmarshal([]byte(envelope.Message), &e), envelope.Message)
			if e.State == job.EventFinished {
				finished[e.Input] = true
			}
		}
	}
	require.Equal(t, map[string]bool{job.InputPrefix + "signal.bin": true, job.SubmitPrefix + "signal.bin": true}, finished)

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

// TestLocalUpTakesItsChildrenDown: closing the terminal that runs local up
// hangs it up (SIGHUP), and it stops as on Ctrl-C, moto and the Lambda
// emulator with it. Killed (SIGKILL: none of its own cleanup runs), it
// takes them down all the same, rather than leaving them on their ports.
func TestLocalUpTakesItsChildrenDown(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			u := startLocalUp(t)
			moto, lambda := host(t, u.endpoint), u.lambdaAddr(t)
			require.True(t, answers(moto), "moto")
			require.True(t, answers(lambda), "the lambda emulator")

			require.NoError(t, u.cmd.Process.Signal(sig))
			if sig == syscall.SIGHUP {
				// A closing terminal hangs up twice (the shell forwards its
				// SIGHUP to its jobs, then the kernel hangs up the
				// foreground group as the shell exits): the second comes
				// while the stack stops, and must not cut that short.
				require.Eventually(t, func() bool { return strings.Contains(u.stdout.String(), "local stack stopped") }, 60*time.Second, time.Millisecond,
					"local up did not stop on SIGHUP:\n%s", u.stderr.String())
				_ = u.cmd.Process.Signal(sig) // fails if it has exited already
			}
			select {
			case <-u.exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("local up did not exit on %v", sig)
			}
			if sig == syscall.SIGKILL {
				require.Eventually(t, func() bool { return !answers(moto) && !answers(lambda) }, 10*time.Second, 20*time.Millisecond,
					"moto or the lambda emulator outlived local up")
				return
			}
			// Stopped, not killed by the hangup: it took its children down itself.
			require.True(t, u.cmd.ProcessState.Exited(), "local up died of the hangup: %s\n%s", u.cmd.ProcessState, u.stderr.String())
			require.Equal(t, 0, u.cmd.ProcessState.ExitCode(), u.stderr.String())
			require.False(t, answers(moto), "moto still answers after local up stopped")
			require.False(t, answers(lambda), "the lambda emulator still answers after local up stopped")
		})
	}
}
