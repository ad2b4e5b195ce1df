package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/inferstack/inferstack/internal/client"
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
	// stats says how far it is: done of total, at rate a second.
	stats func(done, total int64, rate float64) string
	// shards is a split job's progress in words (UpdateJob), shown in
	// place of the samples' count.
	shards string
}

// newProgress counts samples.
func newProgress(w io.Writer, off bool) *progress {
	p := &progress{w: w, off: off, tty: isTerminal(w), start: time.Now()}
	p.stats = func(done, total int64, rate float64) string {
		if p.shards != "" {
			return fmt.Sprintf("%s  %.0f/s", p.shards, rate)
		}
		return fmt.Sprintf("%d/%d samples  %.0f/s", done, total, rate)
	}
	return p
}

// UpdateJob reports a job's progress: its samples, and its shards where it
// was split. A total not known yet draws nothing.
func (p *progress) UpdateJob(jp client.Progress) {
	if jp.SamplesTotal <= 0 {
		return
	}
	p.mu.Lock()
	p.shards = ""
	if jp.Shards > 0 {
		p.shards = progressText(jp)
	}
	p.mu.Unlock()
	p.Update(jp.SamplesDone, jp.SamplesTotal)
}

// newByteProgress counts the bytes of a transfer: what (e.g. "upload x.npy").
func newByteProgress(w io.Writer, off bool, what string) *progress {
	p := newProgress(w, off)
	p.stats = func(done, total int64, rate float64) string {
		return fmt.Sprintf("%s %s/%s  %s/s", what, bytesText(float64(done)), bytesText(float64(total)), bytesText(rate))
	}
	return p
}

// bytesText writes n bytes in binary units: 512 B, 17.0 MiB.
func bytesText(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for ; n >= 1024 && i < len(units)-1; i++ {
		n /= 1024
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// Update reports done of total (samples or bytes).
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
	eta := "-" // nothing done yet: no rate to tell
	if done > 0 {
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	stats := fmt.Sprintf("%s  ETA %s", p.stats(done, total, rate), eta)
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

// byteBars draws one byte progress bar per file of a transfer, in turn.
type byteBars struct {
	mu   sync.Mutex
	w    io.Writer
	off  bool
	verb string // "upload", "download"
	file string
	bar  *progress
}

func newByteBars(w io.Writer, off bool, verb string) *byteBars {
	return &byteBars{w: w, off: off, verb: verb}
}

// Update reports done of total bytes of file (client.Transfer.Progress).
func (b *byteBars) Update(file string, done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar == nil || file != b.file {
		if b.bar != nil {
			b.bar.Done()
		}
		b.file, b.bar = file, newByteProgress(b.w, b.off, b.verb+" "+file)
	}
	b.bar.Update(done, total)
}

// Done ends the last bar's line.
func (b *byteBars) Done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		b.bar.Done()
	}
}
