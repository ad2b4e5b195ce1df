package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// RIEVersion is the Lambda Runtime Interface Emulator `make setup` installs.
const RIEVersion = "v0.0.0-20261030222936-bef5c4ba774d"

// Lambda is a function binary served by the Lambda Runtime Interface
// Emulator, invoked over HTTP as the Lambda service would.
type Lambda struct {
	URL string
	cmd *exec.Cmd
	out *LockedBuffer
}

// RIEPath is the installed emulator, or an error saying how to install it.
func RIEPath() (string, error) {
	path := filepath.Join(ToolsDir(), "aws-lambda-rie")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("the Lambda Runtime Interface Emulator is missing at %s: run `make setup-test` (go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@%s)", path, RIEVersion)
	}
	return path, nil
}

// StartLambda serves bootstrap under the emulator on a loopback port with
// the given extra environment.
func StartLambda(ctx context.Context, bootstrap string, env []string) (*Lambda, error) {
	rie, err := RIEPath()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	runtimeAPI, err := freeAddr()
	if err != nil {
		return nil, err
	}
	l := &Lambda{URL: "http://" + addr + "/2015-03-31/functions/function/invocations", out: &LockedBuffer{}}
	// Always loopback addresses of our own: by default the emulator listens on
	// *:8080 and its Runtime API on 127.0.0.1:9001, so two would collide.
	l.cmd = exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", runtimeAPI, bootstrap)
	l.cmd.Env = append(os.Environ(), env...)
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := StartChild(l.cmd); err != nil {
		return nil, fmt.Errorf("start lambda emulator: %w", err)
	}
	err = waitFor(ctx, 20*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close() // it answered: that was the question
		}
		return err
	})
	if err != nil {
		l.Stop()
		return nil, fmt.Errorf("lambda emulator did not start: %w\n%s", err, l.out.String())
	}
	return l, nil
}

// Invoke sends event to the function and decodes its response into out.
func (l *Lambda) Invoke(ctx context.Context, event, out any) error {
	body, err := json.Marshal(event)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("invoke: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("invoke: read response: %w", err)
	}
	var fnErr struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(data, &fnErr) == nil && fnErr.ErrorType != "" {
		return fmt.Errorf("function error %s: %s", fnErr.ErrorType, fnErr.ErrorMessage)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("invoke: status %s: %s", resp.Status, data)
	}
	return json.Unmarshal(data, out)
}

// Logs is what the emulator and the function printed so far.
func (l *Lambda) Logs() string { return l.out.String() }

// Stop ends the emulator and the function.
func (l *Lambda) Stop() {
	if l.cmd.Process != nil {
		_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
		_ = l.cmd.Wait()
	}
}
