package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
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
	"github.com/inferstack/inferstack/internal/testenv"
)

// localUp is `inferstack local up` running in a project directory of its
// own, past the header it prints.
type localUp struct {
	cmd      *exec.Cmd
	dir      string
	exports  []string // the client's: KEY=value, unquoted
	hints    []string // the client's aws lines, up to the one that watches the events
	header   string   // everything printed before the live line
	endpoint string   // AWS_ENDPOINT_URL: moto
	logFile  string   // where it says its logs go
	stdout   *emulator.LockedBuffer
	stderr   *emulator.LockedBuffer
	exited   chan error // Wait's answer, once its stdout is drained

	// operator is the operator's exports (the deployer's rights), printed
	// apart from the client's under a label saying so; operatorHints its
	// aws lines.
	operator, operatorHints []string
}

// startLocalUp writes a project directory (a small model, the dev stack's
// settings pointing at it, and files) and starts `inferstack local up` in
// it with args, as a user does, until it has printed its exports and hints.
// The test's cleanup kills it.
func startLocalUp(t *testing.T, files map[string][]byte, args ...string) *localUp {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	model, err := onnxmodel.NewMLP(24, 32, 5, 1).Model()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mlp.onnx"), model, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bootstrap.zip"), []byte("unused locally"), 0o644))
	stackFile, err := os.ReadFile("../Pulumi.dev.yaml")
	require.NoError(t, err)
	stackFile = append(stackFile, []byte("  inferstack:modelPath: mlp.onnx\n  inferstack:dispatchZip: bootstrap.zip\n")...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Pulumi.dev.yaml"), stackFile, 0o644))

	u := &localUp{dir: dir, stdout: &emulator.LockedBuffer{}, stderr: &emulator.LockedBuffer{}, exited: make(chan error, 1)}
	up := exec.Command(binary, append([]string{"local", "up", "--stack", "dev", "--bootstrap", bootstrap, "--idle", "2s"}, args...)...)
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

	// The header: the operator's exports and hints, then the client's, up
	// to the events watch. Each block follows the line that labels it.
	lines := bufio.NewReader(stdout)
	var header strings.Builder
	section := ""
	for {
		line, err := lines.ReadString('\n')
		require.NoError(t, err, "local up ended before printing its hints:\n%s%s", header.String(), u.stderr.String())
		header.WriteString(line)
		line = strings.TrimSpace(line)
		if m := logsLine.FindStringSubmatch(line); m != nil {
			u.logFile = m[1]
		}
		switch {
		case strings.Contains(line, "never give these to a client"):
			section = "operator"
		case strings.Contains(line, "as a client with the least privilege"):
			section = "client"
		}
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(rest, "=")
			unquoted, err := strconv.Unquote(v)
			require.NoError(t, err, line)
			switch section {
			case "operator":
				u.operator = append(u.operator, k+"="+unquoted)
			case "client":
				u.exports = append(u.exports, k+"="+unquoted)
			default:
				t.Fatalf("exports before any label says whose they are:\n%s", header.String())
			}
		}
		if strings.HasPrefix(line, "aws ") {
			if section == "operator" {
				u.operatorHints = append(u.operatorHints, line)
				continue
			}
			u.hints = append(u.hints, line)
			if strings.Contains(line, "sqs receive-message") {
				break
			}
		}
	}
	u.header = header.String()
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
	// A model of the user's own, apart from the stack's (5 outputs, not 3).
	mine, err := onnxmodel.NewMLP(24, 16, 3, 7).Model()
	require.NoError(t, err)
	u := startLocalUp(t, map[string][]byte{"my.onnx": mine}, "--model", "my.onnx")
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

	bucket, intake := "", ""
	for _, kv := range exports {
		if v, ok := strings.CutPrefix(kv, "INFERSTACK_BUCKET="); ok {
			bucket = v
		}
		if v, ok := strings.CutPrefix(kv, "INFERSTACK_INTAKE_QUEUE_URL="); ok {
			intake = v
		}
	}
	// A job on the user's model, named as the header says.
	require.Contains(t, u.header, "s3://"+bucket+"/models/my.onnx  from my.onnx")
	require.Contains(t, u.header, `"model": "my.onnx"`)
	shell(fmt.Sprintf(`aws --endpoint-url %s sqs send-message --queue-url %s --message-body '{"filename": ".submit/signal.bin", "model": "my.onnx", "job_id": "mine"}'`,
		endpoint, intake))

	// The message's job, read as the same client would.
	req, err := job.Parse([]byte(`{"filename": ".submit/signal.bin"}`))
	require.NoError(t, err)
	deadline := time.Now().Add(90 * time.Second)
	for _, id := range []string{req.JobID, "mine"} {
		var out []byte
		testenv.Eventually(t, "job "+id+" to finish", time.Until(deadline), func() bool {
			cmd := exec.Command("aws", "--endpoint-url", endpoint, "s3", "cp", "s3://"+bucket+"/"+job.StatusKey(id), "-")
			cmd.Env = append(os.Environ(), exports...)
			var err error
			out, err = cmd.Output()
			var status struct{ State string }
			return err == nil && json.Unmarshal(out, &status) == nil && status.State == "done"
		}, testenv.Show(func() string { return string(out) }), stderr)
	}
	// It ran the user's model: the manifest names its hash.
	var manifest struct {
		Model struct{ SHA256 string }
	}
	out := shell(fmt.Sprintf("aws --endpoint-url %s s3 cp s3://%s/%smanifest.json -", endpoint, bucket, job.DefaultResultsPrefix("mine")))
	require.NoError(t, json.Unmarshal([]byte(out), &manifest), out)
	require.Equal(t, fmt.Sprintf("%x", sha256.Sum256(mine)), manifest.Model.SHA256)

	// Looking inside as a user does, with the client's exports: the real
	// CLI lists under results/ (a query value with '/', which moto alone
	// refuses as SignatureDoesNotMatch).
	ls := shell(fmt.Sprintf("aws --endpoint-url %s s3 ls s3://%s/results/", endpoint, bucket))
	require.Contains(t, ls, "PRE mine/")
	require.Contains(t, ls, "PRE "+req.JobID+"/")
	var listed struct{ CommonPrefixes []struct{ Prefix string } }
	out = shell(fmt.Sprintf("aws --endpoint-url %s s3api list-objects-v2 --bucket %s --prefix results/ --delimiter /", endpoint, bucket))
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Contains(t, listed.CommonPrefixes, struct{ Prefix string }{"results/mine/"}, out)

	// The operator is labelled apart, has keys of its own, and may upload
	// models, which the client may not.
	require.Contains(t, u.header, "the deployer's rights on AWS; never give these to a client")
	require.NotEmpty(t, u.operator)
	require.Len(t, u.operatorHints, 1)
	require.NotContains(t, u.operator, keyOf(exports), "the operator signs with the client's keys")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "other.onnx"), mine, 0o644))
	client := exec.Command("sh", "-c", fmt.Sprintf("aws --endpoint-url %s s3 cp other.onnx s3://%s/models/other.onnx", endpoint, bucket))
	client.Dir, client.Env = dir, append(os.Environ(), exports...)
	denied, err := client.CombinedOutput()
	require.Error(t, err, "the client wrote models/: %s", denied)
	require.Contains(t, string(denied), "AccessDenied")
	operator := exec.Command("sh", "-c", strings.ReplaceAll(u.operatorHints[0], "MODEL", "other"))
	operator.Dir, operator.Env = dir, append(os.Environ(), u.operator...)
	uploaded, err := operator.CombinedOutput()
	require.NoError(t, err, "%s: %s", u.operatorHints[0], uploaded)

	// The watch hint shows both jobs finish: the upload's and the message's.
	finished := map[string]bool{}
	testenv.Eventually(t, "both jobs' finished events", time.Until(deadline), func() bool {
		var got struct{ Messages []struct{ Body string } }
		out := shell(hints[3])
		if strings.TrimSpace(out) == "" {
			return false // nothing arrived within the hint's wait
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
		return len(finished) >= 2
	}, testenv.Show(func() string { return fmt.Sprintf("finished events: %v", finished) }), stderr)
	require.Equal(t, map[string]bool{job.InputPrefix + "signal.bin": true, job.SubmitPrefix + "signal.bin": true}, finished)

	// The live line, written to a pipe, counts the three jobs.
	testenv.Eventually(t, "the live line counts 3 jobs done", 30*time.Second, func() bool {
		return strings.Contains(u.stdout.String(), "done 3, errors 0\n")
	}, u.stdout)

	// Ctrl-C: the stack stops, and its emulator with it.
	require.NoError(t, up.Process.Signal(syscall.SIGINT))
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("local up did not stop on SIGINT")
	}
	_, err = http.Get(endpoint + "/moto-api/")
	require.Error(t, err, "moto still answers after local up stopped")

	// Not a terminal: the live line is a line each time it changed, never
	// redrawn in place, never the same twice in a row.
	live := u.stdout.String()
	require.NotContains(t, live, "\r")
	lines := strings.Split(strings.TrimSuffix(live, "\n"), "\n")
	require.GreaterOrEqual(t, len(lines), 2, live)
	require.Equal(t, "local stack stopped", lines[len(lines)-1], live)
	for i := 1; i < len(lines); i++ {
		require.NotEqual(t, lines[i-1], lines[i], "a status line repeated:\n%s", live)
	}
}

// keyOf is the AWS_ACCESS_KEY_ID line of exports.
func keyOf(exports []string) string {
	for _, kv := range exports {
		if strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") {
			return kv
		}
	}
	return ""
}

// TestLocalUpTakesItsChildrenDown: closing the terminal that runs local up
// hangs it up (SIGHUP), and it stops as on Ctrl-C, moto and the Lambda
// emulator with it. Killed (SIGKILL: none of its own cleanup runs), it
// takes them down all the same, rather than leaving them on their ports.
func TestLocalUpTakesItsChildrenDown(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			u := startLocalUp(t, nil)
			moto, lambda := host(t, u.endpoint), u.lambdaAddr(t)
			require.True(t, answers(moto), "moto")
			require.True(t, answers(lambda), "the lambda emulator")

			require.NoError(t, u.cmd.Process.Signal(sig))
			if sig == syscall.SIGHUP {
				// A closing terminal hangs up twice (the shell forwards its
				// SIGHUP to its jobs, then the kernel hangs up the
				// foreground group as the shell exits): the second comes
				// while the stack stops, and must not cut that short.
				testenv.Eventually(t, "local up to stop on SIGHUP", 60*time.Second, func() bool { return strings.Contains(u.stdout.String(), "local stack stopped") },
					u.stderr)
				_ = u.cmd.Process.Signal(sig) // fails if it has exited already
			}
			select {
			case <-u.exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("local up did not exit on %v", sig)
			}
			if sig == syscall.SIGKILL {
				testenv.Eventually(t, "moto and the lambda emulator to go with local up", 10*time.Second,
					func() bool { return !answers(moto) && !answers(lambda) })
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
