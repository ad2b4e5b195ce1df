package jobevents

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
)

func TestPublishInputCarriesTheEventAndItsFilterAttributes(t *testing.T) {
	t.Parallel()
	ev := job.Event{State: job.EventFinished, JobID: "j-1", Tier: "gpu", At: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}
	in := PublishInput("arn:aws:sns:us-east-1:123456789012:events", ev)
	require.Equal(t, "arn:aws:sns:us-east-1:123456789012:events", aws.ToString(in.TopicArn))
	require.JSONEq(t, ev.Body(), aws.ToString(in.Message))
	var back job.Event
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(in.Message)), &back))
	require.Equal(t, job.EventFinished, back.State)
	require.Len(t, in.MessageAttributes, len(ev.Attributes()))
	for name, value := range ev.Attributes() {
		require.Equal(t, "String", aws.ToString(in.MessageAttributes[name].DataType), name)
		require.Equal(t, value, aws.ToString(in.MessageAttributes[name].StringValue), name)
	}
}
