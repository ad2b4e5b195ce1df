package inference

import (
	"fmt"
	"slices"
	"time"

	"github.com/inferstack/inferstack/inference/calibration"
)

// pipelineBench is the calibration.Bench the engine searches with: it hands
// the search's settings to the pipeline's infer stage, one chunk of the job
// each, so that the search times what the job runs (fresh samples, the
// reader and writer working beside it) and keeps the results it computes.
type pipelineBench struct {
	job        Pass
	candidates []int            // the thread counts compared
	sessions   map[int]*Session // by thread count, created when first needed
	sessTime   time.Duration    // creating sessions, reported apart from the search

	next     chan chunkSetting            // the setting of the infer stage's next chunk
	measured chan calibration.Measurement // what that chunk took
	stopped  chan struct{}                // closed by the infer stage when it ends
}

// chunkSetting is how the infer stage runs a chunk: its batch size and the
// session with its thread count.
type chunkSetting struct {
	batch int64
	sess  *Session
}

var _ calibration.Bench = (*pipelineBench)(nil)

// newPipelineBench is a bench for job with sess, the session the run already
// has: the only candidate where the job sets its threads.
func newPipelineBench(job Pass, sess *Session) *pipelineBench {
	b := &pipelineBench{job: job, candidates: []int{sess.Threads}, sessions: map[int]*Session{},
		next: make(chan chunkSetting), measured: make(chan calibration.Measurement, 1), stopped: make(chan struct{})}
	if job.Threads == 0 {
		b.candidates = calibration.ThreadCandidates(usableCPUs())
	}
	if slices.Contains(b.candidates, sess.Threads) {
		b.sessions[sess.Threads] = sess
	}
	return b
}

// OpenSession creates the candidate session with threads on first use.
func (b *pipelineBench) OpenSession(threads int) (time.Duration, error) {
	before := b.sessTime
	_, err := b.session(threads)
	return b.sessTime - before, err
}

// session returns the candidate session with threads, creating it on first use.
func (b *pipelineBench) session(threads int) (*Session, error) {
	if !slices.Contains(b.candidates, threads) {
		return nil, fmt.Errorf("calibration: %d threads is not a candidate", threads)
	}
	if s, ok := b.sessions[threads]; ok {
		return s, nil
	}
	start := time.Now()
	s, err := b.job.Model.Session(b.job.Device, threads)
	b.sessTime += time.Since(start)
	if err != nil {
		return nil, err
	}
	b.sessions[threads] = s
	return s, nil
}

// SessionCost is what the model expects creating the session to take.
func (b *pipelineBench) SessionCost(threads int) time.Duration {
	return b.job.Model.sessionCost(b.job.Device, threads)
}

// Run has the infer stage run its next chunk at s and returns what it took.
func (b *pipelineBench) Run(s calibration.Setting) (calibration.Measurement, error) {
	select {
	case b.next <- chunkSetting{batch: s.Batch, sess: b.sessions[s.Threads]}:
	case <-b.stopped:
		return calibration.Measurement{}, calibration.ErrStopped
	}
	select {
	case m := <-b.measured:
		return m, nil
	case <-b.stopped:
		// The stage may have ended right after its last chunk.
		select {
		case m := <-b.measured:
			return m, nil
		default:
			return calibration.Measurement{}, calibration.ErrStopped
		}
	}
}
