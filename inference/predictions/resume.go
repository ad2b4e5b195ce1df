package predictions

// How a result file is resumed byte for byte.
//
// arrow-go's file.Writer cannot be resumed: its sink position (a
// utils.TellWrapper counting from 0), its FileMetaDataBuilder and its row
// group count are unexported, it has no constructor taking existing row
// groups' metadata, and FileMetaDataBuilder.AppendRowGroup only starts a new
// empty row group. pqarrow.FileWriter wraps it the same way and writes the
// footer only from that builder, at Close.
//
// What arrow-go does expose is enough without hand-encoding anything: each
// row group is encoded by pqarrow.FileWriter as a complete one-row-group
// file in memory; its bytes between the 4-byte header and the footer are
// the row group, written as they are; its footer, parsed back with
// metadata.NewFileMetaData, gives the row group's metadata (thrift structs
// arrow-go exports through FileMetaData.RowGroups), whose offsets are moved
// to where the row group lands in the result and whose ordinal is set; and
// FileMetaData.AppendRowGroups adds it to the result's footer so far, kept
// serialized in State.Footer. Close writes that footer with
// FileMetaData.WriteTo and the 8-byte trailer (its length and "PAR1", as
// file.Writer's own writeFileMetadata does). An uninterrupted run and a
// resumed one take exactly the same steps from the same State, so their
// bytes are the same by construction, which the tests check.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet/metadata"
)

var magic = []byte("PAR1")

// ErrStateMismatch is returned by Resume when the state was written for
// other columns or options than the ones given.
var ErrStateMismatch = errors.New("predictions state does not match the writer")

// State is a result file's progress at a row-group boundary, small enough
// for a checkpoint (JSON-serializable; a few hundred bytes per row group
// and column). Resume takes it back.
type State struct {
	Offset    int64  `json:"offset"`     // bytes written so far: the next row group starts here
	Rows      int64  `json:"rows"`       // rows in the written row groups
	RowGroups int    `json:"row_groups"` // row groups written
	Footer    []byte `json:"footer"`     // thrift FileMetaData of the written row groups
}

func (s State) clone() State {
	s.Footer = bytes.Clone(s.Footer)
	return s
}

// Resume continues a result file from state on w, which must be positioned
// at state.Offset with the file's first state.Offset bytes before it (an
// upload resumed there, or a file truncated there). kept, outputs and opts
// must be those of the first writer; the schema and writer settings are
// checked against the state (ErrStateMismatch). Rows buffered but not yet in
// a row group when the first writer stopped must be written again.
func Resume(state State, w io.Writer, kept []arrow.Field, outputs []Output, opts Options) (*Writer, error) {
	wr, base, err := build(w, kept, outputs, opts)
	if err != nil {
		return nil, err
	}
	if state.Offset < int64(len(magic)) {
		return nil, fmt.Errorf("%w: offset %d is before the first row group", ErrStateMismatch, state.Offset)
	}
	got, err := metadata.NewFileMetaData(state.Footer, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: footer: %v", ErrStateMismatch, err)
	}
	want, err := metadata.NewFileMetaData(base, nil)
	if err != nil {
		return nil, err
	}
	if !got.Schema.Equals(want.Schema) || !got.KeyValueMetadata().Equals(want.KeyValueMetadata()) ||
		got.GetCreatedBy() != want.GetCreatedBy() || got.NumRowGroups() != state.RowGroups || got.GetNumRows() != state.Rows {
		return nil, fmt.Errorf("%w: other columns, settings or progress", ErrStateMismatch)
	}
	if state.RowGroups > 0 {
		last := got.RowGroup(state.RowGroups - 1)
		if end := last.FileOffset() + last.TotalCompressedSize(); end != state.Offset {
			return nil, fmt.Errorf("%w: the last row group ends at %d, not %d", ErrStateMismatch, end, state.Offset)
		}
		if cc, err := last.ColumnChunk(0); err == nil && cc.Compression() != wr.props.Compression() {
			return nil, fmt.Errorf("%w: compression %v, the state's is %v", ErrStateMismatch, wr.props.Compression(), cc.Compression())
		}
	}
	wr.state = state.clone()
	wr.stats.RowGroups, wr.stats.Rows, wr.stats.Offset = state.RowGroups, state.Rows, state.Offset
	return wr, nil
}

// appendRowGroup takes a one-row-group file as pqarrow encoded it and
// returns the bytes to write at s.Offset and the state after them.
func (s State) appendRowGroup(file []byte) (body []byte, next State, err error) {
	meta, body, err := splitFile(file)
	if err != nil {
		return nil, State{}, err
	}
	if meta.NumRowGroups() != 1 {
		return nil, State{}, fmt.Errorf("encoded %d row groups, want 1", meta.NumRowGroups())
	}
	if err := relocate(meta, s.Offset-int64(len(magic)), int16(s.RowGroups)); err != nil {
		return nil, State{}, err
	}
	acc, err := metadata.NewFileMetaData(s.Footer, nil)
	if err != nil {
		return nil, State{}, fmt.Errorf("parse footer so far: %w", err)
	}
	if err := acc.AppendRowGroups(meta); err != nil {
		return nil, State{}, err
	}
	footer, err := serialize(acc)
	if err != nil {
		return nil, State{}, err
	}
	next = State{
		Offset:    s.Offset + int64(len(body)),
		Rows:      s.Rows + meta.GetNumRows(),
		RowGroups: s.RowGroups + 1,
		Footer:    footer,
	}
	return body, next, nil
}

// splitFile parses a complete Parquet file's footer and returns it with the
// bytes between the header and the footer.
func splitFile(file []byte) (*metadata.FileMetaData, []byte, error) {
	n := len(file)
	if n < 12 || !bytes.Equal(file[:4], magic) || !bytes.Equal(file[n-4:], magic) {
		return nil, nil, errors.New("encoded row group is not a parquet file")
	}
	flen := int(binary.LittleEndian.Uint32(file[n-8 : n-4]))
	if flen > n-12 {
		return nil, nil, fmt.Errorf("encoded footer length %d in %d bytes", flen, n)
	}
	meta, err := metadata.NewFileMetaData(file[n-8-flen:n-8], nil)
	if err != nil {
		return nil, nil, fmt.Errorf("parse encoded footer: %w", err)
	}
	return meta, file[4 : n-8-flen], nil
}

// relocate moves a parsed row group's offsets by delta and sets its
// ordinal. The column chunks are contiguous from the row group's start, so
// moving every offset the same distance keeps them right.
func relocate(meta *metadata.FileMetaData, delta int64, ordinal int16) error {
	for _, rg := range meta.RowGroups {
		if rg.FileOffset != nil {
			off := *rg.FileOffset + delta
			rg.FileOffset = &off
		}
		rg.Ordinal = &ordinal
		for _, c := range rg.Columns {
			if c.OffsetIndexOffset != nil || c.ColumnIndexOffset != nil || c.CryptoMetadata != nil {
				return errors.New("page indexes and encryption are not relocatable")
			}
			c.FileOffset += delta
			m := c.MetaData
			if m == nil {
				return errors.New("column chunk without metadata")
			}
			if m.BloomFilterOffset != nil {
				return errors.New("bloom filters are not relocatable")
			}
			m.DataPageOffset += delta
			if m.DictionaryPageOffset != nil {
				off := *m.DictionaryPageOffset + delta
				m.DictionaryPageOffset = &off
			}
			if m.IndexPageOffset != nil {
				off := *m.IndexPageOffset + delta
				m.IndexPageOffset = &off
			}
		}
	}
	return nil
}

// writeFooter ends the file: the footer, its length, "PAR1".
func writeFooter(w io.Writer, footer []byte) (int64, error) {
	meta, err := metadata.NewFileMetaData(footer, nil)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	n, err := meta.WriteTo(&buf, nil)
	if err != nil {
		return 0, err
	}
	if err := binary.Write(&buf, binary.LittleEndian, uint32(n)); err != nil {
		return 0, err
	}
	buf.Write(magic)
	m, err := w.Write(buf.Bytes())
	return int64(m), err
}
