package inference

import "github.com/inferstack/inferstack/inference/manifest"

// ShardAlign is the multiple of samples that shards of an input the engine
// calibrates start at: the largest batch calibration tries, a power of two,
// so that any batch it chooses cuts every shard into the same batches as
// the whole file (which keeps a split job's outputs byte-identical to one
// worker's at the same batch size).
const ShardAlign = maxCalibrationSamples

// PlanSampleShards splits samples into at most n ranges of whole multiples
// of align samples (the last takes the rest), as even as align allows.
func PlanSampleShards(samples int64, n int, align int64) []Range {
	align = max(align, 1)
	units := (samples + align - 1) / align
	n = int(min(int64(max(n, 1)), max(units, 1)))
	shards := make([]Range, n)
	for i := range n {
		shards[i] = Range{Unit: RangeRows, From: min(samples, units*int64(i)/int64(n)*align), To: min(samples, units*int64(i+1)/int64(n)*align)}
	}
	return shards
}

// sliceSource is rows [from, to) of a source, as a source of its own.
type sliceSource struct {
	Source
	from, to int64
}

// Slice is rows [r.From, r.To) of src.
func Slice(src Source, r Range) (Source, error) {
	if r.Unit != RangeRows || r.From < 0 || r.To > src.Samples() || r.From >= r.To {
		return nil, withKind(ErrBadInput, "shard %s %d-%d of an input of %d samples", r.Unit, r.From, r.To, src.Samples())
	}
	return &sliceSource{Source: src, from: r.From, to: r.To}, nil
}

func (s *sliceSource) Samples() int64 { return s.to - s.from }

func (s *sliceSource) Read(start, end int64, dst [][]byte) error {
	return s.Source.Read(s.from+start, s.from+end, dst)
}

func (s *sliceSource) Describe() manifest.Layout { return s.Source.Describe() }
