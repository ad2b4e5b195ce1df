package tables

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

func init() { RegisterFormat("csv", []string{".csv", ".csv.gz"}, openCSV, planText(csvHeaderEnd)) }

// openCSV reads comma-separated values with a header row (RFC 4180 quoting), plain or gzip
// (recognised by its magic bytes, whatever the name says). See text.go for types and row counts.
//
// A byte range (Options.Range, as PlanRanges cuts them: whole lines after the header) is read as a
// CSV of its own, the file's header followed by the range's lines, with the schema the whole file
// gets (the types fixed by Options.Types; other columns' types inferred from the top of the file,
// as for the whole file, which then reads the header and the first Options.InferRows rows too).
// Ranges are cut at '\n' without regard to quotes: a CSV with line breaks inside quoted fields
// cannot be read in ranges. It is not refused at planning (which reads only around the cuts), but
// a range that ends inside a quoted field is refused when read, naming the cause, so such a file
// fails loudly rather than losing or splitting a row: plan it as one range.
func openCSV(r io.ReaderAt, size int64, name string, opts Options) (Reader, error) {
	rg := opts.Range
	if rg == nil || *rg == (Range{Unit: RangeBytes, From: 0, To: size}) {
		opts.Range = nil
		return readCSV(r, size, name, opts)
	}
	if err := textRange(r, size, name, *rg); err != nil {
		return nil, err
	}
	body, err := csvHeaderEnd(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	from := max(rg.From, body)
	lines := sectionsReader{io.NewSectionReader(r, 0, body), io.NewSectionReader(r, from, max(rg.To-from, 0))}
	if opts.schema == nil {
		// The header alone gives the schema where Options.Types fixes every column's type; else the
		// top of the file does.
		whole := opts
		whole.Range, whole.StartRow = nil, 0
		head, err := readCSV(io.NewSectionReader(r, 0, body), body, name, whole)
		if err != nil {
			return nil, err
		}
		opts.schema = head.Schema()
		head.Close() //nolint:errcheck // read-only
		for _, f := range opts.schema.Fields() {
			if opts.Types[f.Name] == nil {
				top, err := readCSV(r, size, name, whole)
				if err != nil {
					return nil, err
				}
				opts.schema = top.Schema()
				top.Close() //nolint:errcheck // read-only
				break
			}
		}
	}
	return readCSV(lines, lines.size(), name, opts)
}

// csvHeaderEnd returns the offset just past a CSV file's header line: its first line that is not
// empty (encoding/csv skips empty lines), or size where it has no line end.
func csvHeaderEnd(r io.ReaderAt, size int64) (int64, error) {
	for at := int64(0); at < size; {
		nl, err := indexByteAt(r, size, at, '\n')
		if err != nil || nl < 0 {
			return size, err
		}
		blank := nl == at
		if nl == at+1 {
			var b [1]byte
			if _, err := r.ReadAt(b[:], at); err != nil {
				return 0, err
			}
			blank = b[0] == '\r'
		}
		if !blank {
			return nl + 1, nil
		}
		at = nl + 1
	}
	return size, nil
}

// readCSV reads r as a whole CSV file; a byte range's reader passes its range in opts (r is then
// the header followed by the range's lines).
func readCSV(r io.ReaderAt, size int64, name string, opts Options) (Reader, error) {
	in, closeIn, err := maybeGunzip(r, size)
	if err != nil {
		return nil, badf("%s: gzip: %v", name, err)
	}
	src := &csvSource{r: bufio.NewReaderSize(in, 256<<10), ranged: opts.Range != nil}
	head, _, err := src.nextFields()
	if err == io.EOF {
		_ = closeIn() // already failing: the first error is the one to report
		return nil, badf("%s: empty CSV (no header row)", name)
	}
	if err != nil {
		_ = closeIn() // already failing: the first error is the one to report
		return nil, badf("%s: CSV header: %v", name, err)
	}
	for _, h := range head {
		src.head = append(src.head, string(h))
	}
	src.width = len(head)
	t, err := newTextReader(name, opts, src, false, src.line)
	if err != nil {
		_ = closeIn() // already failing: the first error is the one to report
		return nil, err
	}
	return &closingText{t, closeIn}, nil
}

// csvSource splits records itself where a record has no quote (almost all numeric data), which
// costs a fraction of encoding/csv and no allocation; a record with a quote goes, whole, to
// encoding/csv, so quoting and its errors are encoding/csv's. Either way it reads as encoding/csv
// does: empty lines skipped, \r\n as \n, every record as wide as the header.
type csvSource struct {
	r      *bufio.Reader
	head   []string
	width  int   // fields a record (the header's), 0 while reading the header
	line   int64 // lines read
	fields [][]byte
	long   []byte // a line longer than the bufio buffer, or a quoted record
	ranged bool   // reading a byte range of a file (Options.Range)
}

var _ fieldSource = (*csvSource)(nil)

func (s *csvSource) header() []string { return s.head }

func (s *csvSource) next() ([]any, int64, error) {
	fields, line, err := s.nextFields()
	if err != nil {
		return nil, line, err
	}
	cells := make([]any, len(fields))
	for i, f := range fields {
		cells[i] = string(f)
	}
	return cells, line, nil
}

// readLine returns the next line with its line ending, valid until the next call.
func (s *csvSource) readLine() ([]byte, error) {
	raw, err := s.r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return raw, err
	}
	s.long = append(s.long[:0], raw...)
	for err == bufio.ErrBufferFull {
		raw, err = s.r.ReadSlice('\n')
		s.long = append(s.long, raw...)
	}
	return s.long, err
}

func (s *csvSource) nextFields() ([][]byte, int64, error) {
	body, quoted, line, err := s.nextRecord()
	if err != nil || quoted != nil {
		return quoted, line, err
	}
	s.fields = s.fields[:0]
	for {
		i := bytes.IndexByte(body, ',')
		if i < 0 {
			s.fields = append(s.fields, body)
			break
		}
		s.fields = append(s.fields, body[:i])
		body = body[i+1:]
	}
	if s.width > 0 && len(s.fields) != s.width {
		return nil, line, csv.ErrFieldCount
	}
	return s.fields, line, nil
}

// nextRecord returns the next record and the line it starts on: a record without a quote as its
// line's bytes (body, line ending dropped, fields not split or counted), one with a quote as its
// fields (quoted, checked by encoding/csv). Either is valid until the next call.
func (s *csvSource) nextRecord() (body []byte, quoted [][]byte, line int64, err error) {
	for {
		raw, err := s.readLine()
		if len(raw) == 0 && err == io.EOF {
			return nil, nil, s.line, err
		}
		if err != nil && err != io.EOF {
			return nil, nil, 0, err // as encoding/csv's reader errors were: no line
		}
		s.line++
		start := s.line
		body := raw
		if body[len(body)-1] == '\n' {
			body = body[:len(body)-1]
		}
		if len(body) > 0 && body[len(body)-1] == '\r' {
			body = body[:len(body)-1]
		}
		if len(body) == 0 {
			continue // encoding/csv skips empty lines
		}
		if bytes.IndexByte(body, '"') >= 0 {
			quoted, line, err := s.quoted(raw, start)
			return nil, quoted, line, err
		}
		return body, nil, start, nil
	}
}

// skip reads the next record as nextFields does, with the same errors, but without splitting it.
func (s *csvSource) skip() (int64, error) {
	body, _, line, err := s.nextRecord()
	if err == nil && body != nil && bytes.Count(body, []byte{','})+1 != s.width {
		return line, csv.ErrFieldCount
	}
	return line, err
}

// quoted reads the record that starts with line first (a line holding a quote) through encoding/csv:
// the record runs on while a quoted field is open, that is while it holds an odd number of quotes.
func (s *csvSource) quoted(first []byte, start int64) ([][]byte, int64, error) {
	rec := append([]byte(nil), first...)
	for bytes.Count(rec, []byte{'"'})%2 == 1 {
		raw, err := s.readLine()
		if err != nil && err != io.EOF {
			return nil, 0, err // as encoding/csv's reader errors were: no line
		}
		if len(raw) == 0 {
			if s.ranged {
				return nil, start, errQuoteAtRangeEnd
			}
			break // encoding/csv reports the open quote
		}
		s.line++
		rec = append(rec, raw...)
	}
	cr := csv.NewReader(bytes.NewReader(rec))
	cr.FieldsPerRecord = s.width
	fields, err := cr.Read()
	if pe, ok := err.(*csv.ParseError); ok {
		pe.StartLine += int(start) - 1
		pe.Line += int(start) - 1
		if s.width == 0 {
			return nil, int64(pe.Line), pe // the header's error, said as encoding/csv says it
		}
		return nil, int64(pe.Line), pe.Err
	}
	if err != nil {
		return nil, start, err
	}
	if _, err := cr.Read(); err != io.EOF {
		return nil, start, fmt.Errorf("tables: a quoted CSV record was split wrong (encoding/csv read on: %v)", err)
	}
	s.fields = s.fields[:0]
	for _, f := range fields {
		s.fields = append(s.fields, []byte(f))
	}
	return s.fields, start, nil
}

// errQuoteAtRangeEnd refuses a byte range that ends inside a quoted field: its file has line breaks
// in quoted fields, and ranges cut at line breaks split its records.
var errQuoteAtRangeEnd = errors.New("a quoted field runs past the end of the byte range: the file has line breaks inside quoted fields, " +
	"which byte ranges cut at line breaks split (read it as one range)")

// closingText closes the inflater with the reader.
type closingText struct {
	*textReader
	closeIn func() error
}

func (c *closingText) Close() error {
	return errors.Join(c.textReader.Close(), c.closeIn())
}
