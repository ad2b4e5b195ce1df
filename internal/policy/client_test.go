package policy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
)

// A client follows a split job by listing its shards' statuses and reading
// each one: both are allowed, and only there, not the plan's checkpoints.
func TestClientFollowsAJobsShards(t *testing.T) {
	t.Parallel()
	c := docs()["client"].doc
	prefix := job.ShardStatusPrefix("j-1", "plan-1")
	require.True(t, c.Allows("s3:ListBucket", bucket, map[string]string{"s3:prefix": prefix}), "list %s", prefix)
	key := job.ShardStatusKey("j-1", "plan-1", 3)
	require.True(t, c.Allows("s3:GetObject", bucket+"/"+key, nil), "read %s", key)
	plan := job.PlanPrefix("j-1", "plan-1")
	require.False(t, c.Allows("s3:ListBucket", bucket, map[string]string{"s3:prefix": plan}), "list %s", plan)
	require.False(t, c.Allows("s3:GetObject", bucket+"/"+plan+"plan.json", nil), "read the plan")
}
