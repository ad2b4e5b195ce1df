package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/internal/emulator"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
	"github.com/inferstack/inferstack/internal/testenv"
	"github.com/inferstack/inferstack/worker"
)

// ceilingQueue enforces what moto does not: SQS refuses to extend a
// message's visibility past a ceiling counted from the ReceiveMessage
// request that returned it, with SQS's own answer. It records the receive
// count of every delivery.
type ceilingQueue struct {
	worker.Queue
	ceiling time.Duration

	mu       sync.Mutex
	asked    map[string]time.Time // receipt handle: when its ReceiveMessage was sent
	receives []int
	refused  int
}

func (q *ceilingQueue) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	asked := time.Now()
	out, err := q.Queue.ReceiveMessage(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range out.Messages {
		q.asked[aws.ToString(m.ReceiptHandle)] = asked
		n, err := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
		if err != nil {
			return nil, fmt.Errorf("the worker must ask for the receive count: %w", err)
		}
		q.receives = append(q.receives, n)
	}
	return out, nil
}

func (q *ceilingQueue) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	q.mu.Lock()
	asked, ok := q.asked[aws.ToString(in.ReceiptHandle)]
	beyond := ok && time.Since(asked)+time.Duration(in.VisibilityTimeout)*time.Second > q.ceiling
	if beyond {
		q.refused++
	}
	q.mu.Unlock()
	if beyond {
		// As SQS answers (JSON protocol): 400, InvalidParameterValue.
		return nil, &smithy.OperationError{ServiceID: "SQS", OperationName: "ChangeMessageVisibility", Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusBadRequest}},
			Err: &smithy.GenericAPIError{Code: "InvalidParameterValue", Fault: smithy.FaultClient, Message: fmt.Sprintf(
				"Value %d for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [%d seconds]",
				in.VisibilityTimeout, int(q.ceiling.Seconds()))},
		}}
	}
	return q.Queue.ChangeMessageVisibility(ctx, in, opts...)
}

func (q *ceilingQueue) deliveries() (receives []int, refused int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]int(nil), q.receives...), q.refused
}

// pacedCheckpoints delays every object written under prefix: each chunk's
// checkpoint costs at least delay, so a job of many chunks outlasts the
// ceilings however fast the machine runs the model.
type pacedCheckpoints struct {
	s3io.Objects
	prefix string
	delay  time.Duration
}

func (p pacedCheckpoints) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if strings.HasPrefix(aws.ToString(in.Key), p.prefix) {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return p.Objects.PutObject(ctx, in, opts...)
}

// pacedReads delays every ranged GET of key, or until the read is cancelled.
type pacedReads struct {
	s3io.Objects
	key   string
	delay time.Duration
}

func (p pacedReads) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if aws.ToString(in.Key) == p.key && in.Range != nil {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return p.Objects.GetObject(ctx, in, opts...)
}

// A job that cannot finish one chunk before the ceiling is not handed over
// to fresh copies for ever (each a first receive, never dead-lettered): the
// copies count the stalls in a row, and the maxReceives-th ends the job with
// an error record and a dead letter saying why.
func TestAJobWithoutProgressBeforeTheCeilingIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Second)
	slowJob(e)
	q := &ceilingQueue{Queue: e.sqs, ceiling: 6 * time.Second, asked: map[string]time.Time{}}
	cfg := e.cfg
	cfg.VisibilityCeiling = q.ceiling
	logs := &emulator.LockedBuffer{}
	e.startWith(cfg, parts{queue: q, objects: pacedReads{Objects: e.s3, key: job.InputPrefix + "long.npy", delay: time.Minute},
		log: slog.New(slog.NewJSONHandler(logs, nil))})
	jobID := e.send(`{"filename": "long.npy"}`)

	testenv.Eventually(e.t, "the error record", 40*time.Second, func() bool { _, ok := e.get("errors/" + jobID + ".json"); return ok }, logs)
	record, _ := e.get("errors/" + jobID + ".json")
	require.Contains(t, string(record), fmt.Sprintf("gave up after %d deliveries in a row that finished no chunk within the 6s visibility ceiling", cfg.MaxReceives))
	receives, _ := q.deliveries()
	require.Equal(t, []int{1, 1, 1, 1, 1}, receives, "each stalled delivery was a fresh copy, counted by the copies\n%s", logs)
	testenv.Eventually(e.t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
}

// A job longer than the visibility ceiling (6 s here, 12 h on SQS) runs on
// across it: before each ceiling its worker stops at a chunk boundary and
// replaces the message with a fresh copy, which one of the two workers
// resumes from the checkpoint. Every delivery is a first receive, so
// however long the job, it never nears maxReceives, and the result is the
// bytes of an uninterrupted run.
func TestAJobRunsAcrossVisibilityCeilingsOnFreshMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 5*time.Second)
	input := slowJob(e)
	// 100 chunks: a delivery's resume re-reads the tail objects of every
	// chunk since the last part (no part fills here), at most 100 GETs.
	e.cfg.ChunkSamples = 400
	q := &ceilingQueue{Queue: e.sqs, ceiling: 12 * time.Second, asked: map[string]time.Time{}}
	cfg := e.cfg
	cfg.VisibilityCeiling = q.ceiling
	// 100 chunks, each checkpointed in 250 ms or more: 25 s or more on any
	// machine, where a delivery gets about 6 s (the ceiling less a
	// visibility and a beat) before it hands over, and its 5 s visibility
	// outlasts a hand-over's wait for up to 8 paced checkpoints.
	paced := pacedCheckpoints{Objects: e.s3, prefix: job.CheckpointPrefix, delay: 250 * time.Millisecond}
	logs := &emulator.LockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	e.startWith(cfg, parts{queue: q, objects: paced, log: log})
	e.startWith(cfg, parts{queue: q, objects: paced, log: log})
	dispatched := time.Now().UTC()
	e.sendDispatched(`{"filename": "long.npy"}`, dispatched)
	req, err := job.Parse([]byte(`{"filename": "long.npy"}`))
	require.NoError(t, err)

	testenv.Eventually(e.t, "the manifest", 180*time.Second, func() bool { _, ok := e.manifest(req.JobID); return ok }, logs)
	testenv.Eventually(e.t, "the queue to drain", 30*time.Second, func() bool { return e.drained(e.queue) })
	m := e.requireResults(req.JobID, e.reference(input))
	require.Greater(t, m.ResumedAt, int64(0), "the last delivery resumed from a checkpoint")
	require.True(t, e.drained(e.dlq))

	receives, refused := q.deliveries()
	t.Logf("deliveries' receive counts: %v", receives)
	// A copy is a first receive; a second one only happens when a hand-over
	// outlasts the visibility it had left (a loaded machine), and it ends as
	// one result all the same.
	require.Less(t, slices.Max(receives), cfg.MaxReceives, "receive counts %v reached maxReceives\n%s", receives, logs)
	require.GreaterOrEqual(t, len(receives), 4, "three ceilings crossed: four deliveries at least\n%s", logs)
	require.Zero(t, refused, "the worker hands over before SQS refuses")
	require.NotContains(t, logs.String(), "taken back")
	require.Equal(t, len(receives)-1, strings.Count(logs.String(), "job handed over to a fresh copy"), "%s", logs)

	events := e.events()
	require.Len(t, events, 1, "one job, one event, however many messages carried it")
	require.Equal(t, job.EventFinished, events[0].State)
	require.True(t, dispatched.Equal(*events[0].DispatchedAt), "the copies carry the message's attributes")
}
