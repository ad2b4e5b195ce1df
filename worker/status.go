package worker

import (
	"sync"
	"sync/atomic"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
)

// statusWriter keeps a job's status object (job.Status, the type clients
// read) and rewrites status/<job>.json with each change; a client draws its
// progress bar from it and finds the results through it.
type statusWriter struct {
	w  *Worker
	mu sync.Mutex
	s  job.Status
	// shard, where set, makes it the shard's status (job.ShardStatus at
	// job.ShardStatusKey) until promote makes it the job's again.
	shard *job.ShardRef
	// scope is the run's checkpoint scope (results.Target.Scope).
	scope string
	// progressed says a chunk was written during this delivery.
	progressed atomic.Bool
}

// newStatus starts the status of req, received as m at received.
func (w *Worker) newStatus(req job.Request, m sqstypes.Message, received time.Time) *statusWriter {
	received = received.UTC()
	s := job.Status{JobID: req.JobID, Tier: w.cfg.Tier, Worker: w.cfg.Name, Input: req.InputKey(),
		Results: req.ResultsPrefix(), Timings: job.Timings{ReceivedAt: &received}}
	if v := m.MessageAttributes[job.AttrDispatchedAt].StringValue; v != nil {
		if at, err := time.Parse(time.RFC3339Nano, *v); err == nil {
			s.DispatchedAt = &at
		}
	}
	sw := &statusWriter{w: w, s: s, shard: req.Shard, scope: req.JobID}
	if req.Shard != nil {
		sw.scope = job.ShardScope(req.JobID, req.Shard.Plan, req.Shard.Index)
	}
	return sw
}

// set changes the state (and what change says) and writes the object.
// A status that cannot be written is logged, not fatal: it is advisory.
func (sw *statusWriter) set(state job.State, change func(*job.Status)) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.s.State, sw.s.UpdatedAt = state, time.Now().UTC()
	if change != nil {
		change(&sw.s)
	}
	ctx, cancel := sw.w.endingContext()
	defer cancel()
	key, v := job.StatusKey(sw.s.JobID), any(sw.s)
	if sw.shard != nil {
		key = job.ShardStatusKey(sw.s.JobID, sw.shard.Plan, sw.shard.Index)
		v = job.ShardStatus{Index: sw.shard.Index, State: sw.s.State, Worker: sw.s.Worker,
			SamplesDone: sw.s.SamplesDone, SamplesTotal: sw.s.SamplesTotal, UpdatedAt: sw.s.UpdatedAt}
	}
	if err := sw.w.store.PutJSON(ctx, key, v); err != nil {
		sw.w.log.Warn("cannot write status", "job_id", sw.s.JobID, "err", err)
	}
}

// shardRef is the shard whose status sw keeps, nil for a job's (or no status).
func (sw *statusWriter) shardRef() *job.ShardRef {
	if sw == nil {
		return nil
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.shard
}

// promote makes the writer the job's, where it was a shard's: the shard
// that assembles, fails or announces a split job writes the job's own
// status (with shards, where given, as its progress).
func (sw *statusWriter) promote(shards *job.ShardsProgress) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.shard = nil
	if shards != nil {
		sw.s.Shards = shards
	}
}

// adopt makes s, an earlier delivery's, the status this writer keeps.
func (sw *statusWriter) adopt(s job.Status) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.s = s
}

// announced records that the job's ending is on the events topic.
func (sw *statusWriter) announced() {
	sw.set(sw.snapshot().State, func(s *job.Status) { s.Announced = true })
}

// snapshot is a copy of the status as last written.
func (sw *statusWriter) snapshot() job.Status {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.s
}

// doneFrom is the status change of a job done as its manifest m says.
func doneFrom(m *inference.Manifest) func(*job.Status) {
	return func(s *job.Status) {
		s.SamplesDone, s.SamplesTotal = m.Samples, m.Samples
		s.Device, s.FallbackReason = string(m.Device.Used), m.Device.Fallback
		s.EngineStartedAt, s.EngineFinishedAt = &m.StartedAt, &m.FinishedAt
	}
}
