package emulator

import "os/exec"

// StartChild starts cmd so that it dies with this process however this
// process ends, SIGKILL included, when no deferred Stop runs: on Linux the
// kernel sends it SIGKILL when its parent dies (SysProcAttr.Pdeathsig, which
// StartChild sets on cmd). Elsewhere it is cmd.Start.
//
// The kernel's "parent" is the thread that forked the child, not the process
// (prctl(2); golang/go#27505), and the Go runtime ends a thread when a
// goroutine locked to it (runtime.LockOSThread) exits without unlocking: a
// child forked on such a thread, or on any thread such a goroutine later
// runs on, would be killed while this process lives. So on Linux every child
// is forked by one goroutine that locks its thread and never returns: no
// other goroutine runs on that thread, and it ends only with the process.
func StartChild(cmd *exec.Cmd) error { return startChild(cmd) }
