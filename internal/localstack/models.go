package localstack

import (
	"fmt"
	"path/filepath"

	"github.com/inferstack/inferstack/internal/job"
)

// Model is one model file the stack's operator uploads, and its key.
type Model struct {
	File string
	Key  string // models/<the file's base name>
}

// Name is what a job names the model by ({"model": NAME}).
func (m Model) Name() string { return filepath.Base(m.Key) }

// PlanModels is what the operator uploads: the stack's own model (the
// settings' modelPath, the workers' default) first, then each of extra under
// models/<base name>, as a deployer would upload them on AWS. Two different
// files that would land on one key are refused rather than one silently
// replacing the other; a file named twice is uploaded once.
func PlanModels(stackModel string, extra []string) ([]Model, error) {
	var plan []Model
	from := map[string]string{} // key -> absolute file
	for _, f := range append([]string{stackModel}, extra...) {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", f, err)
		}
		name := filepath.Base(abs)
		if err := job.CheckRelativeKey(name); err != nil {
			return nil, fmt.Errorf("model %s: %w", f, err)
		}
		key := job.ModelKey(name)
		if prev, ok := from[key]; ok {
			if prev == abs {
				continue
			}
			return nil, fmt.Errorf("models %s and %s would both be %s: rename one", prev, abs, key)
		}
		from[key] = abs
		plan = append(plan, Model{File: f, Key: key})
	}
	return plan, nil
}
