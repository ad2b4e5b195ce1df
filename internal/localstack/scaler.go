// Package localstack runs the stack's moving parts on one machine. Its
// scaler starts and stops worker processes from the same scaling policy the
// Pulumi program gives AWS: none while idle, more as the backlog grows, back
// to none after the idle time.
package localstack

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

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
	// Stop asks the worker to stop (SIGTERM) and waits for it.
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

// Scaler polls each tier's backlog and keeps the worker count at Desired.
type Scaler struct {
	Queues   Queues
	Tiers    []Tier
	Interval time.Duration
	OnSample func(Sample)

	workers  map[string][]Process
	idleFrom map[string]time.Time
}

// Run scales until ctx ends, then stops every worker.
func (s *Scaler) Run(ctx context.Context) error {
	s.workers, s.idleFrom = map[string][]Process{}, map[string]time.Time{}
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
	backlog, err := Backlog(ctx, s.Queues, t.QueueURL)
	if err != nil {
		return nil // the queue is unreachable for a moment: keep what runs
	}
	now := time.Now()
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
	for len(s.workers[t.Name]) < want {
		p, err := t.Start()
		if err != nil {
			return fmt.Errorf("start %s worker: %w", t.Name, err)
		}
		s.workers[t.Name] = append(s.workers[t.Name], p)
	}
	for len(s.workers[t.Name]) > want {
		last := len(s.workers[t.Name]) - 1
		s.workers[t.Name][last].Stop()
		s.workers[t.Name] = s.workers[t.Name][:last]
	}
	if s.OnSample != nil {
		s.OnSample(Sample{At: now, Tier: t.Name, Backlog: backlog, Workers: len(s.workers[t.Name])})
	}
	return nil
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

// workerProcess is an `inferstack worker` child process.
type workerProcess struct{ cmd *exec.Cmd }

// StartWorker starts `binary worker` with the given extra environment.
func StartWorker(binary string, env []string, logs io.Writer) (Process, error) {
	cmd := exec.Command(binary, "worker")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &workerProcess{cmd: cmd}, nil
}

// Stop sends SIGTERM (the worker hands back or finishes its job) and waits.
func (w *workerProcess) Stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	_ = w.cmd.Wait()
}
