package results

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
)

// partTarget is the size at which an output's open part is sealed and
// uploaded: S3's minimum, or more for an output so large that parts of the
// minimum would be more than s3io.MaxParts. Parts are sealed at chunk boundaries
// once they hold at least the target, so all but the last are at least the
// target: at most s3io.MaxParts-1 of them, and the last.
func partTarget(fileBytes int64) int64 {
	return max(s3io.MinPartBytes, (fileBytes+s3io.MaxParts-2)/(s3io.MaxParts-1))
}

// partCapacity is the most an open part can hold: the header, then whole
// chunks of chunkRows bytes until they reach the target.
func partCapacity(target, header, chunkRows, fileBytes int64) int64 {
	if chunkRows <= 0 {
		return min(fileBytes, header)
	}
	return min(fileBytes, header+(target+chunkRows-1)/chunkRows*chunkRows)
}

// tailKey holds chunk's rows of the outputs whose open part they went into.
func tailKey(jobID string, chunk int64) string {
	return fmt.Sprintf("%s%s/tail-%06d.bin", job.CheckpointPrefix, jobID, chunk)
}

// npySink streams each .npy output file to S3 as a multipart upload, with no
// local files and no output ever whole in memory. A file's bytes collect in
// its open part; at the first chunk boundary where the open part reaches
// partTarget it is sealed and uploaded in the background, so a chunk's rows
// go up once, in a part. Rows left in an open part at a chunk's end go to
// that chunk's tail object too, so that the checkpoint written after the
// chunk covers them: only these bytes (less than a part per output) go up
// twice, and none at all when a chunk's rows fill a part. Finish uploads
// the last parts (or, for an output that never filled one, the whole file
// in one PUT), completes the uploads, and writes the manifest last.
type npySink struct {
	ctx           context.Context
	store         *s3io.Store
	scope         string // Target.Scope: where its checkpoint and tails go
	resultsPrefix string
	rowsOnly      bool        // no .npy header: a shard's rows
	resume        *Checkpoint // from an earlier delivery, if compatible
	cp            Checkpoint  // what identifies the run; the rest is filled per write

	plan    inference.Plan
	files   []inference.OutputFile
	streams []*resultStream

	// Uploads run in the background, at most maxUploads at a time; the
	// checkpointer writes each chunk's checkpoint, in order, once what the
	// chunk uploaded is in S3. Finish waits for them.
	background
	slots   chan struct{}
	tasks   sync.WaitGroup
	records chan *chunkRecord
	stopped chan struct{} // closed when the checkpointer has returned
}

// maxUploads bounds the requests in flight, and with them the sealed parts
// in memory.
const maxUploads = 4

// maxPendingCheckpoints bounds the chunks whose checkpoint waits for their uploads.
const maxPendingCheckpoints = 8

var _ inference.Sink = (*npySink)(nil)

// resultStream is one output file on its way to S3. Only the engine's writer
// (Start, WriteChunk, Finish, one at a time) touches it.
type resultStream struct {
	key       string
	header    int64 // bytes before the first row
	rowBytes  int64
	fileBytes int64
	target    int64
	capacity  int64
	uploadID  string
	parts     []*resultPart
	open      *partBuffer // the bytes after the last part
	openFrom  int64       // the first chunk whose rows are in open
	completed bool
	free      chan *partBuffer
}

// partBuffer holds an open part. Its tail objects and, once sealed, its part
// upload each hold a reference; the last to finish recycles it.
type partBuffer struct {
	b    []byte
	refs atomic.Int32
	home chan *partBuffer
}

func (b *partBuffer) release() {
	if b.refs.Add(-1) == 0 {
		b.b = b.b[:0]
		select {
		case b.home <- b:
		default:
		}
	}
}

// offset is where chunk's rows start in the file: after the header, except
// that nothing comes before chunk 0 but the header's own start.
func (st *resultStream) offset(plan inference.Plan, chunk int64) int64 {
	if chunk == 0 {
		return 0
	}
	start, _ := plan.Chunk(chunk)
	return st.header + min(start, plan.Samples)*st.rowBytes
}

func (st *resultStream) newBuffer() *partBuffer {
	var b *partBuffer
	select {
	case b = <-st.free:
	default:
		b = &partBuffer{b: make([]byte, 0, st.capacity), home: st.free}
	}
	b.refs.Store(1)
	return b
}

type resultPart struct {
	partRecord
	*uploadTask
}

// uploadTask is a request in the background.
type uploadTask struct {
	done chan struct{}
	err  error
}

// chunkRecord is one checkpoint: chunks before done are in S3 once tasks are.
type chunkRecord struct {
	done    int64
	tasks   []*uploadTask
	bytes   int64 // what tasks upload
	write   bool  // the last chunk writes none: Finish follows
	states  []streamState
	written chan struct{} // set: a new upload, always recorded; closed once the checkpointer is past it
}

// streamState is a resultStream as a checkpoint records it.
type streamState struct {
	uploadID  string
	parts     []*resultPart
	openFrom  int64
	completed bool
}

func (s *npySink) Start(plan inference.Plan, outputs []inference.OutputSpec) error {
	files, headers := inference.NpyOutputs(plan.Samples, outputs)
	if s.rowsOnly {
		headers = make([][]byte, len(headers))
	}
	s.plan, s.files = plan, files
	s.cp.BatchSize, s.cp.ChunkSamples, s.cp.Outputs = plan.BatchSize, plan.ChunkSamples, nil
	for i, o := range outputs {
		s.cp.Outputs = append(s.cp.Outputs, o.Name)
		st := &resultStream{key: s.resultsPrefix + files[i].File, header: int64(len(headers[i])), rowBytes: o.SampleBytes(), free: make(chan *partBuffer, maxUploads)}
		st.fileBytes = st.header + plan.Samples*st.rowBytes
		chunkRows := plan.ChunkSamples * st.rowBytes
		st.target = partTarget(st.fileBytes)
		st.capacity = partCapacity(st.target, st.header, chunkRows, st.fileBytes)
		if st.capacity > s3io.MaxPartBytes {
			return fmt.Errorf("output %s: %w: parts of %d bytes (chunks of %d bytes, %d in all) exceed S3's 5 GiB; use smaller chunks",
				o.Name, inference.ErrBadInput, st.capacity, chunkRows, st.fileBytes)
		}
		st.open = st.newBuffer()
		st.open.b = append(st.open.b, headers[i]...)
		s.streams = append(s.streams, st)
	}
	if s.resume != nil {
		if err := s.restore(*s.resume); err != nil {
			return err
		}
	}
	s.start(s.ctx)
	s.slots, s.stopped = make(chan struct{}, maxUploads), make(chan struct{})
	s.records = make(chan *chunkRecord, maxPendingCheckpoints)
	go s.checkpointer()
	return nil
}

// restore continues cp's uploads: their parts, then the open parts rebuilt
// from the tail objects of chunks after them.
func (s *npySink) restore(cp Checkpoint) error {
	if len(cp.Results) != len(s.streams) {
		return fmt.Errorf("checkpoint records %d outputs, the run has %d: %w", len(cp.Results), len(s.streams), s3io.ErrUploadGone)
	}
	first := cp.Done
	for i, st := range s.streams {
		r := cp.Results[i]
		switch {
		case r.Key != st.key:
			return fmt.Errorf("checkpoint writes %s, the run %s: %w", r.Key, st.key, s3io.ErrUploadGone)
		case r.Completed && cp.Done != s.plan.Chunks(), r.TailFrom > cp.Done, len(r.Parts) > 0 && r.UploadID == "":
			return fmt.Errorf("checkpoint of %s is inconsistent: %w", st.key, s3io.ErrUploadGone)
		}
		st.uploadID, st.completed, st.openFrom = r.UploadID, r.Completed, r.TailFrom
		var partsEnd int64
		for _, p := range r.Parts {
			uploaded := &resultPart{partRecord: p, uploadTask: &uploadTask{done: make(chan struct{})}}
			close(uploaded.done)
			st.parts = append(st.parts, uploaded)
			partsEnd += p.Bytes
		}
		if partsEnd > 0 {
			st.open.b = st.open.b[:0] // the header is in the first part
		}
		if !st.completed {
			first = min(first, st.openFrom)
			if want := st.offset(s.plan, st.openFrom); partsEnd != want {
				return fmt.Errorf("checkpoint of %s: its parts end at byte %d, chunk %d starts at %d: %w", st.key, partsEnd, st.openFrom, want, s3io.ErrUploadGone)
			}
		}
	}
	tails, err := s.getTails(first, cp.Done)
	if err != nil {
		return err
	}
	for c := first; c < cp.Done; c++ {
		data := tails[c-first]
		start, end := s.plan.Chunk(c)
		for _, st := range s.streams {
			if st.completed || c < st.openFrom {
				continue
			}
			n := (end - start) * st.rowBytes
			if int64(len(data)) < n {
				return fmt.Errorf("tail of chunk %d is short: %w", c, s3io.ErrUploadGone)
			}
			st.open.b, data = append(st.open.b, data[:n]...), data[n:]
		}
		if len(data) != 0 {
			return fmt.Errorf("tail of chunk %d is long: %w", c, s3io.ErrUploadGone)
		}
	}
	return nil
}

// getTails reads the tail objects of chunks [first, done), several at a
// time: all of a job's rows since its last part may be in them, and one
// GET after another would spend a delivery's time on a long job's resume.
func (s *npySink) getTails(first, done int64) ([][]byte, error) {
	tails := make([][]byte, done-first)
	g, ctx := errgroup.WithContext(s.ctx)
	g.SetLimit(maxTailReads)
	for c := first; c < done; c++ {
		g.Go(func() error {
			data, err := s.store.Get(ctx, tailKey(s.scope, c))
			if err != nil {
				return fmt.Errorf("read tail of chunk %d: %w: %w", c, s3io.ErrUploadGone, err)
			}
			tails[c-first] = data
			return nil
		})
	}
	return tails, g.Wait()
}

// maxTailReads bounds the GETs of a resume in flight.
const maxTailReads = 16

func (s *npySink) WriteChunk(start int64, rows [][]byte) error {
	if err := s.failure(); err != nil {
		return err
	}
	c := start / s.plan.ChunkSamples
	last := c == s.plan.Chunks()-1

	// A new upload is in a checkpoint before any part goes into it, so that
	// whoever ends the job for good can abort it.
	var recorded chan struct{}
	for i, st := range s.streams {
		if st.uploadID == "" && int64(len(st.open.b)+len(rows[i])) >= st.target {
			id, err := s.store.CreateUpload(s.run, st.key)
			if err != nil {
				return fmt.Errorf("start upload of %s: %w", st.key, err)
			}
			st.uploadID, recorded = id, make(chan struct{})
		}
	}
	if recorded != nil {
		if err := s.enqueue(&chunkRecord{done: c, write: true, states: s.states(), written: recorded}); err != nil {
			return err
		}
	}

	rec := &chunkRecord{done: c + 1, write: !last}
	var tail [][]byte
	var held []*partBuffer
	for i, st := range s.streams {
		st.open.b = append(st.open.b, rows[i]...) // the engine reuses rows
		if int64(len(st.open.b)) >= st.target {
			rec.bytes += int64(len(st.open.b))
			rec.tasks = append(rec.tasks, s.seal(st, c+1, recorded).uploadTask)
			continue
		}
		if !last {
			tail = append(tail, st.open.b[len(st.open.b)-len(rows[i]):])
			rec.bytes += int64(len(rows[i]))
			st.open.refs.Add(1)
			held = append(held, st.open)
		}
	}
	if len(tail) > 0 {
		rec.tasks = append(rec.tasks, s.launch(func(ctx context.Context) error {
			defer func() {
				for _, b := range held {
					b.release()
				}
			}()
			if err := s.store.PutSlices(ctx, tailKey(s.scope, c), tail, "application/octet-stream"); err != nil {
				return fmt.Errorf("checkpoint chunk %d: %w", c, err)
			}
			return nil
		}))
	}
	rec.states = s.states()
	return s.enqueue(rec)
}

// seal uploads st's open part (after the record `after`, if any, is
// written) and opens the next one at chunk next.
func (s *npySink) seal(st *resultStream, next int64, after <-chan struct{}) *resultPart {
	buf := st.open
	p := &resultPart{partRecord: partRecord{Number: int32(len(st.parts) + 1), Bytes: int64(len(buf.b)), Chunks: [2]int64{st.openFrom, next}}}
	st.parts = append(st.parts, p)
	st.open, st.openFrom = st.newBuffer(), next
	key, id := st.key, st.uploadID
	p.uploadTask = s.launch(func(ctx context.Context) error {
		defer buf.release()
		if after != nil {
			select {
			case <-after:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		up, err := s.store.UploadPart(ctx, key, id, p.Number, buf.b)
		p.ETag, p.CRC32 = up.ETag, up.CRC32
		return err
	})
	return p
}

// launch runs fn in the background once a slot is free.
func (s *npySink) launch(fn func(context.Context) error) *uploadTask {
	t := &uploadTask{done: make(chan struct{})}
	select {
	case s.slots <- struct{}{}:
	case <-s.run.Done():
		t.err = s.run.Err()
		s.fail(t.err)
		close(t.done)
		return t
	}
	s.tasks.Add(1)
	go func() {
		defer s.tasks.Done()
		defer func() { <-s.slots }()
		defer close(t.done)
		if t.err = fn(s.run); t.err != nil {
			s.fail(t.err)
		}
	}()
	return t
}

func (s *npySink) enqueue(r *chunkRecord) error {
	select {
	case s.records <- r:
		return nil
	case <-s.failed:
		return s.err
	}
}

// states snapshots the streams for a checkpoint.
func (s *npySink) states() []streamState {
	states := make([]streamState, len(s.streams))
	for i, st := range s.streams {
		states[i] = streamState{uploadID: st.uploadID, parts: st.parts[:len(st.parts):len(st.parts)], openFrom: st.openFrom, completed: st.completed}
	}
	return states
}

// at is the checkpoint of chunks before done in states, whose parts are
// uploaded.
func (s *npySink) at(done int64, states []streamState) Checkpoint {
	cp := s.cp
	cp.Format, cp.Done, cp.Results = checkpointFormat, done, make([]resultProgress, len(states))
	for i, st := range states {
		r := resultProgress{Key: s.streams[i].key, UploadID: st.uploadID, TailFrom: st.openFrom, Completed: st.completed}
		for _, p := range st.parts {
			r.Parts = append(r.Parts, p.partRecord)
		}
		cp.Results[i] = r
	}
	return cp
}

// A checkpoint lists every part so far: for a file of thousands of parts,
// hundreds of KiB. Once past bigCheckpoint, one is written only after
// checkpointRatio times its size has gone up since the last, which bounds
// what checkpoints add to the upload to 1/checkpointRatio; the chunks
// between are checkpointed by the next one.
const (
	bigCheckpoint   = 64 << 10
	checkpointRatio = 16
)

// checkpointer writes each record's checkpoint once its uploads are done.
func (s *npySink) checkpointer() {
	defer close(s.stopped)
	var since int64 // bytes uploaded since the last checkpoint
	size := 0       // of the last checkpoint
	for r := range s.records {
		for _, t := range r.tasks {
			<-t.done
		}
		since += r.bytes
		select {
		case <-s.failed:
		default:
			if r.write && (r.written != nil || size <= bigCheckpoint || since >= checkpointRatio*int64(size)) {
				n, err := s.write(s.at(r.done, r.states))
				if err != nil {
					s.fail(fmt.Errorf("checkpoint chunk %d: %w", r.done-1, err))
				}
				since, size = 0, n
			}
		}
		if r.written != nil {
			close(r.written)
		}
	}
}

// write puts a checkpoint, compact (it can be large), and says how large.
func (s *npySink) write(cp Checkpoint) (int, error) {
	data, err := json.Marshal(cp)
	if err != nil {
		return 0, err
	}
	return len(data), s.store.Put(s.run, job.CheckpointKey(s.scope), data, "application/json")
}

// drain waits for the uploads and checkpoints in flight.
func (s *npySink) drain() error {
	if s.records == nil {
		return nil
	}
	close(s.records)
	<-s.stopped
	s.tasks.Wait()
	s.records = nil
	return s.failure()
}

func (s *npySink) Finish(m *inference.Manifest) error {
	if err := s.drain(); err != nil {
		return err
	}
	chunks := s.plan.Chunks()
	var tasks []*uploadTask
	for _, st := range s.streams {
		switch {
		case st.completed:
		case st.uploadID == "":
			// Never as large as a part: the whole file in one PUT.
			key, whole := st.key, st.open.b
			tasks = append(tasks, s.launch(func(ctx context.Context) error {
				if err := s.store.PutSlices(ctx, key, [][]byte{whole}, "application/octet-stream"); err != nil {
					return fmt.Errorf("upload %s: %w", key, err)
				}
				return nil
			}))
		case len(st.open.b) > 0:
			tasks = append(tasks, s.seal(st, chunks, nil).uploadTask)
		}
	}
	for _, t := range tasks {
		<-t.done
	}
	s.tasks.Wait()
	if err := s.failure(); err != nil {
		return err
	}
	multipart := false
	for _, st := range s.streams {
		if st.uploadID != "" && !st.completed {
			parts := make([]s3io.Part, len(st.parts))
			for i, p := range st.parts {
				parts[i] = p.part()
			}
			if err := s.store.CompleteUpload(s.run, st.key, st.uploadID, parts); err != nil {
				return err
			}
			multipart = true
		}
		st.completed = true
	}
	if multipart {
		// A delivery that dies before the manifest resumes to it, rather
		// than finding its uploads gone (completed).
		if _, err := s.write(s.at(chunks, s.states())); err != nil {
			return fmt.Errorf("checkpoint completed uploads: %w", err)
		}
	}
	return putManifest(s.run, s.store, s.resultsPrefix, m, s.files)
}

// Abort waits for what is in flight and keeps the uploads and checkpoints:
// a job handed back or taken back resumes from them. Only a job that ends
// for good aborts its uploads (AbortUploads).
func (s *npySink) Abort() { _ = s.drain() }

// Progress is where the sink got, for abandoning its uploads after it stopped.
func (s *npySink) Progress() *Checkpoint {
	cp := s.at(0, s.states())
	return &cp
}
