// Package scaling turns a tier's scaling settings into its scaling policy:
// the numbers the Pulumi program gives AWS (alarms, step scaling, managed
// scaling) and the local stack's scaler follows, from one pure function.
package scaling

import (
	"fmt"
	"math"
)

// Config is what an operator sets for a tier's autoscaling.
type Config struct {
	MaxTasks         int // tasks at full backlog
	BacklogPerTask   int // jobs (queued or in flight) one task is meant to carry
	IdleMinutes      int // minutes with no backlog before the tier returns to zero
	TasksPerInstance int // tasks that fit on one instance
	WarmupSeconds    int // instance warm-up for managed scaling
}

// Policy is everything the tier's AWS scaling resources are built
// from, derived by New so that it can be tested on its own.
type Policy struct {
	MinTasks, MaxTasks int
	// PeriodSeconds is the period of the backlog metric: SQS publishes its
	// queue metrics once a minute.
	PeriodSeconds int
	// ScaleOutThreshold is the backlog (visible + in flight) at which the
	// scale-out alarm fires, compared with >=: one waiting message is enough
	// to start a task from zero.
	ScaleOutThreshold float64
	// ScaleOutSteps set the task count from the backlog, relative to the
	// threshold as step scaling requires; together they give
	// tasks = min(MaxTasks, ceil(backlog / BacklogPerTask)).
	ScaleOutSteps []Step
	// ScaleInPeriods is how many idle periods (backlog < 1) in a row return
	// the tier to zero tasks.
	ScaleInPeriods int
	// MaxInstances bounds the Auto Scaling group; MinInstances is always 0.
	MaxInstances int
	// TargetCapacity 100 makes managed scaling keep no idle instances.
	TargetCapacity int
	WarmupSeconds  int
}

// Step is one step adjustment: for lower <= backlog-threshold < upper (nil:
// no upper bound), run Tasks tasks.
type Step struct {
	Lower float64
	Upper *float64
	Tasks int
}

// maxSteps is the most step adjustments one Application Auto Scaling policy takes.
const maxSteps = 20

// New validates a tier's scaling settings and derives its policy.
func New(c Config) (Policy, error) {
	switch {
	case c.MaxTasks < 1:
		return Policy{}, fmt.Errorf("max tasks %d: want at least 1", c.MaxTasks)
	case c.BacklogPerTask < 1:
		return Policy{}, fmt.Errorf("backlog per task %d: want at least 1", c.BacklogPerTask)
	case c.IdleMinutes < 1 || c.IdleMinutes > 1440:
		return Policy{}, fmt.Errorf("idle minutes %d: want 1 to 1440 (CloudWatch evaluates at most a day)", c.IdleMinutes)
	case c.TasksPerInstance < 1:
		return Policy{}, fmt.Errorf("tasks per instance %d: want at least 1", c.TasksPerInstance)
	case c.WarmupSeconds < 0 || c.WarmupSeconds > 10000:
		return Policy{}, fmt.Errorf("warm-up %ds: want 0 to 10000 (the ECS limit)", c.WarmupSeconds)
	}
	p := Policy{
		MaxTasks:          c.MaxTasks,
		PeriodSeconds:     60,
		ScaleOutThreshold: 1,
		ScaleInPeriods:    c.IdleMinutes,
		MaxInstances:      (c.MaxTasks + c.TasksPerInstance - 1) / c.TasksPerInstance,
		TargetCapacity:    100,
		WarmupSeconds:     c.WarmupSeconds,
	}
	// With more task counts than steps, counts above 1 share steps and each
	// step runs the highest count of its range; the first step is always one
	// task, so a lone message never starts more than it needs.
	steps := min(c.MaxTasks, maxSteps)
	prev := 0
	for i := 1; i <= steps; i++ {
		tasks := 1
		if i > 1 {
			tasks = int(math.Ceil(1 + float64(i-1)*float64(c.MaxTasks-1)/float64(steps-1)))
		}
		s := Step{Lower: float64(prev * c.BacklogPerTask), Tasks: tasks}
		if i < steps {
			upper := float64(tasks * c.BacklogPerTask)
			s.Upper = &upper
		}
		p.ScaleOutSteps = append(p.ScaleOutSteps, s)
		prev = tasks
	}
	return p, nil
}

// TasksFor is the task count the scale-out steps give for a backlog.
func (p Policy) TasksFor(backlog float64) int {
	if backlog < p.ScaleOutThreshold {
		return p.MinTasks
	}
	d := backlog - p.ScaleOutThreshold
	for _, s := range p.ScaleOutSteps {
		if d >= s.Lower && (s.Upper == nil || d < *s.Upper) {
			return s.Tasks
		}
	}
	return p.MaxTasks
}
