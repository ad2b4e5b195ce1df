package localstack

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

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
