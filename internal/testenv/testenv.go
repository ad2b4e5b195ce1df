// Package testenv holds what only tests use: the set-up of a test package
// (Main), the go build wrapper that gives tests the real binaries (Build),
// the wait on a condition every test package polls with (Eventually), and a
// TCP proxy a test can cut to make an endpoint unreachable, or hold to make
// its requests hang (Proxy).
// The emulators the tests run against are package emulator's, shared with
// `inferstack local up`; this package stays out of production binaries.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

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
