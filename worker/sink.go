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

func checkpointKey(jobID string) string {
	return job.CheckpointPrefix + jobID + "/checkpoint.json"
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
}

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
	c := start / s.plan.ChunkSamples
	for i, r := range rows {
		if err := s.store.put(s.ctx, chunkKey(s.jobID, c, i), r, "application/octet-stream"); err != nil {
			return fmt.Errorf("checkpoint chunk %d: %w", c, err)
		}
	}
	if err := s.local.WriteChunk(start, rows); err != nil {
		return err
	}
	s.cp.Done = c + 1
	if err := s.store.putJSON(s.ctx, checkpointKey(s.jobID), s.cp); err != nil {
		return fmt.Errorf("checkpoint chunk %d: %w", c, err)
	}
	return nil
}

func (s *s3Sink) Finish(m *inference.Manifest) error {
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
	if s.local != nil {
		s.local.Abort()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
