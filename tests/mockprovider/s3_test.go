package main

import (
	"path/filepath"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/policy"
	"github.com/inferstack/inferstack/tests/fakeaws"
)

const (
	intakeURL = "https://sqs.us-east-1.amazonaws.com/123456789012/intake"
	intakeARN = "arn:aws:sqs:us-east-1:123456789012:intake"
)

func TestQueueARN(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		intakeURL: intakeARN,
		"https://sqs.eu-west-1.amazonaws.com/210987654321/q-dlq": "arn:aws:sqs:eu-west-1:210987654321:q-dlq",
		"https://example.com/123456789012/intake":                "",
		"https://sqs.us-east-1.amazonaws.com/123456789012":       "",
		"": "",
	} {
		require.Equal(t, want, queueARN(in), in)
	}
}

func TestS3NotificationRule(t *testing.T) {
	t.Parallel()
	allowing := func(bucket, account string) string {
		return policy.IntakeFromBucket(intakeARN, "arn:aws:s3:::"+bucket, account).JSON()
	}
	for _, tc := range []struct {
		name     string
		policies map[string]string // by queue ARN
		queues   []string
		ok       bool
	}{
		{"no queue policy", nil, []string{intakeARN}, false},
		{"the policy for this bucket", map[string]string{intakeARN: allowing("b", fakeaws.Account)}, []string{intakeARN}, true},
		{"the policy for another bucket", map[string]string{intakeARN: allowing("other", fakeaws.Account)}, []string{intakeARN}, false},
		{"the policy for another account", map[string]string{intakeARN: allowing("b", "210987654321")}, []string{intakeARN}, false},
		{"a policy for another service", map[string]string{intakeARN: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",` +
			`"Principal":{"Service":"sns.amazonaws.com"},"Action":["sqs:SendMessage"],"Resource":["` + intakeARN + `"]}]}`}, []string{intakeARN}, false},
		{"one queue of two allowed", map[string]string{intakeARN: allowing("b", fakeaws.Account)}, []string{intakeARN, intakeARN + "-2"}, false},
		{"no queue destination", nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newSQSState()
			for q, p := range tc.policies {
				st.setPolicy(q, p)
			}
			err := st.checkDestinations("b", fakeaws.Account, tc.queues)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrUnvalidatedDestination)
			}
		})
	}
}

// TestS3NotificationRuleThroughTheStore: a queue policy saved by one
// provider process lets the next put the notification; deleting the policy
// takes that back.
func TestS3NotificationRuleThroughTheStore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sqs.json")
	notification := resource.NewPropertyMapFromMap(map[string]any{
		"bucket": "b",
		"queues": []any{map[string]any{"queueArn": intakeARN, "events": []any{"s3:ObjectCreated:*"}, "filterPrefix": "inputs/"}},
	})
	queuePolicy := resource.NewPropertyMapFromMap(map[string]any{
		"queueUrl": intakeURL, "policy": policy.IntakeFromBucket(intakeARN, "arn:aws:s3:::b", fakeaws.Account).JSON(),
	})

	err := newSQSStore(path).create(typeNotification, "n", notification)
	require.ErrorIs(t, err, ErrUnvalidatedDestination)
	require.Contains(t, err.Error(), "putting S3 Bucket Notification Configuration (b): operation error S3: PutBucketNotificationConfiguration")
	require.NoError(t, newSQSStore(path).create(typeQueuePolicy, "p", queuePolicy))
	require.NoError(t, newSQSStore(path).create(typeNotification, "n", notification))
	require.NoError(t, newSQSStore(path).remove(typeQueuePolicy, queuePolicy))
	require.ErrorIs(t, newSQSStore(path).change(typeNotification, "n", notification, notification), ErrUnvalidatedDestination)
}
