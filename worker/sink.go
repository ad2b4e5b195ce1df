package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/job"
)

// checkpoint records how far a job got. A redelivered job whose input and
// model are unchanged resumes after Done chunks with the same batch size,
// chunk size and threads, so its outputs are byte-identical.
type checkpoint struct {
	InputETag    string   `json:"input_etag"`
	ModelSHA256  string   `json:"model_sha256"`
	BatchSize    int64    `json:"batch_size"`
	ChunkSamples int64    `json:"chunk_samples"`
	Threads      int      `json:"threads"`
	Outputs      []string `json:"outputs"`
	Done         int64    `json:"chunks_done"`
}

func chunkKey(jobID string, chunk int64, output int) string {
	return fmt.Sprintf("%s%s/chunk-%06d-%d.bin", job.CheckpointPrefix, jobID, chunk, output)
}

// s3Sink writes outputs to local files (via inference.DirSink) and every
// chunk to S3 as a checkpoint; Finish uploads the outputs, then the manifest.
type s3Sink struct {
	ctx           context.Context
	store         *store
	jobID         string
	resultsPrefix string
	resume        *checkpoint // from an earlier delivery, if compatible
	cp            checkpoint
	dir           string
	local         *inference.DirSink
	plan          inference.Plan

	// Checkpoints upload in the background, in order, so that S3's latency
	// never stalls inference; Finish waits for them.
	uploads   chan chunkUpload
	failed    chan struct{} // closed on the first upload error, kept in uploadErr
	done      chan struct{} // closed when the uploader has returned
	uploadErr error
}

type chunkUpload struct {
	chunk int64
	rows  [][]byte
}

// maxPendingCheckpoints bounds the chunks waiting for upload (outputs only:
// far smaller than the input chunks in flight).
const maxPendingCheckpoints = 8

var _ inference.Sink = (*s3Sink)(nil)

func (s *s3Sink) Start(layout *inference.Layout, plan inference.Plan, outputs []inference.OutputSpec) error {
	dir, err := os.MkdirTemp("", "inferstack-job-")
	if err != nil {
		return fmt.Errorf("job directory: %w", err)
	}
	s.dir, s.plan, s.local = dir, plan, inference.NewDirSink(dir)
	if err := s.local.Start(layout, plan, outputs); err != nil {
		return err
	}
	s.uploads, s.failed, s.done = make(chan chunkUpload, maxPendingCheckpoints), make(chan struct{}), make(chan struct{})
	go s.upload()
	s.cp.BatchSize, s.cp.ChunkSamples, s.cp.Outputs = plan.BatchSize, plan.ChunkSamples, nil
	for _, o := range outputs {
		s.cp.Outputs = append(s.cp.Outputs, o.Name)
	}
	if s.resume == nil {
		return nil
	}
	// Replay the checkpointed chunks into the local outputs.
	for c := range s.resume.Done {
		start, _ := plan.Chunk(c)
		rows := make([][]byte, len(outputs))
		for i := range outputs {
			if rows[i], err = s.store.get(s.ctx, chunkKey(s.jobID, c, i)); err != nil {
				return fmt.Errorf("read checkpoint: %w", err)
			}
		}
		if err := s.local.WriteChunk(start, rows); err != nil {
			return err
		}
	}
	s.cp.Done = s.resume.Done
	return nil
}

func (s *s3Sink) WriteChunk(start int64, rows [][]byte) error {
	if err := s.local.WriteChunk(start, rows); err != nil {
		return err
	}
	copied := make([][]byte, len(rows))
	for i, r := range rows {
		copied[i] = append([]byte(nil), r...) // the engine reuses its buffers
	}
	select {
	case s.uploads <- chunkUpload{chunk: start / s.plan.ChunkSamples, rows: copied}:
		return nil
	case <-s.failed:
		return s.uploadErr
	}
}

// upload writes each chunk's parts, then the checkpoint that counts it.
func (s *s3Sink) upload() {
	defer close(s.done)
	var err error
	for u := range s.uploads {
		if err != nil {
			continue // drain after a failure
		}
		for i, r := range u.rows {
			if err = s.store.put(s.ctx, chunkKey(s.jobID, u.chunk, i), r, "application/octet-stream"); err != nil {
				break
			}
		}
		if err == nil {
			s.cp.Done = u.chunk + 1
			err = s.store.putJSON(s.ctx, job.CheckpointKey(s.jobID), s.cp)
		}
		if err != nil {
			s.uploadErr = fmt.Errorf("checkpoint chunk %d: %w", u.chunk, err)
			close(s.failed)
		}
	}
}

// drain waits for the pending checkpoints.
func (s *s3Sink) drain() error {
	if s.uploads == nil {
		return nil
	}
	close(s.uploads)
	<-s.done
	s.uploads = nil
	return s.uploadErr
}

func (s *s3Sink) Finish(m *inference.Manifest) error {
	if err := s.drain(); err != nil {
		return err
	}
	if err := s.local.Finish(m); err != nil {
		return err
	}
	for _, o := range m.Outputs {
		data, err := os.ReadFile(filepath.Join(s.dir, o.File))
		if err != nil {
			return err
		}
		if err := s.store.put(s.ctx, s.resultsPrefix+o.File, data, "application/octet-stream"); err != nil {
			return fmt.Errorf("upload %s: %w", o.File, err)
		}
	}
	data, err := m.JSON()
	if err != nil {
		return err
	}
	// Last: its presence says the results above are complete.
	if err := s.store.put(s.ctx, s.resultsPrefix+inference.ManifestFile, data, "application/json"); err != nil {
		return fmt.Errorf("upload manifest: %w", err)
	}
	return os.RemoveAll(s.dir)
}

// Abort drops the local files; the checkpoints in S3 stay for the next delivery.
func (s *s3Sink) Abort() {
	_ = s.drain()
	if s.local != nil {
		s.local.Abort()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
