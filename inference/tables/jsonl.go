package tables

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

func init() {
	RegisterFormat("jsonl", []string{".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz"}, openJSONL, planText(nil))
}

// openJSONL reads JSON Lines: one object a line, blank lines skipped, plain or gzip. The columns are
// the keys of the sampled lines (Options.InferRows) in order of first appearance; a key first seen
// later is ignored, a missing key is a null. See text.go for types and row counts.
//
// A byte range (Options.Range, as PlanRanges cuts them: whole lines) is read with the schema the
// whole file gets, its keys and types from the top of the file, which is read for them.
func openJSONL(r io.ReaderAt, size int64, name string, opts Options) (Reader, error) {
	if rg := opts.Range; rg != nil && *rg == (Range{Unit: RangeBytes, From: 0, To: size}) {
		opts.Range = nil
	}
	if rg := opts.Range; rg != nil {
		if err := textRange(r, size, name, *rg); err != nil {
			return nil, err
		}
		if opts.schema == nil {
			whole := opts
			whole.Range, whole.StartRow = nil, 0
			top, err := openJSONL(r, size, name, whole)
			if err != nil {
				return nil, err
			}
			opts.schema = top.Schema()
			top.Close() //nolint:errcheck // read-only
		}
		r, size = io.NewSectionReader(r, rg.From, rg.To-rg.From), rg.To-rg.From
	}
	in, closeIn, err := maybeGunzip(r, size)
	if err != nil {
		return nil, badf("%s: gzip: %v", name, err)
	}
	src := &jsonlSource{r: bufio.NewReaderSize(in, 64<<10), index: map[string]int{}, open: opts.schema == nil}
	if opts.schema != nil {
		for i, f := range opts.schema.Fields() {
			src.keys = append(src.keys, f.Name)
			src.index[f.Name] = i
		}
	}
	t, err := newTextReader(name, opts, src, true, 0)
	if err != nil {
		_ = closeIn() // already failing: the first error is the one to report
		return nil, err
	}
	src.open = false // the header is fixed after the sample
	return &closingText{t, closeIn}, nil
}

type jsonlSource struct {
	r     *bufio.Reader
	line  int64
	keys  []string
	index map[string]int
	open  bool // still learning keys
}

func (s *jsonlSource) header() []string { return s.keys }

func (s *jsonlSource) next() ([]any, int64, error) {
	for {
		raw, err := s.r.ReadBytes('\n')
		if len(raw) == 0 && err != nil {
			if err == io.EOF {
				return nil, s.line, io.EOF
			}
			return nil, s.line, err
		}
		s.line++
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			if err == io.EOF {
				return nil, s.line, io.EOF
			}
			continue
		}
		cells, perr := s.parse(raw)
		if perr != nil {
			return nil, s.line, perr
		}
		return cells, s.line, nil
	}
}

// skip reads the next row's line as next does, without decoding it.
func (s *jsonlSource) skip() (int64, error) {
	for {
		blank, read := true, false
		var err error
		for {
			var raw []byte
			raw, err = s.r.ReadSlice('\n') // a long line comes in pieces (bufio.ErrBufferFull)
			read = read || len(raw) > 0
			blank = blank && len(bytes.TrimSpace(raw)) == 0
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if !read && err != nil {
			return s.line, err
		}
		if err != nil && err != io.EOF {
			return s.line, err
		}
		s.line++
		if !blank {
			return s.line, nil
		}
		if err == io.EOF {
			return s.line, io.EOF
		}
	}
}

// parse decodes one object keeping its keys' order.
func (s *jsonlSource) parse(raw []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	cells := make([]any, len(s.keys))
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("bad JSON: %v", err)
		}
		key, _ := kt.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("bad JSON: %v", err)
		}
		i, ok := s.index[key]
		if !ok {
			if !s.open {
				continue
			}
			i = len(s.keys)
			s.index[key] = i
			s.keys = append(s.keys, key)
			cells = append(cells, nil)
		}
		cells[i] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("bad JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value on the line")
	}
	return slices.Clip(cells), nil
}
