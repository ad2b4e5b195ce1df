package inference

import (
	"errors"
	"fmt"
)

// The error kinds a caller branches on (the CLI maps them to exit codes).
// Messages never repeat the kind: they read as one plain line.
var (
	// ErrBadInput marks an input file that cannot be read as samples for the model.
	ErrBadInput = errors.New("bad input")
	// ErrBadModel marks a model file ONNX Runtime cannot load or inferstack cannot feed.
	ErrBadModel = errors.New("bad model")
	// ErrUnavailable marks a missing prerequisite: the ORT library, or CUDA when --device gpu.
	ErrUnavailable = errors.New("unavailable")
	// ErrOutput marks an output directory that cannot be written.
	ErrOutput = errors.New("output not writable")
)

// kindError attaches one of the kinds above to an error without changing its text.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func withKind(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}
