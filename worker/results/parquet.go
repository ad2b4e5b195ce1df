package results

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/predictions"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
)

// parquetSink streams a table job's predictions.parquet to S3 as one
// multipart upload, through the same predictions.Writer that `inferstack
// run` writes a local file with, so the two results are the same bytes.
//
// The writer hands over bytes a row group at a time. After each row group
// the bytes since the last part either seal a part (once they reach the
// part target) or the row group's own bytes go up as its tail object, so
// each byte goes up at most twice; then the checkpoint records the
// writer's State, the parts, the upload and the first row group after
// them. A redelivery resumes the writer from that State at the chunk
// holding its next row, drops the rows of that chunk the file already has,
// and rebuilds the open part from the tail objects: the finished file is
// byte-identical (predictions.Resume). Rows after the last row group are
// written again, at most a row group's worth.
//
// Uploads run in order on one goroutine, one step behind the engine's
// writer: at most two open parts in memory.
type parquetSink struct {
	ctx           context.Context
	store         *s3io.Store
	scope         string // Target.Scope: where its checkpoint and tails go
	resultsPrefix string
	kept          []arrow.Field
	opts          predictions.Options
	resume        *Checkpoint // from an earlier delivery, if compatible
	cp            Checkpoint  // what identifies the run

	key     string
	plan    inference.Plan
	files   []inference.OutputFile
	rowSize int64 // bytes of a row of the first output
	w       *predictions.Writer
	skip    int64 // rows before it are in the file already (a resume)
	closing bool  // Close's last row group ends the file: no step for it

	open bytes.Buffer // the file's bytes after its last part

	// The uploader's, once it runs; Finish and Progress read them after it
	// stopped.
	uploadID  string
	parts     []partRecord
	completed bool
	last      *predictions.State // the last checkpointed
	tailFrom  int                // its first row group after the parts

	sealed int // parts the writer has handed to the uploader
	// The open part's bytes up to mark are in tail objects, of row groups
	// openFrom on.
	mark     int
	openFrom int
	steps    chan step
	stopped  chan struct{}
	background
}

var _ inference.RowsSink = (*parquetSink)(nil)

// parquetPartTarget is the size at which the bytes after the last part are
// sealed into part number n (from 1): S3's 5 MiB minimum, doubling every
// 2,000 parts up to 80 MiB, so the 10,000 parts S3 allows hold at least
// 310 GB (parts are sealed only at row-group boundaries, so they are at
// least the target but their total is not known in advance).
func parquetPartTarget(n int) int64 {
	return s3io.MinPartBytes << min((n-1)/2000, 4)
}

// parquetTailKey holds row group rowGroup's bytes until a part takes them
// (with the file's header before the first).
func parquetTailKey(jobID string, rowGroup int) string {
	return fmt.Sprintf("%s%s/tail-predictions-%06d.bin", job.CheckpointPrefix, jobID, rowGroup)
}

func (s *parquetSink) Start(plan inference.Plan, outputs []inference.OutputSpec) error {
	cols, err := inference.PredictionsOutputs(outputs)
	if err != nil {
		return err
	}
	s.plan, s.files = plan, inference.ParquetOutputs(plan.Samples, outputs)
	s.key = s.resultsPrefix + inference.PredictionsFile
	s.rowSize = outputs[0].SampleBytes()
	s.cp.BatchSize, s.cp.ChunkSamples, s.cp.Outputs = plan.BatchSize, plan.ChunkSamples, nil
	if s.resume != nil {
		// The row groups so far fix where the next one ends.
		s.opts.RowGroupBytes = s.resume.RowGroupBytes
	}
	s.cp.RowGroupBytes = s.opts.RowGroupBytes
	for _, o := range outputs {
		s.cp.Outputs = append(s.cp.Outputs, o.Name)
	}
	opts := s.opts
	opts.OnRowGroup = s.rowGroup
	if s.resume != nil {
		if err := s.restore(*s.resume, cols, opts); err != nil {
			return err
		}
	} else if s.w, err = predictions.New(&s.open, s.kept, cols, opts); err != nil {
		return inference.PredictionsError(err)
	}
	s.start(s.ctx)
	s.steps, s.stopped = make(chan step, 1), make(chan struct{})
	go s.uploader()
	return nil
}

// restore continues cp's file: its parts, the row groups' tail objects
// after them, and the writer at the State after them.
func (s *parquetSink) restore(cp Checkpoint, cols []predictions.Output, opts predictions.Options) error {
	if len(cp.Results) != 1 || cp.Results[0].Key != s.key {
		return fmt.Errorf("checkpoint of another result: %w", s3io.ErrUploadGone)
	}
	r := cp.Results[0]
	s.uploadID, s.parts, s.completed, s.last = r.UploadID, r.Parts, r.Completed, cp.Parquet
	s.sealed, s.openFrom, s.tailFrom = len(s.parts), int(r.TailFrom), int(r.TailFrom)
	if s.completed {
		s.skip = s.plan.Samples
		return nil
	}
	if cp.Parquet == nil {
		return fmt.Errorf("checkpoint of %s has no writer state: %w", s.key, s3io.ErrUploadGone)
	}
	var partsEnd int64
	for _, p := range s.parts {
		partsEnd += p.Bytes
	}
	for rg := s.openFrom; rg < cp.Parquet.RowGroups; rg++ {
		data, err := s.store.Get(s.ctx, parquetTailKey(s.scope, rg))
		if err != nil {
			return fmt.Errorf("read the tail of row group %d of %s: %w: %w", rg, s.key, s3io.ErrUploadGone, err)
		}
		s.open.Write(data)
	}
	if partsEnd+int64(s.open.Len()) != cp.Parquet.Offset {
		return fmt.Errorf("checkpoint of %s: its parts and tails end at byte %d, its writer at %d: %w",
			s.key, partsEnd+int64(s.open.Len()), cp.Parquet.Offset, s3io.ErrUploadGone)
	}
	s.mark = s.open.Len()
	w, err := predictions.Resume(*cp.Parquet, &s.open, s.kept, cols, opts)
	if err != nil {
		return fmt.Errorf("resume %s: %w: %w", s.key, s3io.ErrUploadGone, err)
	}
	s.w, s.skip = w, cp.Parquet.Rows
	return nil
}

// WriteChunk stores a chunk of a job without kept columns.
func (s *parquetSink) WriteChunk(start int64, outputs [][]byte) error {
	return s.WriteRows(start, outputs, nil)
}

// WriteRows appends the chunk's rows, less those a resumed file has.
func (s *parquetSink) WriteRows(start int64, outputs [][]byte, kept arrow.RecordBatch) error {
	if err := s.failure(); err != nil {
		return err
	}
	n := int64(len(outputs[0])) / s.rowSize
	if start+n <= s.skip {
		return nil
	}
	if drop := s.skip - start; drop > 0 {
		tail := make([][]byte, len(outputs))
		for i, o := range outputs {
			tail[i] = o[int64(len(o))/n*drop:]
		}
		if kept != nil {
			kept = kept.NewSlice(drop, n)
			defer kept.Release()
		}
		outputs, n = tail, n-drop
	}
	if err := s.w.Write(kept, outputs, int(n)); err != nil {
		return s.writeError(err)
	}
	return nil
}

// writeError is the uploader's error where the writer stopped on it.
func (s *parquetSink) writeError(err error) error {
	if failure := s.failure(); failure != nil {
		return failure
	}
	return fmt.Errorf("write %s: %w", s.key, err)
}

// rowGroup runs after each row group the writer wrote into s.open: the
// bytes since the last part are sealed into a part, or put as the tail,
// and then state is checkpointed, in the background.
func (s *parquetSink) rowGroup(state predictions.State) error {
	if s.closing {
		return nil
	}
	st := step{state: state}
	if int64(s.open.Len()) >= parquetPartTarget(s.sealed+1) {
		st.part, st.data = true, bytes.Clone(s.open.Bytes())
		s.open.Reset()
		s.sealed, s.mark, s.openFrom = s.sealed+1, 0, state.RowGroups
	} else {
		st.data = bytes.Clone(s.open.Bytes()[s.mark:])
		s.mark = s.open.Len()
	}
	st.tailFrom = s.openFrom
	select {
	case s.steps <- st:
		return nil
	case <-s.failed:
		return s.err
	}
}

// step is one row group's upload: a part, or the row group's tail.
type step struct {
	state    predictions.State
	data     []byte
	part     bool
	tailFrom int // the first row group after the parts, once st is up
}

// upload seals st's part, or puts its tail, then checkpoints st.state.
// Only the uploader calls it: it owns the upload and its parts.
func (s *parquetSink) upload(ctx context.Context, st step) error {
	if !st.part {
		if err := s.store.Put(ctx, parquetTailKey(s.scope, st.state.RowGroups-1), st.data, "application/octet-stream"); err != nil {
			return fmt.Errorf("checkpoint %s: %w", s.key, err)
		}
	} else {
		if s.uploadID == "" {
			id, err := s.store.CreateUpload(ctx, s.key)
			if err != nil {
				return fmt.Errorf("start upload of %s: %w", s.key, err)
			}
			// Recorded before any part goes in, so that whoever ends the
			// job for good can abort it; the progress before is kept.
			s.uploadID = id
			if err := s.write(ctx, s.at(s.last)); err != nil {
				return err
			}
		}
		up, err := s.store.UploadPart(ctx, s.key, s.uploadID, int32(len(s.parts)+1), st.data)
		if err != nil {
			return err
		}
		s.parts = append(s.parts, partRecord{Number: up.Number, ETag: up.ETag, CRC32: up.CRC32, Bytes: int64(len(st.data))})
	}
	s.last, s.tailFrom = &st.state, st.tailFrom
	return s.write(ctx, s.at(s.last))
}

// at is the checkpoint of the file as the uploader has it, with the writer
// at state (nil: none to resume from).
func (s *parquetSink) at(state *predictions.State) Checkpoint {
	cp := s.cp
	cp.Format, cp.Parquet = checkpointFormat, state
	switch {
	case s.completed:
		cp.Done = s.plan.Chunks()
	case state != nil:
		cp.Done = state.Rows / s.plan.ChunkSamples
	}
	cp.Results = []resultProgress{{Key: s.key, UploadID: s.uploadID, Parts: slices.Clone(s.parts), TailFrom: int64(s.tailFrom), Completed: s.completed}}
	return cp
}

func (s *parquetSink) write(ctx context.Context, cp Checkpoint) error {
	if err := s.store.PutJSON(ctx, job.CheckpointKey(s.scope), cp); err != nil {
		return fmt.Errorf("checkpoint %s: %w", s.key, err)
	}
	return nil
}

// uploader runs the steps in order; the first error stops the sink.
func (s *parquetSink) uploader() {
	defer close(s.stopped)
	for st := range s.steps {
		if s.failure() != nil {
			continue
		}
		if err := s.upload(s.run, st); err != nil {
			s.fail(err)
		}
	}
}

// drain waits for the steps in flight.
func (s *parquetSink) drain() error {
	if s.steps == nil {
		return nil
	}
	close(s.steps)
	<-s.stopped
	s.steps = nil
	return s.failure()
}

// Finish ends the file (its last rows and footer), uploads what is left as
// the last part, or the whole file in one PUT when it never filled a part,
// completes the upload and writes the manifest last.
func (s *parquetSink) Finish(m *inference.Manifest) error {
	if !s.completed {
		s.closing = true
		if err := s.w.Close(); err != nil {
			return s.writeError(err)
		}
	}
	if err := s.drain(); err != nil {
		return err
	}
	switch {
	case s.completed:
	case s.uploadID == "":
		if err := s.store.PutSlices(s.ctx, s.key, [][]byte{s.open.Bytes()}, "application/octet-stream"); err != nil {
			return fmt.Errorf("upload %s: %w", s.key, err)
		}
	default:
		data := s.open.Bytes()
		up, err := s.store.UploadPart(s.ctx, s.key, s.uploadID, int32(len(s.parts)+1), data)
		if err != nil {
			return err
		}
		s.parts = append(s.parts, partRecord{Number: up.Number, ETag: up.ETag, CRC32: up.CRC32, Bytes: int64(len(data))})
		if err := s.store.CompleteUpload(s.ctx, s.key, s.uploadID, completedParts(s.parts)); err != nil {
			return err
		}
		s.completed = true
		// A delivery that dies before the manifest resumes to it, rather
		// than finding its upload gone (completed).
		if err := s.write(s.ctx, s.at(nil)); err != nil {
			return err
		}
	}
	return putManifest(s.ctx, s.store, s.resultsPrefix, m, s.files)
}

// Abort waits for the steps in flight and keeps the upload and checkpoint:
// a job handed back or taken back resumes from them. Only a job that ends
// for good aborts its upload (AbortUploads).
func (s *parquetSink) Abort() { _ = s.drain() }

// Progress is where the sink got, for abandoning its upload after it stopped.
func (s *parquetSink) Progress() *Checkpoint {
	cp := s.at(nil)
	return &cp
}
