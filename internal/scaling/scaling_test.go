package scaling

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPolicyStartsFromZeroAndTracksBacklogPerTask(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{MaxTasks: 1, BacklogPerTask: 1, IdleMinutes: 5, TasksPerInstance: 1},
		{MaxTasks: 4, BacklogPerTask: 3, IdleMinutes: 15, TasksPerInstance: 2, WarmupSeconds: 180},
		{MaxTasks: 20, BacklogPerTask: 2, IdleMinutes: 10, TasksPerInstance: 4},
		{MaxTasks: 50, BacklogPerTask: 5, IdleMinutes: 10, TasksPerInstance: 3},
	} {
		p, err := New(c)
		require.NoError(t, err)
		require.Zero(t, p.MinTasks)
		require.Equal(t, 1.0, p.ScaleOutThreshold, "one waiting message starts a task")
		require.Equal(t, 0, p.TasksFor(0), "no backlog, no tasks")
		require.Equal(t, 1, p.TasksFor(1), "a single message starts one task from zero")
		require.LessOrEqual(t, len(p.ScaleOutSteps), maxSteps)
		require.Equal(t, c.IdleMinutes, p.ScaleInPeriods)
		require.Equal(t, int(math.Ceil(float64(c.MaxTasks)/float64(c.TasksPerInstance))), p.MaxInstances)
		require.Equal(t, 100, p.TargetCapacity)

		// Steps tile [0, inf) without gaps, with non-decreasing task counts.
		require.Zero(t, p.ScaleOutSteps[0].Lower)
		for i, s := range p.ScaleOutSteps {
			if i == len(p.ScaleOutSteps)-1 {
				require.Nil(t, s.Upper, "the last step is open-ended")
				require.Equal(t, c.MaxTasks, s.Tasks)
				break
			}
			require.Equal(t, *s.Upper, p.ScaleOutSteps[i+1].Lower)
			require.LessOrEqual(t, s.Tasks, p.ScaleOutSteps[i+1].Tasks)
		}
		// Every backlog gets enough tasks for BacklogPerTask each, capped at MaxTasks,
		// and exactly that where each task count has its own step.
		for backlog := 1; backlog <= 3*c.MaxTasks*c.BacklogPerTask; backlog++ {
			want := min(c.MaxTasks, (backlog+c.BacklogPerTask-1)/c.BacklogPerTask)
			got := p.TasksFor(float64(backlog))
			require.GreaterOrEqual(t, got, want, "backlog %d with %+v", backlog, c)
			if c.MaxTasks <= maxSteps {
				require.Equal(t, want, got, "backlog %d with %+v", backlog, c)
			}
		}
	}
}

// A split job puts its shards on the tier queue, up to job.MaxShards a job
// and several jobs at once: thousands of messages hold the tier at its
// MaxTasks, and as they drain the count follows them down to one.
func TestThousandsOfShardsHoldTheTierAtMaxTasks(t *testing.T) {
	t.Parallel()
	p, err := New(Config{MaxTasks: 100, BacklogPerTask: 2, IdleMinutes: 15, TasksPerInstance: 2})
	require.NoError(t, err)
	for _, backlog := range []float64{200, 1000, 5000, 1e6} {
		require.Equal(t, 100, p.TasksFor(backlog), "backlog %v", backlog)
	}
	prev := 100
	for backlog := 5000.0; backlog >= 1; backlog-- {
		got := p.TasksFor(backlog)
		require.LessOrEqual(t, got, prev, "draining never adds tasks (backlog %v)", backlog)
		require.GreaterOrEqual(t, got, min(100, int(math.Ceil(backlog/2))), "enough tasks for the shards left (backlog %v)", backlog)
		prev = got
	}
	require.Equal(t, 1, prev, "the last shard, which assembles, keeps one task")
}

func TestPolicyRefusesBadSettings(t *testing.T) {
	t.Parallel()
	good := Config{MaxTasks: 2, BacklogPerTask: 1, IdleMinutes: 5, TasksPerInstance: 1}
	for name, mutate := range map[string]func(*Config){
		"max tasks":          func(c *Config) { c.MaxTasks = 0 },
		"backlog per task":   func(c *Config) { c.BacklogPerTask = 0 },
		"idle minutes":       func(c *Config) { c.IdleMinutes = 0 },
		"idle over a day":    func(c *Config) { c.IdleMinutes = 1441 },
		"tasks per instance": func(c *Config) { c.TasksPerInstance = 0 },
		"warm-up":            func(c *Config) { c.WarmupSeconds = -1 },
	} {
		c := good
		mutate(&c)
		_, err := New(c)
		require.Error(t, err, name)
	}
}
