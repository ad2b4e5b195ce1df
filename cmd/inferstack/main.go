// Command inferstack runs ONNX models over large files: locally with
// `inferstack run`, as the cloud stack's worker (`inferstack worker`), as a
// client of a deployed stack (submit, status, results, tier), and as the
// whole stack on one machine (`inferstack local up`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/inferstack/inferstack/inference"
)

// Exit codes, distinct per kind of failure so scripts can branch on them.
const (
	exitOK          = 0
	exitInternal    = 1 // a bug or an unexpected runtime failure
	exitUsage       = 2 // bad flags or arguments
	exitBadInput    = 3 // the input or the model cannot be used
	exitUnavailable = 4 // a prerequisite is missing: the ONNX Runtime library, or CUDA for --device gpu
	exitOutput      = 5 // the output directory cannot be written
	// exitInterrupted follows the shell's 128+SIGINT; the partial output is removed.
	exitInterrupted = 130
)

func main() {
	ctx, stop := stopOnSignals()
	code := NewMain(os.Stdout, os.Stderr).Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// stopOnSignals returns a context that ends at the first signal asking a
// command to stop softly: Ctrl-C, SIGTERM, or SIGHUP (the terminal was
// closed); after it a second Ctrl-C or SIGTERM kills at once.
//
// SIGHUP stops every command, not only `local up` (which must take moto,
// the Lambda emulator and its workers down with it): `run` removes its
// partial outputs rather than dying with them, and the workers `local up`
// starts share its terminal, so they hand back their jobs as on Ctrl-C.
// Under nohup SIGHUP stays ignored (catching it would undo nohup). A closed
// terminal hangs up more than once (the shell forwards its SIGHUP to its
// jobs, then the kernel hangs up the foreground group as the shell exits):
// the later ones are caught and dropped, so that they cannot kill the soft
// stop the first one began.
func stopOnSignals() (context.Context, context.CancelFunc) {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
		signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP) // never read: signal drops what does not fit
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// Main is the program, with its streams injected for tests.
type Main struct {
	Stdout, Stderr io.Writer
}

// NewMain returns a Main writing to the given streams.
func NewMain(stdout, stderr io.Writer) *Main { return &Main{Stdout: stdout, Stderr: stderr} }

const usage = `inferstack runs ONNX models over large files, fast and in bounded memory.

Usage:
  inferstack run --model M --input F --output DIR [flags]   run a model over a file
  inferstack worker                                         serve a tier's SQS queue (the ECS task)
  inferstack submit FILE [--tier T] [--wait]                upload a file and start a job on a stack
  inferstack status JOB_ID                                  a job's state and progress
  inferstack results JOB_ID --output DIR                    download a job's results
  inferstack tier [cpu|gpu|auto]                            show or set the active tier
  inferstack local up [--stack dev]                         the whole stack on this machine (make local-stack)
  inferstack version                                        print versions
  inferstack help [command]                                 show help

Exit codes: 0 ok, 1 internal failure, 2 usage error, 3 bad input or model,
4 missing prerequisite (ONNX Runtime library, CUDA), 5 output not writable,
130 interrupted.
`

// engineGCPercent is the collector's target in the commands that run the
// engine: their heap is mostly large pointer-free buffers, cheap to mark,
// which Go's default (100) lets grow to twice what is live; a $GOGC of the
// user's own wins.
const engineGCPercent = 50

func engineGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(engineGCPercent)
	}
}

// Run dispatches a subcommand and returns the process exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		engineGC()
		return m.exit(newRunCommand(m).Run(ctx, rest))
	case "worker":
		engineGC()
		return m.exit(m.runWorker(ctx, rest))
	case "submit":
		return m.exit(m.submit(ctx, rest))
	case "status":
		return m.exit(m.status(ctx, rest))
	case "results":
		return m.exit(m.results(ctx, rest))
	case "tier":
		return m.exit(m.tier(ctx, rest))
	case "local":
		return m.exit(m.runLocal(ctx, rest))
	case "version", "--version":
		fmt.Fprintf(m.Stdout, "inferstack %s (onnx runtime %s expected)\n", inference.Version(), inference.ORTVersion)
		return exitOK
	case "help", "-h", "--help":
		if len(rest) > 0 && rest[0] == "run" {
			return m.exit(newRunCommand(m).Run(ctx, []string{"--help"}))
		}
		if len(rest) > 0 && rest[0] == "local" {
			return m.exit(m.runLocal(ctx, []string{"--help"}))
		}
		fmt.Fprint(m.Stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(m.Stderr, "inferstack: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// usageError marks errors in the command line itself.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// errHelp reports that help was printed on request.
var errHelp = errors.New("help requested")

// exit prints err as one line and maps it to an exit code.
func (m *Main) exit(err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(m.Stderr, "inferstack: interrupted; partial outputs removed")
		return exitInterrupted
	}
	fmt.Fprintf(m.Stderr, "inferstack: %v\n", err)
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, inference.ErrBadInput), errors.Is(err, inference.ErrBadModel):
		return exitBadInput
	case errors.Is(err, inference.ErrUnavailable):
		return exitUnavailable
	case errors.Is(err, inference.ErrOutput):
		return exitOutput
	}
	return exitInternal
}
