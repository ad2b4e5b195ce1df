package inference

import (
	"context"
	"fmt"
	"slices"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferstack/inferstack/inference/calibration"
)

// ortBench times settings of the job's model on the input's first samples:
// the calibration.Bench the engine searches with.
type ortBench struct {
	ctx     context.Context
	job     Pass
	src     Source
	outputs []OutputSpec
	epoch   time.Time

	candidates []int            // the thread counts compared
	sessions   map[int]*Session // by thread count, created when first needed
	sessTime   time.Duration    // creating sessions, reported apart from the search
	head       [][]byte         // the first headN samples of each feed, read on demand
	headN      int64
	setups     map[int64]*batchSetup
}

var _ calibration.Bench = (*ortBench)(nil)

// newORTBench is a bench for job with sess, the session the run already has:
// the only candidate where the job sets its threads.
func newORTBench(ctx context.Context, job Pass, src Source, outputs []OutputSpec, sess *Session) *ortBench {
	b := &ortBench{ctx: ctx, job: job, src: src, outputs: outputs, epoch: time.Now(),
		candidates: []int{sess.Threads}, sessions: map[int]*Session{}, setups: map[int64]*batchSetup{}}
	if job.Threads == 0 {
		b.candidates = calibration.ThreadCandidates(usableCPUs())
	}
	if slices.Contains(b.candidates, sess.Threads) {
		b.sessions[sess.Threads] = sess
	}
	return b
}

// Now is the time since the bench was created.
func (b *ortBench) Now() time.Duration { return time.Since(b.epoch) }

// OpenSession creates the candidate session with threads on first use.
func (b *ortBench) OpenSession(threads int) error {
	_, err := b.session(threads)
	return err
}

// session returns the candidate session with threads, creating it on first use.
func (b *ortBench) session(threads int) (*Session, error) {
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
func (b *ortBench) SessionCost(threads int) time.Duration {
	return b.job.Model.sessionCost(b.job.Device, threads)
}

// batchSetup holds pre-created tensors for one batch size, shared by every
// session: tensors are not tied to a session.
type batchSetup struct {
	in  []ort.Value
	out []ort.Value
}

// Prepare creates the tensors for batch size n over the input's first n
// samples, reading only as many samples as the batches tried need.
func (b *ortBench) Prepare(n int64) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if _, ok := b.setups[n]; ok {
		return nil
	}
	if n > b.headN {
		head := feedBuffers(b.src.Feeds(), n)
		if err := b.src.Read(0, n, head); err != nil {
			return err
		}
		b.head, b.headN = head, n
	}
	in, err := newInputTensors(b.src.Feeds(), n, b.head)
	if err != nil {
		return err
	}
	bufs := make([][]byte, len(b.outputs))
	for i, o := range b.outputs {
		bufs[i] = make([]byte, n*o.SampleBytes())
	}
	out, err := newOutputTensors(b.outputs, n, bufs)
	if err != nil {
		destroyAll(in)
		return err
	}
	b.setups[n] = &batchSetup{in: in, out: out}
	return nil
}

// Run runs one batch of the prepared size at s.
func (b *ortBench) Run(s calibration.Setting) error {
	setup := b.setups[s.Batch]
	if err := b.sessions[s.Threads].Run(setup.in, setup.out); err != nil {
		return fmt.Errorf("calibration run at batch %d: %s", s.Batch, oneLine(err))
	}
	return nil
}

// close destroys the tensors; the sessions are the model's.
func (b *ortBench) close() {
	for _, s := range b.setups {
		destroyAll(s.in)
		destroyAll(s.out)
	}
}
