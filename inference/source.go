package inference

import "github.com/inferstack/inferstack/inference/manifest"

// Feed is one model input as a source fills it: the input's element type
// and the shape of one sample's part of it.
type Feed struct {
	Name        string
	DType       string // a model input type (FeedTypes)
	SampleShape []int64
}

// SampleBytes is the size of one sample's part of the input.
func (f Feed) SampleBytes() int64 { return product(f.SampleShape) * elemSizes[f.DType] }

// Source is a job's input as the pipeline reads it, whatever its format:
// so many samples, each a part of every model input. The pipeline, the
// probe and calibration read through it alone.
type Source interface {
	Samples() int64
	// Feeds are the model's inputs, in the model's order.
	Feeds() []Feed
	// Read fills dst, one buffer per feed with room for end-start samples,
	// with samples [start,end). Calls come from one goroutine at a time.
	Read(start, end int64, dst [][]byte) error
	// Describe is how the manifest records the input's layout.
	Describe() manifest.Layout
}

// sampleBytes is what one sample takes in all of a source's feeds.
func sampleBytes(feeds []Feed) int64 {
	var n int64
	for _, f := range feeds {
		n += f.SampleBytes()
	}
	return n
}

// feedBuffers are buffers for n samples of each feed.
func feedBuffers(feeds []Feed, n int64) [][]byte {
	bufs := make([][]byte, len(feeds))
	for i, f := range feeds {
		bufs[i] = make([]byte, n*f.SampleBytes())
	}
	return bufs
}

// feedViews are bufs from sample first on.
func feedViews(feeds []Feed, bufs [][]byte, first int64) [][]byte {
	views := make([][]byte, len(feeds))
	for i, f := range feeds {
		views[i] = bufs[i][first*f.SampleBytes():]
	}
	return views
}
