package emulator

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnerOnce sync.Once
	spawns      chan spawn
)

func startChild(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	spawnerOnce.Do(func() {
		spawns = make(chan spawn)
		go spawner(spawns)
	})
	done := make(chan error, 1)
	spawns <- spawn{cmd: cmd, done: done}
	return <-done
}

// spawner forks every child from its own thread, for the life of the
// process (see StartChild).
func spawner(requests <-chan spawn) {
	runtime.LockOSThread() // never unlocked; the goroutine never returns
	for r := range requests {
		r.done <- r.cmd.Start()
	}
}
