package worker_test

import (
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/testenv"
)

// A worker killed after the manifest, while its finished event is on its
// way (SNS, behind a proxy, accepts the Publish and never answers), leaves
// the job done and unannounced. The next delivery finds the results and
// announces them: exactly the missing event arrives, once.
func TestAKillBetweenTheManifestAndTheEventStillAnnouncesTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Second)
	e.input("signal.npy", 300)
	jobID := e.killWhileAnnouncing(`{"filename": "signal.npy"}`)
	v, f := e.counts(e.queue)
	require.Equal(t, 1, v+f, "the message was not deleted")

	e.start(e.cfg, nil, nil, nil)
	testenv.Eventually(e.t, "the redelivery to end", 30*time.Second, func() bool { return e.drained(e.queue) })
	events := e.events()
	require.Len(t, events, 1, "exactly the missing event")
	require.Equal(t, job.EventFinished, events[0].State)
	require.Equal(t, jobID, events[0].JobID)
	require.EqualValues(t, 300, events[0].Samples)
	require.NotNil(t, events[0].ReceivedAt, "the job's own timings, from its status")
	require.NotNil(t, events[0].EngineFinishedAt)
	require.True(t, e.announced(jobID))

	// Now that it is announced, a further delivery is acknowledged in silence.
	e.send(`{"filename": "signal.npy"}`)
	testenv.Eventually(e.t, "the duplicate to be acknowledged", 30*time.Second, func() bool { return e.drained(e.queue) })
	require.Empty(t, e.events())
}

// killWhileAnnouncing runs a worker process whose finished event hangs (SNS
// behind a proxy that accepts the Publish and never answers) on the job body
// starts, and kills it once the job's manifest is written and its Publish
// held: the job is done, and neither published nor marked announced.
func (e *env) killWhileAnnouncing(body string) string {
	e.t.Helper()
	sns, err := testenv.NewProxy(moto.URL)
	require.NoError(e.t, err)
	defer sns.Close()
	sns.Hold()
	worker, logs := e.process("AWS_ENDPOINT_URL_SNS=" + sns.URL())
	jobID := e.send(body)
	testenv.Eventually(e.t, "the manifest and the publish that hangs", 60*time.Second, func() bool {
		_, done := e.manifest(jobID)
		return done && sns.Held() > 0
	}, logs)
	require.NoError(e.t, worker.Process.Signal(syscall.SIGKILL))
	_, _ = worker.Process.Wait()
	require.Empty(e.t, e.events(), "the killed worker published nothing\n%s", logs)
	require.False(e.t, e.announced(jobID), "the status must not claim an event that was never sent")
	return jobID
}

// announced is what the job's status says about its event.
func (e *env) announced(jobID string) bool {
	data, ok := e.get(job.StatusKey(jobID))
	require.True(e.t, ok, "no status for %s", jobID)
	var s job.Status
	require.NoError(e.t, json.Unmarshal(data, &s))
	return s.Announced
}
