package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/inference/calibration"
	"github.com/inferstack/inferstack/internal/job"
	"github.com/inferstack/inferstack/internal/s3io"
)

// Calibrations keeps the engine's calibration searches in the bucket, one
// object per key (job.CalibrationKey), so that every task and shard on like
// hardware goes on with one search: a container's own cache dies with it.
// Saves are read-merge-writes made conditional on the version read, so
// concurrent savers keep each other's trials.
type Calibrations struct {
	Store *s3io.Store
}

var _ inference.CalibrationStore = Calibrations{}

// saveAttempts bounds the read-merge-write rounds of one save: each lost
// round means another task saved in between, and a save that loses them
// all costs only this run's trials, never the job.
const saveAttempts = 5

// Load reads the search kept under key, nil where none is.
func (c Calibrations) Load(ctx context.Context, key string) (*calibration.State, error) {
	state, _, err := c.read(ctx, key)
	return state, err
}

// read is the search kept under key and its version ("" where none is).
// A corrupt object reads as none, at its version, so that a save replaces it.
func (c Calibrations) read(ctx context.Context, key string) (*calibration.State, string, error) {
	data, etag, err := c.Store.GetWithETag(ctx, job.CalibrationKey(key))
	switch {
	case errors.Is(err, s3io.ErrNotFound):
		return nil, "", nil
	case err != nil:
		return nil, "", err
	}
	var state calibration.State
	if json.Unmarshal(data, &state) != nil {
		return nil, etag, nil
	}
	return &state, etag, nil
}

// Save merges state with the search kept under key and writes the merge,
// if the object is still the version it read; else it reads again.
func (c Calibrations) Save(ctx context.Context, key string, state *calibration.State) error {
	for range saveAttempts {
		kept, etag, err := c.read(ctx, key)
		if err != nil {
			return err
		}
		data, err := json.MarshalIndent(calibration.Merge(kept, state), "", "  ")
		if err != nil {
			return err
		}
		if etag == "" {
			_, err = c.Store.Create(ctx, job.CalibrationKey(key), data)
		} else {
			_, err = c.Store.Replace(ctx, job.CalibrationKey(key), etag, data)
		}
		if !errors.Is(err, s3io.ErrPrecondition) {
			return err
		}
	}
	return fmt.Errorf("save calibration %s: changed by others %d times in a row", key, saveAttempts)
}
