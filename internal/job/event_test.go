package job

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEventBodyRoundTripsWithItsVersion(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	ev := Event{State: EventRefused, JobID: "s3-1", Bucket: "b", Input: "inputs/x.npy", Reason: "why",
		Stage: StageDispatch, ErrorRecord: ErrorKey("s3-1"), At: at}
	var back Event
	require.NoError(t, json.Unmarshal([]byte(ev.Body()), &back))
	ev.Version = EventVersion
	require.Equal(t, ev, back)
	require.NotContains(t, ev.Body(), `"tier"`, "unknown fields are left out")
}

func TestEventBodyBoundsTheReason(t *testing.T) {
	t.Parallel()
	var back Event
	require.NoError(t, json.Unmarshal([]byte(Event{State: EventFailed, Reason: strings.Repeat("é", MaxReasonBytes)}.Body()), &back))
	require.LessOrEqual(t, len(back.Reason), MaxReasonBytes)
	require.True(t, strings.HasPrefix(strings.Repeat("é", MaxReasonBytes), back.Reason), "cut on a character boundary")
}

func TestEventAttributesCarryStateAndKnownTier(t *testing.T) {
	t.Parallel()
	require.Equal(t, map[string]string{"state": "refused"}, Event{State: EventRefused}.Attributes())
	require.Equal(t, map[string]string{"state": "finished", "tier": "gpu"}, Event{State: EventFinished, Tier: "gpu"}.Attributes())
}
