package inference

// Plan cuts the samples into chunks of whole batches. Batches are fixed ranges
// of samples ([k·B, (k+1)·B)) whatever the chunk size, which is what makes the
// outputs byte-identical across chunkings, splits and resumes.
type Plan struct {
	Samples      int64 `json:"samples"`
	BatchSize    int64 `json:"batch_size"`
	ChunkSamples int64 `json:"chunk_samples"`
}

// targetChunkBytes sizes default chunks: big enough that per-chunk costs (a
// read call, an S3 range request, a checkpoint) vanish, small enough that a few
// chunks in flight stay far below the memory budget.
const targetChunkBytes = 8 << 20

// NewPlan rounds chunk up to a whole number of batches; chunk <= 0 picks a
// default of about targetChunkBytes of input.
func NewPlan(samples, batch, chunk, sampleBytes int64) Plan {
	if chunk <= 0 {
		chunk = max(1, targetChunkBytes/max(1, sampleBytes*batch)) * batch
	}
	chunk = (chunk + batch - 1) / batch * batch
	// Never allocate buffers for more samples than the file has.
	chunk = min(chunk, (samples+batch-1)/batch*batch)
	return Plan{Samples: samples, BatchSize: batch, ChunkSamples: chunk}
}

// Chunks is the number of chunks.
func (p Plan) Chunks() int64 { return (p.Samples + p.ChunkSamples - 1) / p.ChunkSamples }

// Chunk returns the sample range [start,end) of chunk i.
func (p Plan) Chunk(i int64) (start, end int64) {
	start = i * p.ChunkSamples
	return start, min(start+p.ChunkSamples, p.Samples)
}
