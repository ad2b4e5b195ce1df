package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/inferstack/inferstack/inference"
	"github.com/inferstack/inferstack/internal/atomicfile"
)

// model returns the model at key, downloaded once per process and kept loaded.
func (w *Worker) model(ctx context.Context, key string) (*inference.Model, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.models[key]; ok {
		return m, nil
	}
	data, err := w.store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	// Written aside and renamed: other workers on this machine may be
	// loading the same model at the same moment.
	path := filepath.Join(os.TempDir(), "inferstack-models", strings.ReplaceAll(key, "/", "_"))
	if err := atomicfile.Write(path, data, false); err != nil {
		return nil, err
	}
	m, err := inference.LoadModel(path)
	if err != nil {
		return nil, err
	}
	w.models[key] = m
	return m, nil
}

func (w *Worker) closeModels() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.models {
		m.Close()
	}
}
