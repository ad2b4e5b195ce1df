// Package testenv starts the real local stand-ins that tests run against:
// a moto server for AWS, the Lambda Runtime Interface Emulator, and a TCP
// proxy a test can cut to make an endpoint unreachable. Each fails with the
// command that installs it when it is missing.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ToolsDir is where `make setup` installs test tools (the Lambda emulator).
func ToolsDir() string {
	if dir := os.Getenv("INFERSTACK_CACHE"); dir != "" {
		return filepath.Join(dir, "tools")
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "inferstack", "tools")
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitFor polls ready until it succeeds or timeout passes; servers signal
// readiness only by answering.
func waitFor(ctx context.Context, timeout time.Duration, ready func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", timeout, errors.Join(err, ctx.Err()))
		case <-tick.C:
		}
	}
}

// Build compiles pkg (a path as the go command takes it) into dir/name,
// with build tags, and returns the binary's path: tests run the real binaries.
func Build(dir, name, pkg string, tags ...string) (string, error) {
	path := filepath.Join(dir, name)
	args := []string{"build", "-o", path}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if out, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	return path, nil
}

// Main runs a test package's tests after setUp has started what they need
// (setUp defers its own cleanup around m.Run); a failed set-up fails the
// package with its message, which says how to get what is missing.
func Main(m *testing.M, setUp func(*testing.M) (int, error)) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	os.Exit(code)
}
