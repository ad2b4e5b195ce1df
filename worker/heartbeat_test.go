package worker

// The heartbeat's decisions before SQS's visibility ceiling.

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"
)

func TestBeatHandsOverBeforeTheCeiling(t *testing.T) {
	t.Parallel()
	const h = time.Hour
	for _, c := range []struct {
		name                                string
		elapsed, visibility, every, ceiling time.Duration
		wantExtend                          time.Duration
		wantHandOver                        bool
	}{
		{"early: a full visibility", 1 * h, 15 * time.Minute, 5 * time.Minute, 12 * h, 15 * time.Minute, false},
		{"the last beat whose successor still fits", 11*h + 34*time.Minute, 15 * time.Minute, 5 * time.Minute, 12 * h, 15 * time.Minute, false},
		// 11:40 + 5 min + 15 min crosses 11:59 (the ceiling less a minute's margin).
		{"the next beat would cross: hand over with a full visibility", 11*h + 40*time.Minute, 15 * time.Minute, 5 * time.Minute, 12 * h, 15 * time.Minute, true},
		{"late: what is left of the ceiling", 11*h + 50*time.Minute, 15 * time.Minute, 5 * time.Minute, 12 * h, 9 * time.Minute, true},
		{"past the ceiling: no change at all (0 would release it)", 12 * h, 15 * time.Minute, 5 * time.Minute, 12 * h, 0, true},
		{"whole seconds, rounded down", 11*h + 58*time.Minute + 500*time.Millisecond, 15 * time.Minute, 5 * time.Minute, 12 * h, 59 * time.Second, true},
		{"a small ceiling: its margin is a twentieth", 2 * time.Second, 3 * time.Second, time.Second, 6 * time.Second, 3 * time.Second, true},
		{"a small ceiling, first beat", time.Second, 3 * time.Second, time.Second, 6 * time.Second, 3 * time.Second, false},
	} {
		extend, handOver := beat(c.elapsed, c.visibility, c.every, c.ceiling)
		require.Equal(t, c.wantExtend, extend, c.name)
		require.Equal(t, c.wantHandOver, handOver, c.name)
	}
}

func TestTheCeilingDefaultsToSQSs(t *testing.T) {
	t.Parallel()
	require.Equal(t, 12*time.Hour, Config{}.ceiling())
	require.Equal(t, 6*time.Second, Config{VisibilityCeiling: 6 * time.Second}.ceiling())
}

func TestCeilingRefusedIsSQSsAnswerAndNoOther(t *testing.T) {
	t.Parallel()
	answer := func(code, msg string) error {
		return &smithy.OperationError{ServiceID: "SQS", OperationName: "ChangeMessageVisibility", Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
			Err:      &smithy.GenericAPIError{Code: code, Message: msg, Fault: smithy.FaultClient},
		}}
	}
	require.True(t, ceilingRefused(answer("InvalidParameterValue",
		"Value 900 for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]")))
	require.False(t, ceilingRefused(answer("ReceiptHandleIsInvalid", "The receipt handle has expired")))
	require.False(t, ceilingRefused(answer("MessageNotInflight", "")))
	require.False(t, ceilingRefused(errors.New("connection reset")))
}
