package tables

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Range is a part of a table that one worker reads on its own (a shard): rows [From, To) of a table
// that knows its rows (Parquet: Unit RangeRows), or the lines in bytes [From, To) of a text table
// (CSV, JSON Lines: Unit RangeBytes), cut at line starts as PlanRanges cuts them.
type Range struct {
	Unit string `json:"unit"` // RangeRows or RangeBytes
	From int64  `json:"from"`
	To   int64  `json:"to"`
}

// The units of a Range.
const (
	RangeRows  = "rows"
	RangeBytes = "bytes"
)

func (r Range) String() string { return fmt.Sprintf("%s %d-%d", r.Unit, r.From, r.To) }

// PlanFunc splits a table of one format into at most n ranges that cover it in order, reading as
// little of it as the format allows. A single range covers the whole table.
type PlanFunc func(r io.ReaderAt, size int64, name string, n int) ([]Range, error)

// PlanRanges splits the table in r (size bytes) into at most n ranges in the format's own way (see
// the formats' plan functions); format "" is the name's extension's. n <= 1 gives one range, the
// whole table.
func PlanRanges(r io.ReaderAt, size int64, name, format string, n int) ([]Range, error) {
	f, err := lookup(name, format)
	if err != nil {
		return nil, err
	}
	return f.plan(r, size, name, max(n, 1))
}

// planRowGroups cuts a table of row groups (starts: each group's first row; total rows) into at
// most n row ranges at group starts: the k-th cut is the group start nearest k/n of the rows (the
// earlier on a tie), so the ranges are as even as the groups allow; a cut that repeats another or
// falls at either end is dropped, so there are never more ranges than non-empty groups.
func planRowGroups(starts []int64, total int64, n int) []Range {
	cuts := []int64{0}
	for k := 1; k < n; k++ {
		target := total * int64(k) / int64(n)
		i := sort.Search(len(starts), func(i int) bool { return starts[i] >= target })
		best := total
		if i < len(starts) {
			best = starts[i]
		}
		if i > 0 && target-starts[i-1] <= best-target {
			best = starts[i-1]
		}
		if best > cuts[len(cuts)-1] && best < total {
			cuts = append(cuts, best)
		}
	}
	ranges := make([]Range, len(cuts))
	for k, c := range cuts {
		end := total
		if k+1 < len(cuts) {
			end = cuts[k+1]
		}
		ranges[k] = Range{Unit: RangeRows, From: c, To: end}
	}
	return ranges
}

// planLines cuts a text table into at most n byte ranges of whole lines, as Hadoop cuts input
// splits: range k > 0 starts just after the first '\n' at or after k*size/n, so that every line is
// in exactly one range, the one its first byte is in. Range 0 starts at body, the first byte after
// the header (0 without one); no range starts before it. Empty ranges are dropped; where one is left,
// it is the whole file (0 to size, header included). Only the bytes from each k*size/n to the next
// '\n' are read (and the header, by the caller).
func planLines(r io.ReaderAt, size, body int64, n int) ([]Range, error) {
	cuts := []int64{body}
	for k := 1; k < n; k++ {
		nl, err := indexByteAt(r, size, size*int64(k)/int64(n), '\n')
		if err != nil {
			return nil, err
		}
		start := size
		if nl >= 0 {
			start = nl + 1
		}
		start = max(start, body)
		if start > cuts[len(cuts)-1] && start < size {
			cuts = append(cuts, start)
		}
	}
	if len(cuts) == 1 {
		return []Range{{Unit: RangeBytes, From: 0, To: size}}, nil
	}
	ranges := make([]Range, len(cuts))
	for k, c := range cuts {
		end := size
		if k+1 < len(cuts) {
			end = cuts[k+1]
		}
		ranges[k] = Range{Unit: RangeBytes, From: c, To: end}
	}
	return ranges, nil
}

// scanChunk is how many bytes indexByteAt reads at a time: a line's worth, so that finding a line's
// end reads little past it.
const scanChunk = 4 << 10

// indexByteAt returns the offset of the first c at or after from in r's first size bytes, or -1.
func indexByteAt(r io.ReaderAt, size, from int64, c byte) (int64, error) {
	buf := make([]byte, scanChunk)
	for at := from; at < size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-at)], at)
		if i := bytes.IndexByte(buf[:n], c); i >= 0 {
			return at + int64(i), nil
		}
		if n == 0 && err != nil {
			return 0, err
		}
		at += int64(n)
	}
	return -1, nil
}

// isGzip says whether r's bytes start with the gzip magic.
func isGzip(r io.ReaderAt, size int64) (bool, error) {
	if size < 2 {
		return false, nil
	}
	magic := make([]byte, 2)
	if _, err := r.ReadAt(magic, 0); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return magic[0] == 0x1f && magic[1] == 0x8b, nil
}

// planText is the plan of a text format: byte ranges of whole lines after the header that ends at
// headerEnd (nil: none), or one range where the file is gzipped (a deflate stream cannot be
// entered in the middle).
func planText(headerEnd func(io.ReaderAt, int64) (int64, error)) PlanFunc {
	return func(r io.ReaderAt, size int64, name string, n int) ([]Range, error) {
		whole := []Range{{Unit: RangeBytes, From: 0, To: size}}
		if n <= 1 {
			return whole, nil
		}
		gz, err := isGzip(r, size)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if gz {
			return whole, nil
		}
		var body int64
		if headerEnd != nil {
			if body, err = headerEnd(r, size); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		ranges, err := planLines(r, size, body, n)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return ranges, nil
	}
}

// textRange checks a byte range of a text table before it is read: in bytes, of a file that is not
// gzipped, cut at line starts.
func textRange(r io.ReaderAt, size int64, name string, rg Range) error {
	if rg.Unit != RangeBytes {
		return fmt.Errorf("%s: a text table is read in byte ranges, not %s", name, rg.Unit)
	}
	gz, err := isGzip(r, size)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if gz {
		return fmt.Errorf("%s: a gzipped table cannot be read in part (%s): its one range is the whole file", name, rg)
	}
	return lineAligned(r, size, name, rg)
}

// lineAligned checks that a byte range of a text table starts and ends at line starts (or the
// file's ends), as planLines cuts them: a range cut elsewhere would read a line twice or lose one.
func lineAligned(r io.ReaderAt, size int64, name string, rg Range) error {
	if rg.From < 0 || rg.From > rg.To || rg.To > size {
		return fmt.Errorf("%s: %s is not within the file's %d bytes", name, rg, size)
	}
	var b [1]byte
	for _, at := range []int64{rg.From, rg.To} {
		if at == 0 || at == size {
			continue
		}
		if _, err := r.ReadAt(b[:], at-1); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if b[0] != '\n' {
			return fmt.Errorf("%s: %s is not cut at line starts (byte %d is not a line's first)", name, rg, at)
		}
	}
	return nil
}

// sectionsReader reads sections of an io.ReaderAt end to end, as one file: a CSV range read as its
// file's header followed by the range's lines.
type sectionsReader []*io.SectionReader

func (s sectionsReader) size() int64 {
	var n int64
	for _, sec := range s {
		n += sec.Size()
	}
	return n
}

func (s sectionsReader) ReadAt(p []byte, off int64) (int, error) {
	read := 0
	for _, sec := range s {
		if len(p) == 0 {
			break
		}
		if off >= sec.Size() {
			off -= sec.Size()
			continue
		}
		n, err := sec.ReadAt(p, off)
		read += n
		p, off = p[n:], 0
		if err != nil && !errors.Is(err, io.EOF) {
			return read, err
		}
	}
	if len(p) > 0 {
		return read, io.EOF
	}
	return read, nil
}
