package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/npy"
	"github.com/inferstack/inferstack/internal/onnxmodel"
	"github.com/inferstack/inferstack/internal/testenv"
)

// binary is the real inferstack command, built once for these tests: exit
// codes and stderr are only worth testing on the process a user runs.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inferstack-cli-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "inferstack")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: build inferstack: %v\n%s", err, out)
		os.Exit(1)
	}
	if _, err := os.Stat(inference.DefaultLibPath()); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: these tests need ONNX Runtime at %s: run `make setup`\n", inference.DefaultLibPath())
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "INFERSTACK_ORT_LIB="+inference.DefaultLibPath(), "INFERSTACK_CACHE="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errorsAs(err, &exitErr) {
		t.Fatalf("run inferstack: %v", err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*target = e
	return ok
}

// fixture writes a small MLP model and a matching input into a temp dir.
func fixture(t *testing.T) (dir, model, input string) {
	dir = t.TempDir()
	data, err := onnxmodel.NewMLP(8, 16, 3, 1).Model()
	require.NoError(t, err)
	model = filepath.Join(dir, "mlp.onnx")
	require.NoError(t, os.WriteFile(model, data, 0o644))
	input = filepath.Join(dir, "x.npy")
	require.NoError(t, os.WriteFile(input, append(npy.EncodeHeader(npy.Float32, []int64{100, 8}), make([]byte, 100*8*4)...), 0o644))
	return dir, model, input
}

func TestRunSucceedsAndPrintsTheManifest(t *testing.T) {
	t.Parallel()
	dir, model, input := fixture(t)
	out := filepath.Join(dir, "out")
	r := run(t, nil, "run", "--model", model, "--input", input, "--output", out, "--device", "cpu", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var m inference.Manifest
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &m), "stdout is the manifest")
	require.EqualValues(t, 100, m.Samples)
	require.Equal(t, inference.DeviceCPU, m.Device.Used)
	written, err := os.ReadFile(filepath.Join(out, inference.ManifestFile))
	require.NoError(t, err)
	require.JSONEq(t, r.stdout, string(written))

	r = run(t, nil, "run", "--model", model, "--input", input, "--output", out)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "100 samples")
	require.Contains(t, r.stdout, filepath.Join(out, "probs.npy"))
	require.Contains(t, r.stderr, "progress: 100%", "plain progress lines when stderr is not a terminal")
	require.Contains(t, r.stderr, "cuda unavailable", "auto falls back with a logged warning")
}

func TestErrorsHaveOneLineAndTheirOwnExitCode(t *testing.T) {
	t.Parallel()
	dir, model, input := fixture(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}
	good, err := os.ReadFile(input)
	require.NoError(t, err)
	truncated := write("truncated.npy", good[:len(good)-10])
	absurd := write("absurd.npy", append(npy.EncodeHeader(npy.Float32, []int64{1 << 62, 8}), good[128:]...))
	badMagic := write("corrupt.npy", append([]byte("NOTNUMPY"), good[8:]...))
	strs := write("strings.npy", append(rawHeader("{'descr': '<U3', 'fortran_order': False, 'shape': (2, 8), }"), make([]byte, 2*8*12)...))
	fortran := write("fortran.npy", append(rawHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 8), }"), make([]byte, 2*8*4)...))
	mismatch := write("mismatch.npy", append(npy.EncodeHeader(npy.Float32, []int64{4, 9}), make([]byte, 4*9*4)...))
	notModel := write("model.onnx", []byte("hello"))
	blocker := write("blocker", []byte("x"))
	out := filepath.Join(dir, "out")
	args := func(model, input, out string, extra ...string) []string {
		return append([]string{"run", "--model", model, "--input", input, "--output", out, "--device", "cpu"}, extra...)
	}

	cases := []struct {
		name    string
		env     []string
		args    []string
		code    int
		message string
	}{
		{"no command", nil, nil, exitUsage, "Usage"},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"missing flags", nil, []string{"run", "--model", model}, exitUsage, "missing --input, --output"},
		{"unknown flag", nil, append(args(model, input, out), "--bogus"), exitUsage, "bogus"},
		{"bad device", nil, args(model, input, out, "--device", "tpu"), exitUsage, `device "tpu"`},
		{"window without hop", nil, args(model, input, out, "--window", "4"), exitUsage, "--window and --hop"},
		{"missing input", nil, args(model, filepath.Join(dir, "nope.npy"), out), exitBadInput, "no such file"},
		{"input is a directory", nil, args(model, dir, out), exitBadInput, "not a regular file"},
		{"truncated npy", nil, args(model, truncated, out), exitBadInput, "truncated"},
		{"absurd header", nil, args(model, absurd, out), exitBadInput, "too large"},
		{"corrupt magic", nil, args(model, badMagic, out), exitBadInput, "npy"},
		{"string dtype", nil, args(model, strs, out), exitBadInput, "<U3"},
		{"fortran order", nil, args(model, fortran, out), exitBadInput, "fortran-order arrays are not supported"},
		{"shape mismatch", nil, args(model, mismatch, out), exitBadInput, "model needs 8"},
		{"model not onnx", nil, args(notModel, input, out), exitBadInput, "not a valid onnx model"},
		{"missing model", nil, args(filepath.Join(dir, "none.onnx"), input, out), exitBadInput, "no such file"},
		{"unwritable output", nil, args(model, input, filepath.Join(blocker, "out")), exitOutput, "not a directory"},
		{"missing ort library", nil, append(args(model, input, out), "--ort-lib", filepath.Join(dir, "libnone.so")), exitUnavailable, "make setup"},
		{"ort library not a library", nil, append(args(model, input, out), "--ort-lib", blocker), exitUnavailable, "make setup"},
		{"ort library too old", nil, append(args(model, input, out), "--ort-lib", oldORT(t)), exitUnavailable, "ONNX Runtime >= 1.24"},
		{"gpu without cuda", nil, args(model, input, out, "--device", "gpu"), exitUnavailable, "cuda execution provider unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tc.env, tc.args...)
			require.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			require.Contains(t, r.stderr, tc.message)
			if tc.code != exitUsage {
				// One line of ours (a too-old ORT also prints its own line first).
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				last := lines[len(lines)-1]
				require.True(t, strings.HasPrefix(last, "inferstack: "), last)
				require.Equal(t, 1, strings.Count(r.stderr, "inferstack: "), "one line of error, got:\n%s", r.stderr)
				if !strings.Contains(tc.name, "too old") {
					require.Len(t, lines, 1, "one line of error, got:\n%s", r.stderr)
				}
			}
			require.NoFileExists(t, filepath.Join(out, inference.ManifestFile), "a failed run wrote a manifest")
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := run(t, nil, "help", "run")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stderr, "-batch-size")
	require.Contains(t, r.stderr, "manifest.json is written last")
	r = run(t, nil, "--help")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stdout, "Exit codes")

	// Help asked for is no usage error: the usage on stdout, exit 0.
	for _, args := range [][]string{{"local", "--help"}, {"local", "-h"}, {"local", "help"}, {"local", "up", "--help"}, {"local", "up", "-h"}, {"help", "local"}} {
		r = run(t, nil, args...)
		require.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stdout, "Usage: inferstack local up", args)
		require.Contains(t, r.stdout, "-idle duration", args)
		require.Empty(t, r.stderr, args)
	}
	// A wrong command line still is one: the same usage, on stderr, exit 2.
	for _, args := range [][]string{{"local"}, {"local", "down"}, {"local", "up", "--bogus"}} {
		r = run(t, nil, args...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "Usage: inferstack local up", args)
		require.Empty(t, r.stdout, args)
	}
}

// thriftImportsTesting is the one package allowed to link testing: Apache
// Thrift (under arrow-go's Parquet) exports a TestLogger(testing.TB) beside
// its logger in ordinary source (thrift v0.24.0 lib/go/thrift/logger.go);
// nothing calls it, and testing registers no flags unless testing.Init is.
const thriftImportsTesting = "github.com/apache/thrift/lib/go/thrift"

// TestBinariesLinkNoTestHarness: what cmd/ builds (the worker image's
// inferstack among them) links no test harness: neither the testing
// package, which a test helper drags in, nor internal/testenv.
func TestBinariesLinkNoTestHarness(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}:{{range .Imports}} {{.}}{{end}}`, "../...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	importers := map[string][]string{}
	var linked []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ":")
		linked = append(linked, pkg)
		for _, imp := range strings.Fields(imports) {
			importers[imp] = append(importers[imp], pkg)
		}
	}
	require.Contains(t, linked, "github.com/inferstack/inferstack/cmd/inferstack")
	for _, pkg := range linked {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") || strings.HasSuffix(pkg, "/internal/testenv") {
			by := slices.DeleteFunc(slices.Clone(importers[pkg]), func(p string) bool { return pkg == "testing" && p == thriftImportsTesting })
			if len(by) > 0 {
				t.Errorf("cmd/... links %s, imported by %v", pkg, by)
			}
		}
	}
}

// rawHeader builds a version 1.0 .npy header around any dict text, so tests
// can write headers that EncodeHeader would never produce.
func rawHeader(dict string) []byte {
	n := len(dict) + 1
	pad := (64 - (10+n)%64) % 64
	h := []byte("\x93NUMPY\x01\x00")
	h = append(h, byte(n+pad), byte((n+pad)>>8))
	h = append(h, dict...)
	h = append(h, bytes.Repeat([]byte(" "), pad)...)
	return append(h, '\n')
}

// Ctrl-C mid-run stops at once, removes the partial outputs and says so; so
// does closing the terminal (SIGHUP).
func TestInterruptRemovesPartialOutputs(t *testing.T) {
	t.Parallel()
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			interruptRun(t, sig)
		})
	}
}

func interruptRun(t *testing.T, sig os.Signal) {
	dir, model, _ := fixture(t)
	// Batch size 1 over 2M samples keeps the run going for many seconds.
	const n = 2 << 20
	input := filepath.Join(dir, "long.npy")
	require.NoError(t, os.WriteFile(input, append(npy.EncodeHeader(npy.Float32, []int64{n, 8}), make([]byte, n*8*4)...), 0o644))
	out := filepath.Join(dir, "out")
	cmd := exec.Command(binary, "run", "--model", model, "--input", input, "--output", out, "--device", "cpu", "--batch-size", "1")
	cmd.Env = append(os.Environ(), "INFERSTACK_ORT_LIB="+inference.DefaultLibPath(), "INFERSTACK_CACHE="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	// The output file appears when inference starts streaming.
	testenv.Eventually(t, "the output file", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(out, "probs.npy"))
		return err == nil
	})
	require.NoError(t, cmd.Process.Signal(sig))
	err := cmd.Wait()
	require.Error(t, err)
	require.Equal(t, exitInterrupted, cmd.ProcessState.ExitCode(), stderr.String())
	require.Contains(t, stderr.String(), "interrupted")
	require.NoFileExists(t, filepath.Join(out, "probs.npy"))
	require.NoFileExists(t, filepath.Join(out, inference.ManifestFile))
}

// oldORT is ONNX Runtime 1.20.1, which `make test` fetches (setup.sh --test)
// to prove that a too-old library fails with the fix.
func oldORT(t *testing.T) string {
	path := filepath.Join(inference.CacheDir(), "ort", "1.20.1", "libonnxruntime.so.1")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("ONNX Runtime 1.20.1 test fixture missing (%v): run `scripts/setup.sh --test` (make test does)", err)
	}
	return path
}

// The AWS CLI v1 ignores AWS_ENDPOINT_URL: every aws line names the endpoint.
func TestLocalHintsNameTheEndpoint(t *testing.T) {
	t.Parallel()
	h := localHints("http://127.0.0.1:9", "b", "http://127.0.0.1:9/123456789012/q", "http://127.0.0.1:9/123456789012/w", true)
	aws := 0
	for _, line := range strings.Split(h, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "aws ") {
			aws++
			require.Contains(t, line, "--endpoint-url http://127.0.0.1:9 ", line)
		}
	}
	require.Equal(t, 4, aws, "an upload that starts a job, an upload and a message, a watch of the events")
	require.Contains(t, h, "s3 cp FILE s3://b/inputs/FILE\n")
	require.Contains(t, h, "s3 cp FILE s3://b/inputs/.submit/FILE\n")
	require.Contains(t, h, `"filename": ".submit/FILE"`)
	require.Contains(t, h, "--queue-url http://127.0.0.1:9/123456789012/q")
	require.Contains(t, h, "receive-message --queue-url http://127.0.0.1:9/123456789012/w")
	require.NotContains(t, localHints("e", "b", "q", "w", false), "s3://b/inputs/FILE\n", "no upload trigger, no hint that uploads start jobs")
}
