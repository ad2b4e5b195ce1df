package settings

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEventsProtocol(t *testing.T) {
	t.Parallel()
	for endpoint, want := range map[string]string{
		"ops@example.com": "email",
		"arn:aws:sqs:us-east-1:123456789012:job-events":     "sqs",
		"arn:aws-cn:sqs:cn-north-1:123456789012:job-events": "sqs",
		"arn:aws:sns:us-east-1:123456789012:topic":          "",
		"arn:aws:sqs:us-east-1:123456789012":                "",
		"arn:aws:sqs::123456789012:q":                       "",
		"ops at example.com":                                "",
		"":                                                  "",
	} {
		got, err := EventsProtocol(endpoint)
		require.Equal(t, want, got, endpoint)
		require.Equal(t, want == "", err != nil, "%q: %v", endpoint, err)
	}
}

// Upload triggers are on and the events topic has no subscriber unless the
// stack says otherwise.
func TestEventsDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	get := func(extra map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			v, ok := map[string]string{"modelPath": dir, "dispatchZip": dir}[k]
			if e, set := extra[k]; set {
				return e, true
			}
			return v, ok
		}
	}
	c, err := FromGetter("dev", get(nil))
	require.NoError(t, err)
	require.True(t, c.UploadTriggers)
	require.Empty(t, c.EventsSubscription)

	c, err = FromGetter("dev", get(map[string]string{"uploadTriggers": "false", "eventsSubscription": "ops@example.com"}))
	require.NoError(t, err)
	require.False(t, c.UploadTriggers)
	require.Equal(t, "ops@example.com", c.EventsSubscription)
}
