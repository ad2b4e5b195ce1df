package inference

/*
#include <signal.h>

// The CUDA execution provider installs its own signal handlers while a session
// is created, replacing the Go runtime's (yalue/onnxruntime_go issue 140); Go
// then crashes on its next preemption signal or SIGPIPE. Saving every handler
// before and restoring it after keeps the Go runtime in charge.
static struct sigaction inferstack_saved[NSIG];

static void inferstack_save_signals(void) {
	for (int s = 1; s < NSIG; s++) sigaction(s, NULL, &inferstack_saved[s]);
}

static void inferstack_restore_signals(void) {
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP) continue;
		sigaction(s, &inferstack_saved[s], NULL);
	}
}
*/
import "C"

import "sync"

var signalMu sync.Mutex

// preservingSignalHandlers runs fn and then puts back every process signal
// handler as it was before fn.
func preservingSignalHandlers(fn func() error) error {
	signalMu.Lock()
	defer signalMu.Unlock()
	C.inferstack_save_signals()
	defer C.inferstack_restore_signals()
	return fn()
}
