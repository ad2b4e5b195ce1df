// Package emulator runs the local stand-ins for AWS on loopback: a moto
// server (optionally with IAM enforced, and its principals) and the Lambda
// Runtime Interface Emulator. `inferstack local up` runs the stack on them
// and tests run against them; neither needs anything from the other. Each
// fails with the command that installs it when it is missing, and each
// child process dies with the process that started it (StartChild).
package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
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
	defer func() { _ = ln.Close() }() // only its port was wanted
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

// LockedBuffer collects a child process's output while another goroutine
// reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
