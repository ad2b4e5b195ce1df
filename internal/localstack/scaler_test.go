package localstack

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/scaling"
)

func TestDesired(t *testing.T) {
	t.Parallel()
	p, err := scaling.New(scaling.Config{MaxTasks: 3, BacklogPerTask: 2, IdleMinutes: 1, TasksPerInstance: 1})
	require.NoError(t, err)
	idle := 10 * time.Second
	cases := []struct {
		name             string
		backlog, running int
		idleFor          time.Duration
		want             int
	}{
		{"idle and none running", 0, 0, time.Hour, 0},
		{"one message starts one worker", 1, 0, 0, 1},
		{"backlog per task", 3, 0, 0, 2},
		{"capped at max", 50, 0, 0, 3},
		{"running workers are kept while work remains", 1, 3, 0, 3},
		{"no backlog, not idle long enough", 0, 2, idle - time.Second, 2},
		{"idle long enough: back to zero", 0, 2, idle, 0},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, Desired(p, tc.backlog, tc.running, tc.idleFor, idle), tc.name)
	}
}

func TestTimelineSVG(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_800_000_000, 0)
	samples := []Sample{{At: start, Backlog: 0, Workers: 0}, {At: start.Add(time.Second), Backlog: 20, Workers: 3},
		{At: start.Add(5 * time.Second), Backlog: 0, Workers: 3}, {At: start.Add(8 * time.Second), Backlog: 0, Workers: 0}}
	svg := string(TimelineSVG(samples, "cpu tier <scale test>"))
	require.True(t, strings.HasPrefix(svg, "<svg"))
	require.Contains(t, svg, "cpu tier &lt;scale test&gt;")
	require.Equal(t, 2, strings.Count(svg, "<polyline"))
	require.Contains(t, svg, ">8s<", "the time axis spans the run")
	require.Contains(t, svg, ">20<", "the value axis reaches the peak backlog")
	var doc struct{}
	require.NoError(t, xml.Unmarshal([]byte(svg), &doc), "well-formed XML")
}

// fakeQueues answers GetQueueAttributes with GetQueueAttributesFn.
type fakeQueues struct {
	GetQueueAttributesFn func(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error)
}

func (f *fakeQueues) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return f.GetQueueAttributesFn(in)
}

// fakeProcess is a worker whose death the test decides.
type fakeProcess struct {
	pid     int
	done    chan struct{}
	status  string
	stopped bool
}

func (p *fakeProcess) Pid() int              { return p.pid }
func (p *fakeProcess) Done() <-chan struct{} { return p.done }
func (p *fakeProcess) ExitStatus() string    { return p.status }
func (p *fakeProcess) Stop()                 { p.stopped, p.status = true, "signal: terminated"; close(p.done) }

// exit ends the process the way the operating system would.
func (p *fakeProcess) exit(status string) { p.status = status; close(p.done) }

func TestScalerReplacesAWorkerThatExitsWhileWorkRemains(t *testing.T) {
	t.Parallel()
	policy, err := scaling.New(scaling.Config{MaxTasks: 3, BacklogPerTask: 2, IdleMinutes: 1, TasksPerInstance: 1})
	require.NoError(t, err)
	backlog := 3
	queues := &fakeQueues{GetQueueAttributesFn: func(in *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
		require.Equal(t, "cpu-url", aws.ToString(in.QueueUrl))
		return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
			"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": fmt.Sprint(backlog)}}, nil
	}}
	var started []*fakeProcess
	now := time.Unix(1_800_000_000, 0)
	var logs bytes.Buffer
	var samples []Sample
	s := &Scaler{Queues: queues, Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now },
		OnSample: func(x Sample) { samples = append(samples, x) },
		Tiers: []Tier{{Name: "cpu", QueueURL: "cpu-url", Policy: policy, IdleAfter: 10 * time.Second, Start: func() (Process, error) {
			p := &fakeProcess{pid: 100 + len(started), done: make(chan struct{})}
			started = append(started, p)
			return p, nil
		}}}}
	step := func() Sample {
		t.Helper()
		require.NoError(t, s.step(t.Context(), s.Tiers[0]))
		return samples[len(samples)-1]
	}

	require.Equal(t, 2, step().Workers, "3 in flight at 2 per task")
	require.Len(t, started, 2)

	// A worker is killed mid-job: its message stays in flight, so the
	// backlog is unchanged and the policy still wants two.
	now = now.Add(time.Minute)
	started[0].exit("signal: killed")
	require.Equal(t, 2, step().Workers, "the live count, with a replacement")
	require.Len(t, started, 3, "one replacement")
	require.False(t, started[0].stopped, "an exited worker is reaped, not stopped")
	require.Contains(t, logs.String(), `level=WARN msg="worker exited" tier=cpu pid=100 status="signal: killed"`)
	require.Contains(t, logs.String(), `msg="worker started" tier=cpu pid=102 backlog=3`)
	require.Equal(t, 1, strings.Count(logs.String(), `msg="worker exited"`), "each exit is logged once")

	// It is reaped once: the next step neither logs nor starts again.
	require.Equal(t, 2, step().Workers)
	require.Len(t, started, 3)
	require.Equal(t, 1, strings.Count(logs.String(), `msg="worker exited"`))

	// The work is done; a worker that exits now is not replaced, before or
	// after the idle time, and the last one is stopped after it.
	backlog = 0
	require.Equal(t, 2, step().Workers, "not idle long enough")
	started[1].exit("exit status 1")
	require.Equal(t, 1, step().Workers, "no backlog: the policy wants no more than run")
	require.Contains(t, logs.String(), `msg="worker exited" tier=cpu pid=101 status="exit status 1"`)
	now = now.Add(10 * time.Second)
	require.Zero(t, step().Workers, "idle long enough: back to zero")
	require.True(t, started[2].stopped, "the live worker is stopped (SIGTERM)")
	require.Contains(t, logs.String(), `msg="worker stopped: scale-in" tier=cpu pid=102 status="signal: terminated"`)
	require.Zero(t, step().Workers)
	require.Len(t, started, 3, "no replacement without a backlog")
}

// TestWorkerProcessReportsHowItEnded runs real child processes: one waiter
// per process, and Stop (SIGTERM) and an outside SIGKILL both end in Done
// with exec's wording of the status.
func TestWorkerProcessReportsHowItEnded(t *testing.T) {
	t.Parallel()
	// StartWorker runs `binary worker`: a script that ignores its argument.
	binary := filepath.Join(t.TempDir(), "fake-worker")
	require.NoError(t, os.WriteFile(binary, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755))
	var logs bytes.Buffer
	waitDone := func(p Process) {
		t.Helper()
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("pid %d: Done not closed", p.Pid())
		}
	}

	killed, err := StartWorker(binary, nil, &logs)
	require.NoError(t, err)
	require.Positive(t, killed.Pid())
	require.Empty(t, killed.ExitStatus(), "still running")
	require.NoError(t, syscall.Kill(killed.Pid(), syscall.SIGKILL))
	waitDone(killed)
	require.Equal(t, "signal: killed", killed.ExitStatus())
	killed.Stop() // returns at once on an exited process

	stopped, err := StartWorker(binary, nil, &logs)
	require.NoError(t, err)
	stopped.Stop()
	waitDone(stopped)
	require.Equal(t, "signal: terminated", stopped.ExitStatus())
}

// A worker that keeps dying young (a bad setting, a missing library) is
// restarted after 1 s, 2 s, 4 s... not at every tick; one that lived past
// quickExit resets the count.
func TestScalerBacksOffWorkersThatKeepDyingYoung(t *testing.T) {
	t.Parallel()
	policy, err := scaling.New(scaling.Config{MaxTasks: 1, BacklogPerTask: 1, IdleMinutes: 1, TasksPerInstance: 1})
	require.NoError(t, err)
	queues := &fakeQueues{GetQueueAttributesFn: func(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
		return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"ApproximateNumberOfMessages": "1", "ApproximateNumberOfMessagesNotVisible": "0"}}, nil
	}}
	var started []*fakeProcess
	now := time.Unix(1_800_000_000, 0)
	s := &Scaler{Queues: queues, Now: func() time.Time { return now },
		Tiers: []Tier{{Name: "cpu", QueueURL: "cpu-url", Policy: policy, IdleAfter: time.Minute, Start: func() (Process, error) {
			p := &fakeProcess{pid: 100 + len(started), done: make(chan struct{})}
			started = append(started, p)
			return p, nil
		}}}}
	// Steps every 250 ms for 10 s; every worker exits 100 ms after it starts.
	startsAt := []time.Duration{}
	t0 := now
	for range 40 {
		require.NoError(t, s.step(t.Context(), s.Tiers[0]))
		if n := len(started); n > 0 && n > len(startsAt) {
			startsAt = append(startsAt, now.Sub(t0))
		}
		now = now.Add(100 * time.Millisecond)
		if p := started[len(started)-1]; p.status == "" {
			p.exit("exit status 4")
		}
		now = now.Add(150 * time.Millisecond)
	}
	// Starts at 0, then gaps of 1, 2, 4 s after each exit (at 0.1 s past a start).
	require.Equal(t, []time.Duration{0, 1250 * time.Millisecond, 3500 * time.Millisecond, 7750 * time.Millisecond}, startsAt)

	// A worker that lives long resets the gap.
	now = now.Add(time.Minute)
	require.NoError(t, s.step(t.Context(), s.Tiers[0]))
	require.Len(t, started, 5)
	now = now.Add(time.Minute)
	started[4].exit("signal: killed")
	require.NoError(t, s.step(t.Context(), s.Tiers[0]))
	require.Len(t, started, 6, "replaced at once")
}
