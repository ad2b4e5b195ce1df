package tables

import (
	"encoding/csv"
	"errors"
	"io"
)

func init() { RegisterFormat("csv", []string{".csv", ".csv.gz"}, openCSV) }

// openCSV reads comma-separated values with a header row (RFC 4180 quoting), plain or gzip
// (recognised by its magic bytes, whatever the name says). See text.go for types and row counts.
func openCSV(r io.ReaderAt, size int64, name string, opts Options) (Reader, error) {
	in, closeIn, err := maybeGunzip(r, size)
	if err != nil {
		return nil, badf("%s: gzip: %v", name, err)
	}
	cr := csv.NewReader(in)
	cr.ReuseRecord = false
	head, err := cr.Read()
	if err == io.EOF {
		return nil, badf("%s: empty CSV (no header row)", name)
	}
	if err != nil {
		return nil, badf("%s: CSV header: %v", name, err)
	}
	src := &csvSource{r: cr, head: append([]string(nil), head...), closeIn: closeIn}
	t, err := newTextReader(name, opts, src, false)
	if err != nil {
		_ = closeIn() // already failing: the first error is the one to report
		return nil, err
	}
	return &closingText{t, closeIn}, nil
}

type csvSource struct {
	r       *csv.Reader
	head    []string
	closeIn func() error
}

func (s *csvSource) header() []string { return s.head }

func (s *csvSource) next() ([]any, int64, error) {
	rec, err := s.r.Read()
	if err != nil {
		if pe, ok := err.(*csv.ParseError); ok {
			return nil, int64(pe.Line), pe.Err
		}
		return nil, 0, err
	}
	line, _ := s.r.FieldPos(0)
	cells := make([]any, len(rec))
	for i, c := range rec {
		cells[i] = c
	}
	return cells, int64(line), nil
}

// closingText closes the inflater with the reader.
type closingText struct {
	*textReader
	closeIn func() error
}

func (c *closingText) Close() error {
	return errors.Join(c.textReader.Close(), c.closeIn())
}
