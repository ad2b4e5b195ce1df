package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// isTerminal says whether w is a terminal, where a line can be redrawn in
// place; a file, a pipe or a buffer is not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// liveLine shows the successive states of one status line. On a terminal
// each state redraws the line in place (\r), as a user watching expects.
// Elsewhere (a log file, CI) a redrawn line would pile every state onto one
// line, thousands of copies over a long run: there a state is written only
// when it differs from the last one written, as a line of its own.
type liveLine struct {
	w    io.Writer
	tty  bool
	last string
	any  bool // a state was written
}

func newLiveLine(w io.Writer) *liveLine { return &liveLine{w: w, tty: isTerminal(w)} }

// Show writes the line's new state.
func (l *liveLine) Show(line string) {
	if l.tty {
		// Trailing spaces clear what a longer previous state left.
		fmt.Fprintf(l.w, "\r%s   ", line)
		l.any = true
		return
	}
	if l.any && line == l.last {
		return
	}
	fmt.Fprintln(l.w, line)
	l.last, l.any = line, true
}

// End leaves the line, so that what follows starts on a fresh one.
func (l *liveLine) End() {
	if l.tty && l.any {
		fmt.Fprintln(l.w)
	}
}
