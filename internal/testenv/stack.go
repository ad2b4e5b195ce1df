package testenv

import (
	"github.com/inferstack/inferstack/deploy/settings"
	"github.com/inferstack/inferstack/internal/job"
)

// StackSettings are the settings of a test's stack (localstack.Create
// makes its queues from them): both tiers, a 30 s visibility timeout and
// 5 receives before a job is dead-lettered. A test that needs one queue
// otherwise says so with localstack.WithQueue.
func StackSettings() settings.Config {
	return settings.Config{GPUEnabled: true, Workers: settings.Workers{VisibilityTimeout: 30, MaxReceives: 5, QueueRetentionDays: 4}}
}

// TierQueues are the tier's queue and its dead-letter queue, DLQ first, as
// StackSettings has them: a worker test's stack.
func TierQueues(tier job.Tier) []settings.Queue {
	return []settings.Queue{settings.TierDeadLetterQueue(string(tier)), StackSettings().TierQueue(string(tier))}
}
