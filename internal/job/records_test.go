package job

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResultsPrefix(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"filename": "a.npy", "job_id": "j1"}`:                              "results/j1/",
		`{"filename": "a.npy", "job_id": "j1", "output_prefix": "day/2"}`:    "results/day/2/",
		`{"filename": "a.npy", "job_id": "j1", "output_prefix": "day/2/"}`:   "results/day/2/",
		`{"filename": "dir/a.npy", "job_id": "j1", "output_prefix": "runs"}`: "results/runs/",
	} {
		r, err := Parse([]byte(body))
		require.NoError(t, err)
		require.Equal(t, want, r.ResultsPrefix(), body)
	}
	r, err := Parse([]byte(`{"filename": "a b.npy"}`))
	require.NoError(t, err)
	require.Equal(t, DefaultResultsPrefix(r.JobID), r.ResultsPrefix())
	require.Equal(t, "inputs/a b.npy", r.InputKey())
}

func TestRedrivePolicy(t *testing.T) {
	t.Parallel()
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(RedrivePolicy("arn:aws:sqs:us-east-1:1:dlq", 5)), &p))
	require.Equal(t, map[string]any{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:dlq", "maxReceiveCount": float64(5)}, p)
}

func TestTruncateKeepsUTF8(t *testing.T) {
	t.Parallel()
	require.Equal(t, "abc", Truncate("abc", 5))
	require.Equal(t, "ab", Truncate("abc", 2))
	require.Equal(t, "a", Truncate("aé", 2), "é is two bytes: cut before it, not inside")
	require.Equal(t, "", Truncate("é", 1))
}

func TestStatusRoundTrips(t *testing.T) {
	t.Parallel()
	s := Status{JobID: "j", State: StateDone, Results: "results/j/", SamplesDone: 9, SamplesTotal: 9, Announced: true}
	data, err := json.Marshal(s)
	require.NoError(t, err)
	require.NotContains(t, string(data), "dispatched_at", "unset times are left out")
	var back Status
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, s, back)
}
