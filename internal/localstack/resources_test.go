package localstack

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/job"
)

func TestWithQueueChangesOneQueueOfACopy(t *testing.T) {
	t.Parallel()
	queues := []settings.Queue{settings.IntakeDeadLetterQueue(), settings.IntakeQueue()}
	spec := Spec{Queues: queues}
	WithQueue(job.IntakeQueue, func(q *settings.Queue) { q.VisibilitySeconds = 1 })(&spec)
	require.Equal(t, 1, spec.Queues[1].VisibilitySeconds)
	require.Equal(t, settings.IntakeDeadLetterQueue(), spec.Queues[0], "the other queues as they were")
	require.Equal(t, settings.IntakeQueue(), queues[1], "the caller's list as it was")
}
