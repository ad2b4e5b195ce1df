package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress draws a bar on a terminal and prints a plain line every few
// seconds otherwise (logs, CI), so neither fills up with noise.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty, off bool
	start    time.Time
	last     time.Time
	drawn    bool
}

func newProgress(w io.Writer, off bool) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, off: off, tty: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

// Update reports done of total samples.
func (p *progress) Update(done, total int64) {
	if p.off {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if done < total && now.Sub(p.last) < every {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(done) / max(elapsed, 1e-9)
	eta := time.Duration(float64(total-done)/max(rate, 1e-9)) * time.Second
	stats := fmt.Sprintf("%d/%d samples  %.0f/s  ETA %s", done, total, rate, eta.Round(time.Second))
	if !p.tty {
		fmt.Fprintf(p.w, "progress: %3.0f%% %s\n", 100*float64(done)/float64(total), stats)
		return
	}
	const width = 30
	filled := int(width * done / max(total, 1))
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %s ", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		100*float64(done)/float64(total), stats)
	p.drawn = true
}

// Done ends the bar's line so what follows starts on a fresh one.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
