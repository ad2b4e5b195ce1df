// Package localstack runs the stack's moving parts on one machine. Its
// scaler starts and stops worker processes from the same scaling policy the
// Pulumi program gives AWS: none while idle, more as the backlog grows, back
// to none after the idle time.
package localstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/scaling"
)

// Desired is the scaler's rule, pure: while jobs wait or run, the policy's
// task count for the backlog, never fewer than are running (a running
// worker is protected, as ECS task scale-in protection protects it); after
// idleAfter with no backlog, none.
func Desired(p scaling.Policy, backlog, running int, idleFor, idleAfter time.Duration) int {
	switch {
	case backlog > 0:
		return max(running, p.TasksFor(float64(backlog)))
	case idleFor >= idleAfter:
		return 0
	}
	return running
}

// Queues is the SQS API the scaler reads backlogs with.
type Queues interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Process is a running worker.
type Process interface {
	// Pid names the process in logs.
	Pid() int
	// Done is closed once the process has exited, for whatever reason.
	Done() <-chan struct{}
	// ExitStatus says how it ended ("exit status 1", "signal: killed")
	// once Done is closed.
	ExitStatus() string
	// Stop asks the worker to stop (SIGTERM) and waits for it to exit.
	Stop()
}

// Tier is one tier the scaler manages.
type Tier struct {
	Name      string
	QueueURL  string
	Policy    scaling.Policy
	IdleAfter time.Duration
	Start     func() (Process, error)
}

// Sample is one observation of the scaler, for its timeline.
type Sample struct {
	At      time.Time `json:"at"`
	Tier    string    `json:"tier"`
	Backlog int       `json:"backlog"`
	Workers int       `json:"workers"`
}

// Scaler polls each tier's backlog and keeps the count of live workers at
// Desired: like the ECS service scheduler, it replaces a worker that exits
// while the policy still wants it.
type Scaler struct {
	Queues   Queues
	Tiers    []Tier
	Interval time.Duration
	OnSample func(Sample)
	Log      *slog.Logger     // nil: discard
	Now      func() time.Time // nil: time.Now

	workers  map[string][]Process
	idleFrom map[string]time.Time
	started  map[Process]time.Time
	crashes  map[string]crashLoop
}

// crashLoop slows the replacement of workers that keep dying young, as the
// ECS service scheduler throttles a service whose tasks keep failing to
// start: a worker with a bad setting is not restarted at every tick.
type crashLoop struct {
	count     int       // exits in a row within quickExit of the start
	notBefore time.Time // no start before this
}

const (
	quickExit       = 10 * time.Second
	firstRestartGap = time.Second
	maxRestartGap   = time.Minute
)

// restartGap is the wait after n quick exits in a row: 1 s, 2 s, 4 s... 1 min.
func restartGap(n int) time.Duration {
	return min(maxRestartGap, firstRestartGap<<min(max(n-1, 0), 10))
}

// Run scales until ctx ends, then stops every worker.
func (s *Scaler) Run(ctx context.Context) error {
	defer s.stopAll()
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for {
		for _, t := range s.Tiers {
			if err := s.step(ctx, t); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (s *Scaler) step(ctx context.Context, t Tier) error {
	if s.workers == nil {
		s.workers, s.idleFrom = map[string][]Process{}, map[string]time.Time{}
		s.started, s.crashes = map[Process]time.Time{}, map[string]crashLoop{}
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("tier", t.Name)
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	s.reap(t.Name, now, log)
	backlog, err := Backlog(ctx, s.Queues, t.QueueURL)
	if err != nil {
		return nil // the queue is unreachable for a moment: keep what runs
	}
	if backlog > 0 {
		delete(s.idleFrom, t.Name)
	} else if _, ok := s.idleFrom[t.Name]; !ok {
		s.idleFrom[t.Name] = now
	}
	running := len(s.workers[t.Name])
	idleFor := time.Duration(0)
	if since, ok := s.idleFrom[t.Name]; ok {
		idleFor = now.Sub(since)
	}
	want := Desired(t.Policy, backlog, running, idleFor, t.IdleAfter)
	for len(s.workers[t.Name]) < want && !now.Before(s.crashes[t.Name].notBefore) {
		p, err := t.Start()
		if err != nil {
			return fmt.Errorf("start %s worker: %w", t.Name, err)
		}
		s.workers[t.Name] = append(s.workers[t.Name], p)
		s.started[p] = now
		log.Info("worker started", "pid", p.Pid(), "backlog", backlog)
	}
	for len(s.workers[t.Name]) > want {
		last := len(s.workers[t.Name]) - 1
		p := s.workers[t.Name][last]
		p.Stop()
		s.workers[t.Name] = s.workers[t.Name][:last]
		delete(s.started, p)
		log.Info("worker stopped: scale-in", "pid", p.Pid(), "status", p.ExitStatus())
	}
	if s.OnSample != nil {
		s.OnSample(Sample{At: now, Tier: t.Name, Backlog: backlog, Workers: len(s.workers[t.Name])})
	}
	return nil
}

// reap drops the tier's workers that have exited and logs how each ended,
// as ECS records a stopped task's reason; the step then counts only the
// live ones, so Desired starts replacements while work remains (after a
// growing gap when workers keep dying young).
func (s *Scaler) reap(tier string, now time.Time, log *slog.Logger) {
	live := s.workers[tier][:0]
	for _, p := range s.workers[tier] {
		select {
		case <-p.Done():
			c := crashLoop{}
			if now.Sub(s.started[p]) < quickExit {
				c.count = s.crashes[tier].count + 1
				c.notBefore = now.Add(restartGap(c.count))
			}
			s.crashes[tier] = c
			delete(s.started, p)
			log.Warn("worker exited", "pid", p.Pid(), "status", p.ExitStatus(), "next_start_after", c.notBefore.Sub(now).String())
		default:
			live = append(live, p)
		}
	}
	clear(s.workers[tier][len(live):])
	s.workers[tier] = live
}

func (s *Scaler) stopAll() {
	for _, ws := range s.workers {
		for _, w := range ws {
			w.Stop()
		}
	}
}

// Backlog is a queue's visible plus in-flight messages: the same metric the
// Pulumi program's alarms watch.
func Backlog(ctx context.Context, q Queues, url string) (int, error) {
	out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		return 0, err
	}
	visible, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible + inFlight, nil
}

// workerProcess is an `inferstack worker` child process. One goroutine
// waits on it (a process is waited on once): Done closes when it exits.
type workerProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait, set before done closes
}

var _ Process = (*workerProcess)(nil)

// StartWorker starts `binary worker` with the given extra environment. The
// worker dies with this process, even if this one is killed
// (emulator.StartChild): no worker outlives its stack.
func StartWorker(binary string, env []string, logs io.Writer) (Process, error) {
	cmd := exec.Command(binary, "worker")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := emulator.StartChild(cmd); err != nil {
		return nil, err
	}
	w := &workerProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

func (w *workerProcess) Pid() int              { return w.cmd.Process.Pid }
func (w *workerProcess) Done() <-chan struct{} { return w.done }

// ExitStatus is exec's wording of the wait status: "exit status 1",
// "signal: killed"; empty while the process runs.
func (w *workerProcess) ExitStatus() string {
	select {
	case <-w.done:
	default:
		return ""
	}
	if w.cmd.ProcessState != nil {
		return w.cmd.ProcessState.String()
	}
	return w.err.Error() // Wait failed before the process was reaped
}

// Stop sends SIGTERM (the worker hands back or finishes its job) and waits
// for the waiting goroutine to see it exit.
func (w *workerProcess) Stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM) // fails only if it already exited
	<-w.done
}
