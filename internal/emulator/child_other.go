//go:build !linux

package emulator

import "os/exec"

// startChild is cmd.Start: only Linux has a parent-death signal, so here a
// child outlives a parent that is killed before it can stop it.
func startChild(cmd *exec.Cmd) error { return cmd.Start() }
