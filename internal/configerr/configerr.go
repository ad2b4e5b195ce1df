// Package configerr is the one error type for a setting that is wrong: a
// `pulumi config` key (deploy/settings) or a variable of a runtime's
// environment (internal/runenv, read by the worker and the dispatcher).
// Each names the setting, so the message says what to fix.
package configerr

// Error names the setting that is wrong and why.
type Error struct {
	Key string // "inferstack:cpuMaxTasks", "INFERSTACK_QUEUE_URL"
	Err error
}

func (e *Error) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }
