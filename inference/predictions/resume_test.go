package predictions

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/stretchr/testify/require"
)

// TestResumeIsByteIdentical: a run stopped after row group k (its writer
// dropped, as kill -9 would, with rows buffered and bytes past the state
// possibly written), resumed from the checkpointed state on the file's
// first state.Offset bytes, ends byte for byte as the uninterrupted run.
func TestResumeIsByteIdentical(t *testing.T) {
	t.Parallel()
	const n = 3000
	opts := Options{RowGroupBytes: 48 << 10}
	r := makeRows(t, keptFields, testOutputs, n)

	var states []State
	o := opts
	o.OnRowGroup = func(s State) error { states = append(states, s); return nil }
	start := time.Now()
	whole := writeAll(t, r, keptFields, testOutputs, o, 250)
	t.Logf("uninterrupted: %d bytes, %d row groups in %v; state after the last %d bytes of JSON", len(whole), len(states), time.Since(start), len(must(json.Marshal(states[len(states)-1]))))
	require.Greater(t, len(states), 4)

	// The state before any row group, as New leaves it, resumes too.
	var head bytes.Buffer
	fresh, err := New(&head, keptFields, testOutputs, opts)
	require.NoError(t, err)
	states = append([]State{fresh.State()}, states[:len(states)-1]...)

	for k, st := range states {
		// The checkpoint stores the state as JSON.
		var saved State
		require.NoError(t, json.Unmarshal(must(json.Marshal(st)), &saved))

		// The first run: rows written until row group k is out, then
		// some more (buffered, or already past the state's offset).
		var first bytes.Buffer
		var got *State
		o := opts
		o.OnRowGroup = func(s State) error {
			if s.RowGroups == k && got == nil {
				got = &s
			}
			return nil
		}
		wr, err := New(&first, keptFields, testOutputs, o)
		require.NoError(t, err)
		if k > 0 {
			writeIn(t, wr, r, 0, min(int(st.Rows)+400, n), 97)
			require.NotNil(t, got)
			require.Equal(t, st, *got, "same rows, same state")
		}
		_ = wr // dropped: no Close

		// The resumed run: the bytes up to the state's offset, then the
		// rows from the state's on, in other batches.
		out := bytes.NewBuffer(bytes.Clone(first.Bytes()[:saved.Offset]))
		wr, err = Resume(saved, out, keptFields, testOutputs, opts)
		require.NoError(t, err)
		writeIn(t, wr, r, int(saved.Rows), n, 611)
		require.NoError(t, wr.Close())
		require.True(t, bytes.Equal(whole, out.Bytes()), "resumed after row group %d (offset %d): %d bytes, want %d identical", k, saved.Offset, out.Len(), len(whole))
	}
	tbl, _ := readBack(t, whole)
	require.EqualValues(t, n, tbl.NumRows())
}

func TestResumeRefusesAnotherWriter(t *testing.T) {
	t.Parallel()
	r := makeRows(t, keptFields, testOutputs, 500)
	var st State
	opts := Options{RowGroupRows: 100, OnRowGroup: func(s State) error { st = s; return nil }}
	writeAll(t, r, keptFields, testOutputs, opts, 64)

	for _, tc := range []struct {
		name    string
		kept    []arrow.Field
		outputs []Output
		opts    Options
		state   func(State) State
	}{
		{"other outputs", keptFields, testOutputs[:3], opts, nil},
		{"other kept columns", keptFields[:2], testOutputs, opts, nil},
		{"other compression", keptFields, testOutputs, Options{RowGroupRows: 100, Compression: compress.Codecs.Zstd}, nil},
		{"rows out of step", keptFields, testOutputs, opts, func(s State) State { s.Rows++; return s }},
		{"offset out of step", keptFields, testOutputs, opts, func(s State) State { s.Offset += 3; return s }},
		{"no footer", keptFields, testOutputs, opts, func(s State) State { s.Footer = nil; return s }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := st.clone()
			if tc.state != nil {
				s = tc.state(s)
			}
			_, err := Resume(s, &bytes.Buffer{}, tc.kept, tc.outputs, tc.opts)
			require.ErrorIs(t, err, ErrStateMismatch)
		})
	}
}
