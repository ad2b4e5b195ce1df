package emulator

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/testenv"
)

// waited closes when cmd has been waited for.
func waited(cmd *exec.Cmd) <-chan struct{} {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return done
}

// alive says whether pid runs: not gone, and not a zombie (dead, waiting to
// be reaped by whoever adopted it).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])) // comm may hold spaces
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// The caveat of Pdeathsig (golang/go#27505): a child forked on a thread that
// then exits is killed with it, though its parent process lives on. A
// goroutine that exits locked to its thread ends the thread: the child it
// forked itself dies (the control), the one StartChild forked lives.
func TestChildOutlivesTheThreadThatAskedForIt(t *testing.T) {
	t.Parallel()
	plain, tied := exec.Command("sleep", "60"), exec.Command("sleep", "60")
	plain.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	type thread struct {
		tid int
		err error
	}
	var th thread
	for th.tid == 0 {
		started := make(chan thread)
		go func() {
			runtime.LockOSThread() // never unlocked: returning ends the thread
			if syscall.Gettid() == syscall.Getpid() {
				// The main thread is parked, never ended: try another.
				runtime.UnlockOSThread()
				started <- thread{}
				return
			}
			err := plain.Start()
			if err == nil {
				err = StartChild(tied)
			}
			started <- thread{tid: syscall.Gettid(), err: err}
		}()
		th = <-started
	}
	require.NoError(t, th.err)
	tid := th.tid
	plainDone, tiedDone := waited(plain), waited(tied)
	t.Cleanup(func() {
		_ = tied.Process.Kill()
		<-tiedDone
	})

	testenv.Eventually(t, "the locked thread to end", 10*time.Second, func() bool {
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
		return os.IsNotExist(err)
	})
	select {
	case <-plainDone:
		require.Equal(t, "signal: killed", plain.ProcessState.String())
	case <-time.After(10 * time.Second):
		_ = plain.Process.Kill()
		t.Fatal("a child forked on the ended thread lives on: the control does not show the caveat")
	}
	// Its signal came when the thread ended; the tied child got none.
	select {
	case <-tiedDone:
		t.Fatalf("the child StartChild started died with the thread that asked for it: %s", tied.ProcessState)
	case <-time.After(200 * time.Millisecond):
	}
	require.True(t, alive(tied.Process.Pid))
}

// parentEnv makes TestHelperParent a parent process for
// TestChildDiesWithItsKilledParent.
const parentEnv = "EMULATOR_TEST_PARENT"

// TestHelperParent is not a test: run by TestChildDiesWithItsKilledParent
// as a process of its own, it starts a child, prints its pid and waits to
// be killed.
func TestHelperParent(t *testing.T) {
	if os.Getenv(parentEnv) == "" {
		return
	}
	child := exec.Command("sleep", "60")
	if err := StartChild(child); err != nil {
		os.Exit(1)
	}
	os.Stdout.WriteString(strconv.Itoa(child.Process.Pid) + "\n") //nolint:errcheck // the test reads it or fails
	select {}
}

// A parent killed with SIGKILL runs no cleanup: its child dies anyway.
func TestChildDiesWithItsKilledParent(t *testing.T) {
	t.Parallel()
	parent := exec.Command(os.Args[0], "-test.run=^TestHelperParent$", "-test.count=1")
	parent.Env = append(os.Environ(), parentEnv+"=1")
	out, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the parent did not start its child")
	child, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err, line)
	require.True(t, alive(child))

	require.NoError(t, parent.Process.Kill())
	testenv.Eventually(t, "the child of a killed parent to die", 10*time.Second, func() bool { return !alive(child) })
}
