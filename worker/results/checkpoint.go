package results

import (
	"context"
	"errors"
	"log/slog"

	"github.com/inferstack/inferstack/inference/predictions"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
)

// checkpointFormat marks checkpoints of multipart results. Those of earlier
// releases (format 0: every chunk kept as an object) are not resumed.
const checkpointFormat = 2

// Checkpoint records how far a job got. A redelivered job whose input and
// model are unchanged resumes after Done chunks with the same batch size,
// chunk size and threads, so its outputs are byte-identical, continuing the
// multipart uploads recorded in Results.
type Checkpoint struct {
	Format       int              `json:"format"`
	InputETag    string           `json:"input_etag"`
	ModelSHA256  string           `json:"model_sha256"`
	BatchSize    int64            `json:"batch_size"`
	ChunkSamples int64            `json:"chunk_samples"`
	Threads      int              `json:"threads"`
	Outputs      []string         `json:"outputs"`
	Done         int64            `json:"chunks_done"`
	Results      []resultProgress `json:"results,omitempty"`
	// A Parquet result's: its writer's row-group size, and the writer as
	// it stood after the last row group in the parts and tail (the chunk
	// to resume at, Done, holds its next row).
	RowGroupBytes int64              `json:"row_group_bytes,omitempty"`
	Parquet       *predictions.State `json:"parquet,omitempty"`
}

// resultProgress is how far one output file got: the parts its upload has
// (from the start of the file), then chunks TailFrom to Done, whose rows
// are in tail objects until a part takes them (for a Parquet result, row
// groups TailFrom to Parquet.RowGroups).
type resultProgress struct {
	Key       string       `json:"key"`
	UploadID  string       `json:"upload_id,omitempty"`
	Parts     []partRecord `json:"parts,omitempty"`
	TailFrom  int64        `json:"tail_from"`
	Completed bool         `json:"completed,omitempty"`
}

// partRecord is one uploaded part and the chunks [first, end) whose rows
// it ends with (the first part starts with the .npy header).
type partRecord struct {
	Number int32    `json:"number"`
	ETag   string   `json:"etag"`
	CRC32  string   `json:"crc32"`
	Bytes  int64    `json:"bytes"`
	Chunks [2]int64 `json:"chunks"`
}

func (p partRecord) part() s3io.Part {
	return s3io.Part{Number: p.Number, ETag: p.ETag, CRC32: p.CRC32}
}

func completedParts(records []partRecord) []s3io.Part {
	parts := make([]s3io.Part, len(records))
	for i, p := range records {
		parts[i] = p.part()
	}
	return parts
}

func (cp *Checkpoint) hasUploads() bool {
	for _, r := range cp.Results {
		if r.UploadID != "" {
			return true
		}
	}
	return false
}

// AbortUploads aborts the multipart uploads that jobID's checkpoint records
// and voids the checkpoint. It is for a job that ends for good (poison): a
// job handed back or taken back keeps its uploads for the delivery that
// resumes it. Failures are logged; S3's lifecycle rule aborts what is left
// a day after it began.
func AbortUploads(ctx context.Context, store *s3io.Store, jobID string, log *slog.Logger) {
	var cp Checkpoint
	switch err := store.GetJSON(ctx, job.CheckpointKey(jobID), &cp); {
	case errors.Is(err, s3io.ErrNotFound):
		return
	case err != nil:
		log.Warn("cannot read the checkpoint to abort the job's uploads; S3's lifecycle rule aborts them within a day", "err", err)
		return
	}
	Abandon(ctx, store, jobID, log, &cp)
}

// Abandon aborts the unfinished uploads the checkpoints record (nil ones
// are skipped) and voids jobID's checkpoint, so that no later delivery
// resumes into them.
func Abandon(ctx context.Context, store *s3io.Store, jobID string, log *slog.Logger, cps ...*Checkpoint) {
	var void *Checkpoint
	aborted := map[string]bool{}
	for _, cp := range cps {
		if cp == nil || !cp.hasUploads() {
			continue
		}
		void = &Checkpoint{Format: checkpointFormat, InputETag: cp.InputETag, ModelSHA256: cp.ModelSHA256, Threads: cp.Threads}
		for _, r := range cp.Results {
			if r.UploadID == "" || r.Completed || aborted[r.UploadID] {
				continue
			}
			aborted[r.UploadID] = true
			if err := store.AbortUpload(ctx, r.Key, r.UploadID); err != nil {
				log.Warn("cannot abort a multipart upload; S3's lifecycle rule aborts it within a day", "key", r.Key, "err", err)
			} else {
				log.Info("multipart upload aborted", "key", r.Key)
			}
		}
	}
	if void == nil {
		return
	}
	if err := store.PutJSON(ctx, job.CheckpointKey(jobID), void); err != nil {
		log.Warn("cannot void the checkpoint", "err", err)
	}
}

// Resumable is jobID's checkpoint if run (its input version, model and
// threads) can continue it, so as to write the same bytes, with chunks done
// or uploads begun. The uploads of one it cannot continue are aborted.
func Resumable(ctx context.Context, store *s3io.Store, jobID string, run Checkpoint, log *slog.Logger) *Checkpoint {
	var prior Checkpoint
	if err := store.GetJSON(ctx, job.CheckpointKey(jobID), &prior); err != nil {
		return nil
	}
	if prior.Format == checkpointFormat && prior.InputETag == run.InputETag && prior.ModelSHA256 == run.ModelSHA256 && prior.Threads == run.Threads &&
		(prior.Done > 0 || prior.hasUploads()) {
		return &prior
	}
	Abandon(ctx, store, jobID, log, &prior)
	return nil
}
