package demo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/inferstack/inferstack/inference/npy"
)

func TestReportScoresDetectionsAgainstPlantedEvents(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	s := Setup{Window: 8, Windows: 10, Events: 3, Seed: 1}
	require.NoError(t, s.Prepare(dir))

	data, err := os.ReadFile(filepath.Join(dir, truthFile))
	require.NoError(t, err)
	var tr truth
	require.NoError(t, json.Unmarshal(data, &tr))
	require.Len(t, tr.Events, 3)

	// The "detector" finds the first two planted events and one quiet window.
	probs := make([]float32, 2*s.Windows)
	probs[2*tr.Events[0]+1], probs[2*tr.Events[1]+1] = 0.9, 0.7
	for w := range s.Windows {
		if !slices.Contains(tr.Events, w) {
			probs[2*w+1] = 0.6
			break
		}
	}
	require.NoError(t, os.WriteFile(filepath.Join(out, "probs.npy"),
		append(npy.EncodeHeader(npy.Float32, []int64{int64(s.Windows), 2}), npy.FromFloat32(probs)...), 0o644))

	score, err := Report(dir, out)
	require.NoError(t, err)
	require.Equal(t, 3, score.Planted)
	require.Equal(t, 2, score.Found)
	require.Equal(t, 1, score.FalseAlarms)
	require.Equal(t, []int{tr.Events[2]}, score.Missed)
}

func TestReportRefusesIncompleteOutput(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	require.NoError(t, Setup{Window: 8, Windows: 10, Events: 3, Seed: 1}.Prepare(dir))
	full := append(npy.EncodeHeader(npy.Float32, []int64{10, 2}), make([]byte, 80)...)
	require.NoError(t, os.WriteFile(filepath.Join(out, "probs.npy"), full[:len(full)-4], 0o644))
	_, err := Report(dir, out)
	require.ErrorContains(t, err, "complete")
}
